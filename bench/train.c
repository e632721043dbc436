// bench/train.c (bench-train): whole pre-training steps of the BERT (forward,
// backward, clipping, AdamW) at etbert-mini and etbert-base shapes: tokens/s
// and model FLOPs utilisation against cblas_sgemm measured in the same run.
//
//   bench-train [--batch B] [--seq T] [--steps N] [--only mini|base]
//
// Defaults: B 8, T 128, 3 timed steps after one warm-up (base on 2 cores takes
// seconds per step). The batch is synthetic: random ordinary ids, [CLS] first,
// 15% of positions masked, half the SBP labels 1 (masking as tl_mbm_mask does).
//
// Model FLOPs per step (the useful work; 3x forward for forward + backward):
//   forward per layer: 2 B T C (3C + C + 2F)  (QKV, output, FFN)
//                    + 4 B T T C              (scores and weighted sum)
//   MBM head: 2 M C (C + V) at the M masked positions; pooler and SBP: 2 B C (C + 2).
// The peak is cblas_sgemm at [B*T, C] x [C, F] (the FFN's shape), best of 5.
#include <cblas.h>
#include <omp.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "train/bert.h"
#include "train/loader.h"
#include "train/optim.h"

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec * 1e-9;
}

// GFLOP/s of cblas_sgemm for [M, K] x [K, N], best of 5 after a warm-up.
static double sgemm_gflops(int M, int N, int K) {
  float *a = tl_xmalloc((size_t)M * K * 4), *b = tl_xmalloc((size_t)K * N * 4);
  float *c = tl_xmalloc((size_t)M * N * 4);
  for (size_t i = 0; i < (size_t)M * K; i++) a[i] = (float)(i % 7) * 0.1f;
  for (size_t i = 0; i < (size_t)K * N; i++) b[i] = (float)(i % 5) * 0.1f;
  double best = 1e30;
  for (int r = 0; r < 6; r++) {
    double t = now();
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, M, N, K, 1, a, K, b, N, 0, c, N);
    t = now() - t;
    if (r > 0 && t < best) best = t;
  }
  free(a), free(b), free(c);
  return 2.0 * M * N * K / best / 1e9;
}

typedef struct {
  int B, T, M;
  int32_t *ids, *seg, *keys, *rows, *targets, *labels;
} synth_batch;

static void make_batch(synth_batch *s, int B, int T, int V) {
  s->B = B, s->T = T;
  size_t n = (size_t)B * T;
  s->ids = tl_xmalloc(n * 4), s->seg = tl_xmalloc(n * 4), s->keys = tl_xmalloc(n * 4);
  s->rows = tl_xmalloc(n * 4), s->targets = tl_xmalloc(n * 4), s->labels = tl_xmalloc(B * 4);
  uint64_t x = 88172645463325252ULL;
  s->M = 0;
  for (size_t i = 0; i < n; i++) {
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    int t = (int)(i % T);
    s->ids[i] = t == 0 ? TL_TOKEN_CLS : TL_TOKEN_FIRST + (int32_t)(x % (uint64_t)(V - 5));
    s->seg[i] = t < T / 2 ? 1 : 2;
    s->keys[i] = 1;
    if (t > 0 && (x >> 40) % 100 < 15) {
      s->rows[s->M] = (int32_t)i;
      s->targets[s->M++] = s->ids[i];
      s->ids[i] = TL_TOKEN_MASK;
    }
  }
  for (int b = 0; b < B; b++) s->labels[b] = b & 1;
}

static double model_flops(const tl_bert_config *c, int B, int T, int M) {
  double C = c->hidden, F = c->ffn, V = c->vocab, BT = (double)B * T;
  double layer = 2 * BT * C * (4 * C + 2 * F) + 4.0 * B * T * T * C;
  double fwd = c->layers * layer + 2.0 * M * C * (C + V) + 2.0 * B * C * (C + 2);
  return 3 * fwd;
}

static void bench_shape(const char *preset, int B, int T, int steps, double peak) {
  tl_bert_config cfg;
  TL_ASSERT(tl_bert_preset(preset, &cfg) == TL_OK);
  cfg.hidden_dropout = cfg.attn_dropout = 0.1f;
  tl_params p;
  tl_params_init(&p);
  tl_bert m;
  tl_bert_declare(&p, &cfg, &m);
  tl_params_alloc(&p);
  tl_bert_init_weights(&m, 1);
  tl_adamw opt;
  tl_adamw_init(&opt, 0.9, 0.999, 1e-6, 0.01, true);
  synth_batch s;
  make_batch(&s, B, T, cfg.vocab);
  tl_arena arena;
  tl_arena_init(&arena, (size_t)12 << 30);
  tl_set_arena(&arena);

  // One warm-up step, then `steps` timed ones (mean).
  double total = 0;
  for (int k = 0; k <= steps; k++) {
    double t0 = now();
    tl_arena_reset(&arena);
    tl_tape_reset();
    tl_params_zero_grad(&p);
    const int64_t bt[2] = {B, T};
    tl_bert_batch bb = {.ids = tl_from_data(TL_I32, 2, bt, s.ids),
                        .segments = tl_from_data(TL_I32, 2, bt, s.seg),
                        .key_mask = tl_from_data(TL_I32, 2, bt, s.keys),
                        .mbm_rows = tl_from_data(TL_I32, 1, (int64_t[]){s.M}, s.rows),
                        .mbm_targets = tl_from_data(TL_I32, 1, (int64_t[]){s.M}, s.targets),
                        .sbp_labels = tl_from_data(TL_I32, 1, (int64_t[]){B}, s.labels)};
    tl_bert_rng rng = {.training = true, .seed = 7, .offset = (uint64_t)k << 40};
    tl_tensor *loss = tl_bert_pretrain_loss(&m, &bb, 1, 1, &rng, NULL);
    tl_backward(loss);
    tl_clip_grad_norm(&p, 1.0);
    tl_adamw_step(&opt, &p, 1e-4);
    if (k > 0) total += now() - t0;
  }
  double step_s = total / steps, flops = model_flops(&cfg, B, T, s.M);
  printf("| etbert-%-6s | %d x %d | %zu | %.3f | %.0f | %.1f | %.1f | %.1f%% | %.0f |\n", preset,
         B, T, p.numel, step_s, B * T / step_s, flops / 1e9, flops / step_s / 1e9,
         100 * flops / step_s / 1e9 / peak, (double)arena.high_water / (1 << 20));
  fflush(stdout);
  tl_set_arena(NULL);
  tl_arena_free(&arena);
  tl_bert_free(&m);
  tl_params_free(&p);
}

int main(int argc, char **argv) {
  int B = 8, T = 128, steps = 3;
  const char *only = NULL;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!strcmp(argv[i], "--batch")) B = atoi(argv[i + 1]);
    else if (!strcmp(argv[i], "--seq")) T = atoi(argv[i + 1]);
    else if (!strcmp(argv[i], "--steps")) steps = atoi(argv[i + 1]);
    else if (!strcmp(argv[i], "--only")) only = argv[i + 1];
  }
  const char *presets[] = {"mini", "base"};
  printf("threads %d; batch %d x %d tokens; %d timed steps after 1 warm-up\n",
         omp_get_max_threads(), B, T, steps);
  printf("| shape | B x T | params | s/step | tokens/s | GFLOP/step | GFLOP/s | MFU | "
         "arena MB |\n|---|---|---|---|---|---|---|---|---|\n");
  for (int i = 0; i < 2; i++) {
    if (only && strcmp(only, presets[i])) continue;
    tl_bert_config c;
    tl_bert_preset(presets[i], &c);
    // The peak at this shape's FFN GEMM, measured now (same threads, same load).
    double peak = sgemm_gflops(B * T, c.ffn, c.hidden);
    printf("(cblas_sgemm peak at [%d, %d] x [%d, %d]: %.1f GFLOP/s)\n", B * T, c.hidden,
           c.hidden, c.ffn, peak);
    bench_shape(presets[i], B, T, steps, peak);
  }
  return 0;
}
