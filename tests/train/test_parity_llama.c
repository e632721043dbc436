// Llama parity with PyTorch/transformers: the tiny LlamaForCausalLM fixture
// (grouped-query attention, untied lm_head; tests/make_fixtures.py) loaded by
// Hugging Face names; logits, the shifted causal-LM loss with -100 labels and
// every parameter gradient must match within rel_err 1e-4 (tests/train/parity.h).
#include "tests/train/parity.h"
#include "train/lm.h"

TestSuite(parity_llama, .init = tl_test_setup, .fini = tl_test_teardown);

// See llama_config() in tests/make_fixtures.py.
static tl_lm_config fixture_config(void) {
  return (tl_lm_config){.vocab = 211, .hidden = 64, .layers = 2, .heads = 4, .kv_heads = 2,
                        .ffn = 90, .max_pos = 32, .rope_theta = 10000.0f, .norm_eps = 1e-6f,
                        .tie_embeddings = false};
}

typedef struct {
  tl_safetensors st;
  tl_params params;
  tl_lm model;
  tl_tensor *ids, *labels;
} fixture;

static void load_fixture(fixture *f) {
  f->st = tl_parity_open("llama_tiny.safetensors");
  tl_params_init(&f->params);
  tl_lm_config cfg = fixture_config();
  tl_lm_declare(&f->params, &cfg, &f->model);
  tl_params_alloc(&f->params);
  int n = 0;
  cr_assert_eq(tl_safetensors_load_params(&f->st, &f->params, true, &n), TL_OK, "%s",
               tl_last_error());
  cr_assert_eq(n, f->params.count);
  f->ids = tl_parity_get(&f->st, "input_ids");
  f->labels = tl_parity_get(&f->st, "labels");
}

static void free_fixture(fixture *f) {
  tl_lm_free(&f->model);
  tl_params_free(&f->params);
  tl_safetensors_close(&f->st);
}

Test(parity_llama, parameter_names_match_hugging_face) {
  fixture f;
  load_fixture(&f);
  int fixture_params = 0;
  for (int i = 0; i < f.st.count; i++) {
    const char *name = f.st.tensors[i].name;
    if (strncmp(name, "model.", 6) && strncmp(name, "lm_head.", 8)) continue;
    fixture_params++;
    cr_expect(tl_params_find(&f.params, name), "no tl parameter named %s", name);
  }
  cr_assert_eq(fixture_params, f.params.count);
  free_fixture(&f);
}

Test(parity_llama, logits_loss_and_gradients) {
  fixture f;
  load_fixture(&f);
  tl_params_zero_grad(&f.params);
  tl_tensor *logits = NULL;
  tl_tensor *loss = tl_lm_loss(&f.model, f.ids, NULL, f.labels, &logits);
  double e = tl_parity_check(&f.st, "logits", logits, TL_PARITY_TOL);
  cr_log_info("llama parity: logits rel_err %.3g", e);
  float want = tl_parity_scalar(&f.st, "loss"), got = *(float *)loss->data;
  cr_expect(fabs(got - want) <= TL_PARITY_TOL * fabs(want), "loss: tl %.8g, torch %.8g", got,
            want);

  tl_backward(loss);
  double worst = tl_parity_check_grads(&f.st, &f.params, TL_PARITY_TOL, NULL);
  cr_log_info("llama parity: worst gradient rel_err %.3g", worst);
  free_fixture(&f);
}

// Right padding in row 1 (12 real tokens): every query, padded ones included,
// must match Hugging Face's logits with the same attention_mask, which tests
// the key mask combined with the causal one.
Test(parity_llama, padded_logits) {
  fixture f;
  load_fixture(&f);
  tl_set_grad_enabled(false);
  tl_tensor *mask = tl_parity_get(&f.st, "masked.attention_mask");
  tl_tensor *logits = tl_lm_forward(&f.model, f.ids, mask);
  tl_parity_check(&f.st, "masked.logits", logits, TL_PARITY_TOL);
  free_fixture(&f);
}
