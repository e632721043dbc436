// BERT parity with PyTorch/transformers: the tiny BertForPreTraining fixture
// (tests/make_fixtures.py) loaded by Hugging Face names into tl's model; the
// MLM and NSP logits, the losses and every parameter gradient must match within
// rel_err 1e-4 (tests/train/parity.h defines rel_err).
#include "tests/train/parity.h"
#include "train/bert.h"

TestSuite(parity_bert, .init = tl_test_setup, .fini = tl_test_teardown);

// The fixture's model: see bert_config() in tests/make_fixtures.py.
static tl_bert_config fixture_config(void) {
  return (tl_bert_config){.vocab = 211, .hidden = 64, .layers = 2, .heads = 2, .ffn = 128,
                          .max_pos = 32, .type_vocab = 3, .ln_eps = 1e-12f,
                          .pretrain_heads = true};
}

typedef struct {
  tl_safetensors st;
  tl_params params;
  tl_bert model;
  tl_bert_batch batch;
} fixture;

// HF MLM labels (-100 = not masked) to tl's masked rows b*T + t and targets.
static void labels_to_rows(tl_tensor *labels, tl_bert_batch *b) {
  int64_t n = tl_numel(labels), M = 0;
  const int32_t *y = labels->data;
  for (int64_t i = 0; i < n; i++) M += y[i] != -100;
  b->mbm_rows = tl_empty(TL_I32, 1, (int64_t[]){M});
  b->mbm_targets = tl_empty(TL_I32, 1, (int64_t[]){M});
  for (int64_t i = 0, j = 0; i < n; i++) {
    if (y[i] == -100) continue;
    ((int32_t *)b->mbm_rows->data)[j] = (int32_t)i;
    ((int32_t *)b->mbm_targets->data)[j++] = y[i];
  }
}

static void load_fixture(fixture *f) {
  f->st = tl_parity_open("bert_tiny.safetensors");
  tl_params_init(&f->params);
  tl_bert_config cfg = fixture_config();
  tl_bert_declare(&f->params, &cfg, &f->model);
  tl_params_alloc(&f->params);
  int n = 0;
  cr_assert_eq(tl_safetensors_load_params(&f->st, &f->params, true, &n), TL_OK, "%s",
               tl_last_error());
  cr_assert_eq(n, f->params.count);
  f->batch.ids = tl_parity_get(&f->st, "input_ids");
  f->batch.segments = tl_parity_get(&f->st, "token_type_ids");
  f->batch.key_mask = tl_parity_get(&f->st, "attention_mask");
  f->batch.sbp_labels = tl_parity_get(&f->st, "next_sentence_label");
  labels_to_rows(tl_parity_get(&f->st, "labels"), &f->batch);
}

static void free_fixture(fixture *f) {
  tl_bert_free(&f->model);
  tl_params_free(&f->params);
  tl_safetensors_close(&f->st);
}

Test(parity_bert, parameter_names_match_hugging_face) {
  fixture f;
  load_fixture(&f);
  // Every parameter of the fixture (not inputs, outputs or grads) is one of ours.
  int fixture_params = 0;
  for (int i = 0; i < f.st.count; i++) {
    const char *name = f.st.tensors[i].name;
    if (strncmp(name, "bert.", 5) && strncmp(name, "cls.", 4)) continue;
    fixture_params++;
    cr_expect(tl_params_find(&f.params, name), "no tl parameter named %s", name);
  }
  cr_assert_eq(fixture_params, f.params.count);
  free_fixture(&f);
}

Test(parity_bert, forward_logits) {
  fixture f;
  load_fixture(&f);
  tl_set_grad_enabled(false);
  tl_bert_rng rng = {.training = false};
  tl_bert_batch *b = &f.batch;
  tl_tensor *hidden = tl_bert_encode(&f.model, b->ids, b->segments, b->key_mask, &rng);

  // MLM logits at every position (padding included, as HF computes them).
  int64_t BT = tl_numel(b->ids);
  tl_tensor *all = tl_empty(TL_I32, 1, (int64_t[]){BT});
  for (int64_t i = 0; i < BT; i++) ((int32_t *)all->data)[i] = (int32_t)i;
  tl_tensor *logits = tl_bert_mbm_logits(&f.model, hidden, all);
  double e1 = tl_parity_check(&f.st, "prediction_logits", logits, TL_PARITY_TOL);

  tl_tensor *sbp = tl_bert_sbp_logits(&f.model, tl_bert_pool(&f.model, hidden));
  double e2 = tl_parity_check(&f.st, "seq_relationship_logits", sbp, TL_PARITY_TOL);
  cr_log_info("bert parity: rel_err MLM logits %.3g, NSP logits %.3g", e1, e2);
  free_fixture(&f);
}

Test(parity_bert, loss_and_gradients) {
  fixture f;
  load_fixture(&f);
  tl_bert_rng rng = {.training = true, .seed = 1}; // dropout probabilities are 0
  tl_bert_stats s;
  tl_params_zero_grad(&f.params);
  tl_tensor *loss = tl_bert_pretrain_loss(&f.model, &f.batch, 1.0f, 1.0f, &rng, &s);

  // HF's BertForPreTraining loss is MLM + NSP; the parts must match too.
  double want[3] = {tl_parity_scalar(&f.st, "loss"), tl_parity_scalar(&f.st, "loss_mlm"),
                    tl_parity_scalar(&f.st, "loss_nsp")};
  double got[3] = {s.loss, s.mbm_loss, s.sbp_loss};
  const char *what[3] = {"loss", "loss_mlm", "loss_nsp"};
  for (int i = 0; i < 3; i++)
    cr_expect(fabs(got[i] - want[i]) <= TL_PARITY_TOL * fabs(want[i]),
              "%s: tl %.8g, torch %.8g", what[i], got[i], want[i]);
  cr_expect_eq(*(float *)loss->data, s.loss);
  cr_expect_eq(s.mbm_count, 9);

  tl_backward(loss);
  // Key biases get an exactly zero gradient (see tl_parity_check_zero_grad).
  double worst = tl_parity_check_grads(&f.st, &f.params, TL_PARITY_TOL,
                                       ".attention.self.key.bias");
  cr_log_info("bert parity: worst gradient rel_err %.3g", worst);
  free_fixture(&f);
}

Test(parity_bert, loss_weights_scale_the_parts) {
  fixture f;
  load_fixture(&f);
  tl_set_grad_enabled(false);
  tl_bert_stats s;
  tl_bert_pretrain_loss(&f.model, &f.batch, 0.1f, 2.0f, NULL, &s);
  double want = 0.1 * tl_parity_scalar(&f.st, "loss_mlm") +
                2.0 * tl_parity_scalar(&f.st, "loss_nsp");
  cr_expect(fabs(s.loss - want) <= TL_PARITY_TOL * want, "weighted loss %.8g, want %.8g",
            s.loss, want);
  free_fixture(&f);
}

// Fine-tuning head against BertForSequenceClassification on the same encoder:
// pooler, then classifier to K=5; logits, loss and the head's gradients.
Test(parity_bert, classification_head) {
  fixture f;
  f.st = tl_parity_open("bert_tiny.safetensors");
  tl_params_init(&f.params);
  tl_bert_config cfg = fixture_config();
  cfg.pretrain_heads = false;
  cfg.classes = 5;
  tl_bert_declare(&f.params, &cfg, &f.model);
  tl_params_alloc(&f.params);
  cr_assert_eq(tl_safetensors_load_params(&f.st, &f.params, true, NULL), TL_OK, "%s",
               tl_last_error());
  tl_tensor *ids = tl_parity_get(&f.st, "input_ids");
  tl_tensor *seg = tl_parity_get(&f.st, "token_type_ids");
  tl_tensor *mask = tl_parity_get(&f.st, "attention_mask");
  tl_tensor *labels = tl_parity_get(&f.st, "seqcls.labels");

  tl_params_zero_grad(&f.params);
  tl_bert_rng rng = {.training = true, .seed = 5}; // dropout probabilities are 0
  tl_tensor *logits = tl_bert_classify(&f.model, ids, seg, mask, &rng);
  tl_parity_check(&f.st, "seqcls.logits", logits, TL_PARITY_TOL);
  tl_tensor *loss = tl_cross_entropy(logits, labels, -100);
  float want = tl_parity_scalar(&f.st, "seqcls.loss"), got = *(float *)loss->data;
  cr_expect(fabs(got - want) <= TL_PARITY_TOL * want, "loss: tl %.8g, torch %.8g", got, want);

  tl_backward(loss);
  const char *names[4] = {"classifier.weight", "classifier.bias", "bert.pooler.dense.weight",
                          "bert.pooler.dense.bias"};
  for (int i = 0; i < 4; i++) {
    char ref[128];
    snprintf(ref, sizeof ref, "seqcls.grad.%s", names[i]);
    tl_parity_check(&f.st, ref, tl_params_find(&f.params, names[i])->grad, TL_PARITY_TOL);
  }
  free_fixture(&f);
}
