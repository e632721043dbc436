// One full BERT pre-training step against PyTorch: forward, backward, global
// gradient-norm clipping at 1.0 (torch.nn.utils.clip_grad_norm_), then
// torch.optim.AdamW (lr 1e-3, betas 0.9/0.999, eps 1e-6, bias correction,
// weight decay 0.01 except biases and LayerNorm). Every updated parameter must
// match the fixture's "updated." tensors within rel_err 1e-4 (parity.h).
#include "tests/train/parity.h"
#include "train/bert.h"
#include "train/optim.h"

TestSuite(train_step, .init = tl_test_setup, .fini = tl_test_teardown);

// MLM labels (-100 = not masked) to masked rows b*T + t and their targets.
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

Test(train_step, bert_clip_adamw_matches_torch) {
  tl_safetensors st = tl_parity_open("bert_tiny.safetensors");
  tl_bert_config cfg = {.vocab = 211, .hidden = 64, .layers = 2, .heads = 2, .ffn = 128,
                        .max_pos = 32, .type_vocab = 3, .ln_eps = 1e-12f,
                        .pretrain_heads = true};
  tl_params p;
  tl_params_init(&p);
  tl_bert m;
  tl_bert_declare(&p, &cfg, &m);
  tl_params_alloc(&p);
  cr_assert_eq(tl_safetensors_load_params(&st, &p, true, NULL), TL_OK, "%s", tl_last_error());
  tl_bert_batch b = {.ids = tl_parity_get(&st, "input_ids"),
                     .segments = tl_parity_get(&st, "token_type_ids"),
                     .key_mask = tl_parity_get(&st, "attention_mask"),
                     .sbp_labels = tl_parity_get(&st, "next_sentence_label")};
  labels_to_rows(tl_parity_get(&st, "labels"), &b);

  // Forward and backward (MLM + NSP, HF's weights), as the trainer does.
  tl_params_zero_grad(&p);
  tl_bert_rng rng = {.training = true, .seed = 1}; // dropout probabilities are 0
  tl_backward(tl_bert_pretrain_loss(&m, &b, 1.0f, 1.0f, &rng, NULL));

  // Clip: the norm before clipping must be torch's (the fixture asserts > 1).
  double norm = tl_clip_grad_norm(&p, 1.0);
  double want = tl_parity_scalar(&st, "grad_norm");
  cr_expect(fabs(norm - want) <= TL_PARITY_TOL * want, "grad norm %.8g, torch %.8g", norm,
            want);

  tl_adamw opt;
  tl_adamw_init(&opt, 0.9, 0.999, 1e-6, 0.01, true);
  tl_adamw_step(&opt, &p, 1e-3);
  cr_expect_eq(opt.t, 1);

  // The first AdamW step maps g to about g / (|g| + eps): where |g| ~ eps it
  // multiplies the gradient's float32 error by ~lr / eps, so this check is
  // far more sensitive than the gradient parity (measured worst: 6.5e-5, in
  // cls.predictions.transform.dense.weight).
  double worst = 0;
  const char *worst_name = "";
  for (int i = 0; i < p.count; i++) {
    const tl_tensor *t = p.info[i].tensor;
    char name[256];
    snprintf(name, sizeof name, "updated.%s", t->name);
    double e = tl_parity_check(&st, name, t, TL_PARITY_TOL);
    if (e > worst) worst = e, worst_name = t->name;
  }
  cr_log_info("train step: grad norm %.6g (torch %.6g), worst rel_err %.3g in %s", norm, want,
              worst, worst_name);
  tl_bert_free(&m);
  tl_params_free(&p);
  tl_safetensors_close(&st);
}
