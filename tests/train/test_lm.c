// Decoder LM behaviour outside PyTorch parity: tied embeddings, the shifted
// loss's ignore rule, determinism of init, and fitting a tiny batch.
#include <criterion/criterion.h>

#include "tests/core/check.h"
#include "train/lm.h"
#include "train/optim.h"

TestSuite(lm, .init = tl_test_setup, .fini = tl_test_teardown);

static tl_lm_config small_config(bool tied) {
  return (tl_lm_config){.vocab = 40, .hidden = 16, .layers = 2, .heads = 4, .kv_heads = 2,
                        .ffn = 24, .max_pos = 16, .rope_theta = 10000.0f, .norm_eps = 1e-6f,
                        .tie_embeddings = tied};
}

Test(lm, tied_embeddings_share_one_tensor) {
  tl_params p;
  tl_params_init(&p);
  tl_lm m;
  tl_lm_config c = small_config(true);
  tl_lm_declare(&p, &c, &m);
  cr_expect_null(tl_params_find(&p, "lm_head.weight"));
  cr_expect_eq(m.head, m.embed);
  // 1 embedding + 2 x 9 per layer + final norm.
  cr_expect_eq(p.count, 1 + 2 * 9 + 1);
  tl_lm_free(&m);
  tl_params_free(&p);
}

Test(lm, loss_ignores_minus_100_and_last_position) {
  tl_params p;
  tl_params_init(&p);
  tl_lm m;
  tl_lm_config c = small_config(false);
  tl_lm_declare(&p, &c, &m);
  tl_params_alloc(&p);
  tl_lm_init_weights(&m, 3);
  tl_set_grad_enabled(false);
  tl_tensor *ids = tl_test_randint(1, 0, 40, 2, (int64_t[]){2, 6});
  // Only labels[.., 0] set: never scored (nothing predicts position 0) -> 0.
  tl_tensor *labels = tl_empty(TL_I32, 2, (int64_t[]){2, 6});
  for (int i = 0; i < 12; i++) ((int32_t *)labels->data)[i] = i % 6 == 0 ? 5 : -100;
  cr_expect_eq(*(float *)tl_lm_loss(&m, ids, NULL, labels, NULL)->data, 0.0f);
  // One scored label at [1, 3]: the loss is -log softmax(logits[1, 2])[7].
  ((int32_t *)labels->data)[9] = 7;
  tl_tensor *logits = NULL;
  float loss = *(float *)tl_lm_loss(&m, ids, NULL, labels, &logits)->data;
  const float *z = (const float *)logits->data + (1 * 6 + 2) * 40;
  double mx = z[0], s = 0;
  for (int v = 1; v < 40; v++) mx = fmax(mx, z[v]);
  for (int v = 0; v < 40; v++) s += exp(z[v] - mx);
  double want = mx + log(s) - z[7];
  cr_expect(fabs(loss - want) < 1e-5 * want, "loss %g, want %g", loss, want);
  tl_lm_free(&m);
  tl_params_free(&p);
}

Test(lm, fits_a_tiny_batch) {
  tl_params p;
  tl_params_init(&p);
  tl_lm m;
  tl_lm_config c = small_config(false);
  tl_lm_declare(&p, &c, &m);
  tl_params_alloc(&p);
  tl_lm_init_weights(&m, 4);
  tl_tensor *ids = tl_test_randint(2, 0, 40, 2, (int64_t[]){3, 9});
  tl_adamw opt;
  tl_adamw_init(&opt, 0.9, 0.999, 1e-8, 0.0, true);
  float first = 0, last = 0;
  for (int step = 0; step < 40; step++) {
    size_t mark = tl_test_arena.used;
    tl_params_zero_grad(&p);
    tl_tensor *loss = tl_lm_loss(&m, ids, NULL, ids, NULL);
    if (step == 0) first = *(float *)loss->data;
    last = *(float *)loss->data;
    tl_backward(loss);
    tl_adamw_step(&opt, &p, 1e-2);
    tl_tape_reset();
    tl_test_arena.used = mark;
  }
  cr_log_info("lm fit: loss %g -> %g", first, last);
  cr_expect(last < 0.2f * first, "loss %g -> %g", first, last);
  tl_lm_free(&m);
  tl_params_free(&p);
}
