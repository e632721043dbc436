// One pre-training step of a tiny BERT on both devices: the same weights, batch
// and dropout draws (Philox, same counters on CPU and GPU) must give the same
// loss and the same gradient block. (AdamW is compared with its formula in
// test_cuda_optim: after one step Adam's update is about lr * sign(g), so a
// gradient that is ~0 on both devices may still step either way.)
//
// Tolerance (relative, floor at the array's mean magnitude, cuda_check.h) 1e-4:
// forward and backward chain some forty ops that each may differ by ~1e-6
// between OpenBLAS and cuBLAS summation orders.
#include "tests/cuda/cuda_check.h"

#ifndef TL_HAVE_CUDA
Test(cuda_bert, skipped) {
  fprintf(stderr, "skipped: no GPU (built without CUDA)\n");
  cr_skip_test("skipped: no GPU (built without CUDA)");
}
#else
#include "train/bert.h"

static tl_bert_config tiny(void) {
  return (tl_bert_config){.vocab = 50, .hidden = 16, .layers = 2, .heads = 2, .ffn = 24,
                          .max_pos = 12, .type_vocab = 3, .hidden_dropout = 0.1f,
                          .attn_dropout = 0.1f, .ln_eps = 1e-12f, .pretrain_heads = true};
}

// B = 3 rows of T = 10 tokens, row 1 padded after 6; three masked positions.
static tl_bert_batch host_batch(void) {
  const int64_t B = 3, T = 10;
  tl_bert_batch b = {0};
  b.ids = tl_empty(TL_I32, 2, (int64_t[]){B, T});
  b.segments = tl_zeros(TL_I32, 2, (int64_t[]){B, T});
  b.key_mask = tl_zeros(TL_I32, 2, (int64_t[]){B, T});
  int32_t *ids = b.ids->data, *seg = b.segments->data, *mask = b.key_mask->data;
  for (int64_t r = 0; r < B; r++) {
    int64_t n = r == 1 ? 6 : T;
    for (int64_t t = 0; t < T; t++) ids[r * T + t] = (int32_t)(5 + (r * 31 + t * 7) % 45);
    for (int64_t t = 0; t < n; t++) seg[r * T + t] = t < n / 2 ? 1 : 2, mask[r * T + t] = 1;
  }
  b.mbm_rows = tl_empty(TL_I32, 1, (int64_t[]){3});
  b.mbm_targets = tl_empty(TL_I32, 1, (int64_t[]){3});
  b.sbp_labels = tl_empty(TL_I32, 1, (int64_t[]){B});
  int32_t rows[3] = {1, (int32_t)T + 2, (int32_t)(2 * T - 1)}, tg[3] = {7, 19, 44};
  int32_t sbp[3] = {0, 1, 1};
  memcpy(b.mbm_rows->data, rows, sizeof rows);
  memcpy(b.mbm_targets->data, tg, sizeof tg);
  memcpy(b.sbp_labels->data, sbp, sizeof sbp);
  return b;
}

static tl_bert_batch device_batch(tl_arena *dev, const tl_bert_batch *h) {
  tl_bert_batch b = {tl_to_device(dev, h->ids),         tl_to_device(dev, h->segments),
                     tl_to_device(dev, h->key_mask),    tl_to_device(dev, h->mbm_rows),
                     tl_to_device(dev, h->mbm_targets), tl_to_device(dev, h->sbp_labels)};
  return b;
}

Test(cuda_bert, tiny_step_matches_cpu) {
  REQUIRE_GPU();
  tl_arena host, dev;
  tl_arena_init(&host, 64 << 20);
  tl_set_arena(&host);
  cr_assert_eq(tl_device_arena_init(&dev, 64 << 20), TL_OK, "%s", tl_last_error());
  tl_set_device_arena(&dev);

  // Two identical models; the second one's block moves to the GPU.
  tl_bert_config c = tiny();
  tl_params pc, pg;
  tl_bert mc, mg;
  tl_params_init(&pc), tl_params_init(&pg);
  tl_bert_declare(&pc, &c, &mc), tl_bert_declare(&pg, &c, &mg);
  tl_params_alloc(&pc), tl_params_alloc(&pg);
  tl_bert_init_weights(&mc, 7), tl_bert_init_weights(&mg, 7);
  tl_device_params d;
  cr_assert_eq(tl_device_params_attach(&d, &pg, false), TL_OK, "%s", tl_last_error());

  // Forward and backward with dropout on, the same rng on both sides.
  tl_bert_batch hb = host_batch(), db = device_batch(&dev, &hb);
  tl_bert_rng rc = {.training = true, .seed = 11}, rg = rc;
  tl_tensor *lc = tl_bert_pretrain_loss(&mc, &hb, 1.0f, 1.0f, &rc, NULL);
  tl_tensor *lg = tl_bert_pretrain_loss(&mg, &db, 1.0f, 1.0f, &rg, NULL);
  cr_assert_eq(lg->device, TL_CUDA);
  cr_assert_eq(rc.offset, rg.offset, "both passes drew the same number of counters");
  tl_backward(lc);
  tl_backward(lg);
  float loss_c = tl_scalar_value(lc), loss_g = tl_scalar_value(lg);
  tc_check("tiny bert loss", &loss_g, &loss_c, 1, 1e-4);

  // The whole gradient block at once.
  size_t n = pc.numel;
  float *grads = malloc(n * sizeof(float));
  tl_device_download(grads, d.grads, n * sizeof(float));
  tc_check("tiny bert gradients", grads, pc.grads, (int64_t)n, 1e-4);

  tl_device_params_detach(&d, &pg);
  free(grads);
  tl_tape_reset();
  tl_bert_free(&mc), tl_bert_free(&mg);
  tl_params_free(&pc), tl_params_free(&pg);
  tl_device_arena_free(&dev);
  tl_arena_free(&host);
}
#endif
