// bench/ops.c (bench-ops): forward + backward throughput of the big CPU ops at
// BERT-base shapes, each next to a baseline measured in the same run:
// cblas_sgemm at the op's own GEMM shape for matmul, linear and attention, and
// a memcpy's bandwidth for the memory-bound layernorm and cross entropy.
//
//   bench-ops [--quick]      (--quick: one timed repetition, seq 128 only)
//
// Times are the best of the repetitions after one warm-up. Counting:
//  - matmul, linear: 6 M N K flops (forward 2, backward 4); bias terms ignored.
//  - attention: the GEMM flops actually executed, 14 B H T S D (forward 4:
//    Q K^T and P V; backward 10: Q K^T again to rebuild P, dO V^T, P^T dO,
//    dS K, dS^T Q); causal counts half of that (the lower triangle; the
//    kernel skips most of the upper one). Its baseline is the same seven sgemm
//    shapes run per (batch, head) in an OpenMP loop: attention with a free softmax.
//  - layernorm: 24 N C bytes (forward reads x, writes y; backward reads x, dy,
//    and reads and writes dx). cross entropy: 16 N V bytes (forward reads the
//    logits; backward reads them again and reads and writes dlogits).
#include <cblas.h>
#include <omp.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "core/ops.h"
#include "kernels/cpu/attention.h"

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int g_reps = 3;
static tl_arena g_arena;

// A contiguous tensor of small pseudo-random values (their size does not matter).
static tl_tensor *filled(int rank, const int64_t *shape, bool grad) {
  tl_tensor *t = tl_empty(TL_F32, rank, shape);
  float *x = t->data;
  uint32_t s = 12345;
  for (int64_t i = 0; i < tl_numel(t); i++) {
    s = s * 1664525u + 1013904223u;
    x[i] = ((float)(s >> 9) / 8388608.0f - 0.5f) * 0.5f;
  }
  t->requires_grad = grad;
  return t;
}

// One op's forward + backward, timed: the op's backward is called directly with
// a ready upstream gradient, so nothing but the op runs. Input grads are made
// before the arena mark, so each repetition accumulates into the same buffers.
typedef tl_tensor *(*op_fn)(tl_tensor **in, void *ctx);

static double time_op(op_fn fn, tl_tensor **in, int n_in, void *ctx) {
  for (int k = 0; k < n_in; k++)
    if (in[k]->requires_grad) tl_grad(in[k]);
  size_t mark = g_arena.used;
  double best = 1e30;
  for (int r = 0; r <= g_reps; r++) {
    tl_tape_reset();
    g_arena.used = mark;
    double t0 = now();
    tl_tensor *out = fn(in, ctx);
    double t1 = now();
    // The upstream gradient's allocation (a memset) is not the op's work.
    tl_tensor *g = tl_grad(out);
    if (out->rank == 0) ((float *)g->data)[0] = 1.0f;
    double t2 = now();
    out->node->backward(out->node);
    double dt = (t1 - t0) + (now() - t2);
    if (r > 0 && dt < best) best = dt; // r == 0 warms up caches and page tables
  }
  tl_tape_reset();
  g_arena.used = mark;
  return best;
}

// --- baselines ---------------------------------------------------------------

// Best time of one sgemm C[M,N] = A[M,K] B[K,N] with every thread.
static double time_sgemm(int64_t M, int64_t N, int64_t K) {
  size_t mark = g_arena.used;
  float *a = filled(2, (int64_t[]){M, K}, false)->data;
  float *b = filled(2, (int64_t[]){K, N}, false)->data;
  float *c = tl_arena_alloc(&g_arena, sizeof(float) * M * N);
  double best = 1e30;
  for (int r = 0; r <= g_reps; r++) {
    double t0 = now();
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)M, (int)N, (int)K, 1.0f, a,
                (int)K, b, (int)N, 0.0f, c, (int)N);
    double dt = now() - t0;
    if (r > 0 && dt < best) best = dt;
  }
  g_arena.used = mark;
  return best;
}

// Best time of attention's seven per-head sgemms (T x S x D each), one
// single-threaded sgemm per (batch, head) task in an OpenMP loop: the GEMM part
// of attention alone.
static double time_head_sgemms(int64_t BH, int64_t T, int64_t S, int64_t D) {
  size_t mark = g_arena.used;
  int nt = omp_get_max_threads();
  float *q = filled(2, (int64_t[]){T, D}, false)->data;
  float *k = filled(2, (int64_t[]){S, D}, false)->data;
  float *w = tl_arena_alloc(&g_arena, sizeof(float) * nt * (T * S + T * D + S * D));
  double best = 1e30;
  for (int r = 0; r <= g_reps; r++) {
    double t0 = now();
#pragma omp parallel for schedule(dynamic, 1)
    for (int64_t task = 0; task < BH; task++) {
      float *P = w + omp_get_thread_num() * (T * S + T * D + S * D);
      float *o = P + T * S, *dk = o + T * D;
      for (int g = 0; g < 3; g++) // [T,S] = [T,D] [S,D]^T: scores, rebuilt scores, dO V^T
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)T, (int)S, (int)D, 1.0f, q,
                    (int)D, k, (int)D, 0.0f, P, (int)S);
      for (int g = 0; g < 2; g++) // [T,D] = [T,S] [S,D]: P V, dS K
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)T, (int)D, (int)S, 1.0f, P,
                    (int)S, k, (int)D, 0.0f, o, (int)D);
      for (int g = 0; g < 2; g++) // [S,D] = [T,S]^T [T,D]: P^T dO, dS^T Q
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)S, (int)D, (int)T, 1.0f, P,
                    (int)S, q, (int)D, 1.0f, dk, (int)D);
    }
    double dt = now() - t0;
    if (r > 0 && dt < best) best = dt;
  }
  g_arena.used = mark;
  return best;
}

// Best copy bandwidth (bytes read + written per second) over n floats.
static double memcpy_gbs(int64_t n) {
  size_t mark = g_arena.used;
  float *a = filled(1, (int64_t[]){n}, false)->data;
  float *b = tl_arena_alloc(&g_arena, sizeof(float) * n);
  double best = 1e30;
  for (int r = 0; r <= g_reps; r++) {
    double t0 = now();
#pragma omp parallel for schedule(static)
    for (int64_t c = 0; c < 64; c++) {
      int64_t lo = n * c / 64, hi = n * (c + 1) / 64;
      memcpy(b + lo, a + lo, sizeof(float) * (hi - lo));
    }
    double dt = now() - t0;
    if (r > 0 && dt < best) best = dt;
  }
  g_arena.used = mark;
  return 2.0 * sizeof(float) * n / best / 1e9;
}

// --- the ops -----------------------------------------------------------------

static tl_tensor *run_matmul(tl_tensor **in, void *ctx) {
  return tl_matmul(in[0], in[1], false, false);
}
static tl_tensor *run_linear(tl_tensor **in, void *ctx) { return tl_linear(in[0], in[1], in[2]); }
static tl_tensor *run_attention(tl_tensor **in, void *ctx) {
  return tl_attention(in[0], in[1], in[2], ctx);
}
static tl_tensor *run_layernorm(tl_tensor **in, void *ctx) {
  return tl_layernorm(in[0], in[1], in[2], 1e-12f);
}
static tl_tensor *run_ce(tl_tensor **in, void *ctx) { return tl_cross_entropy(in[0], ctx, -100); }

// Attention's kernels called directly with the heads in turn and every thread
// inside each sgemm (the alternative to one head per thread), fwd + bwd.
static double time_attention_blas_threaded(tl_tensor **in, const tl_attention_opts *o) {
  tl_tensor *q = in[0];
  tl_cpu_attn a = {.B = q->shape[0], .Hq = q->shape[1], .Hkv = q->shape[1], .T = q->shape[2],
                   .S = q->shape[2], .D = q->shape[3], .q = q->data, .k = in[1]->data,
                   .v = in[2]->data, .key_mask = o->key_mask->data, .scale = 0.125f};
  for (int d = 0; d < 3; d++) a.q_stride[d] = a.k_stride[d] = a.v_stride[d] = q->stride[d];
  size_t mark = g_arena.used;
  int64_t n = tl_numel(q);
  float *out = tl_arena_alloc(&g_arena, sizeof(float) * n * 5);
  float *lse = tl_arena_alloc(&g_arena, sizeof(float) * a.B * a.Hq * a.T);
  float *scratch = tl_arena_alloc(&g_arena, sizeof(float) * tl_cpu_attention_bwd_scratch(&a, 1));
  memset(out, 0, sizeof(float) * n * 5);
  // One run, no warm-up: it is an order of magnitude slower than the rest.
  double t0 = now();
  tl_cpu_attention_fwd(&a, out, lse, scratch, 1);
  tl_cpu_attention_bwd(&a, lse, out + n, out + 2 * n, out + 3 * n, out + 4 * n, scratch, 1);
  double dt = now() - t0;
  g_arena.used = mark;
  return dt;
}

static void row(const char *name, const char *shape, double rate, const char *unit, double base,
                const char *base_name) {
  printf("| %-23s | %-26s | %8.1f %-6s | %-24s %8.1f | %5.0f%% |\n", name, shape, rate, unit,
         base_name, base, 100.0 * rate / base);
  fflush(stdout);
}

static void bench_seq(int64_t B, int64_t T, double copy_gbs) {
  const int64_t C = 768, H = 12, D = 64, F = 3072, BT = B * T;
  char shape[64];

  // matmul: x [B*T, 768] @ W [768, 768] (an attention projection without bias).
  tl_tensor *mm[2] = {filled(2, (int64_t[]){BT, C}, true), filled(2, (int64_t[]){C, C}, true)};
  double t = time_op(run_matmul, mm, 2, NULL), flops = 6.0 * BT * C * C;
  snprintf(shape, sizeof shape, "[%ld,%ld]x[%ld,%ld]", (long)BT, (long)C, (long)C, (long)C);
  row("matmul", shape, flops / t / 1e9, "GF/s", 2.0 * BT * C * C / time_sgemm(BT, C, C) / 1e9,
      "sgemm same shape");

  // linear 768 -> 3072 and 3072 -> 768, with bias (the FFN).
  int64_t dims[2][2] = {{C, F}, {F, C}};
  for (int i = 0; i < 2; i++) {
    int64_t in = dims[i][0], out = dims[i][1];
    tl_tensor *ln[3] = {filled(2, (int64_t[]){BT, in}, true),
                        filled(2, (int64_t[]){out, in}, true), filled(1, (int64_t[]){out}, true)};
    t = time_op(run_linear, ln, 3, NULL), flops = 6.0 * BT * in * out;
    snprintf(shape, sizeof shape, "[%ld,%ld] -> %ld", (long)BT, (long)in, (long)out);
    row("linear", shape, flops / t / 1e9, "GF/s",
        2.0 * BT * in * out / time_sgemm(BT, out, in) / 1e9, "sgemm same shape");
  }

  // attention: 12 heads of 64, an all-ones padding mask (padded keys would be
  // skipped, and the flop count would then overstate the work).
  tl_tensor *at[3] = {filled(4, (int64_t[]){B, H, T, D}, true),
                      filled(4, (int64_t[]){B, H, T, D}, true),
                      filled(4, (int64_t[]){B, H, T, D}, true)};
  tl_tensor *mask = tl_empty(TL_I32, 2, (int64_t[]){B, T});
  for (int64_t i = 0; i < B * T; i++) ((int32_t *)mask->data)[i] = 1;
  tl_attention_opts o = {.key_mask = mask};
  double head_gemm = 14.0 * B * H * T * T * D / time_head_sgemms(B * H, T, T, D) / 1e9;
  t = time_op(run_attention, at, 3, &o), flops = 14.0 * B * H * T * T * D;
  snprintf(shape, sizeof shape, "B%ld H%ld T%ld D%ld", (long)B, (long)H, (long)T, (long)D);
  row("attention", shape, flops / t / 1e9, "GF/s", head_gemm, "sgemm per-head shapes");
  o.dropout = 0.1f;
  t = time_op(run_attention, at, 3, &o);
  row("attention, p=0.1", shape, flops / t / 1e9, "GF/s", head_gemm, "sgemm per-head shapes");
  o.dropout = 0;
  o.causal = true;
  t = time_op(run_attention, at, 3, &o);
  row("attention, causal", shape, flops / 2 / t / 1e9, "GF/s", head_gemm,
      "sgemm per-head shapes");
  o.causal = false;
  if (T <= 128) { // slow enough that one shape tells the story
    t = time_attention_blas_threaded(at, &o);
    row("attention, BLAS threads", shape, flops / t / 1e9, "GF/s", head_gemm,
        "sgemm per-head shapes");
  }

  // layernorm over the hidden size.
  tl_tensor *lnin[3] = {filled(2, (int64_t[]){BT, C}, true), filled(1, (int64_t[]){C}, true),
                        filled(1, (int64_t[]){C}, true)};
  t = time_op(run_layernorm, lnin, 3, NULL);
  snprintf(shape, sizeof shape, "[%ld, %ld]", (long)BT, (long)C);
  row("layernorm", shape, 24.0 * BT * C / t / 1e9, "GB/s", copy_gbs, "memcpy");
}

static void bench_ce(int64_t N, int64_t V, double copy_gbs) {
  tl_tensor *logits = filled(2, (int64_t[]){N, V}, true);
  tl_tensor *targets = tl_empty(TL_I32, 1, (int64_t[]){N});
  for (int64_t i = 0; i < N; i++) ((int32_t *)targets->data)[i] = (int32_t)(i * 7919 % V);
  char shape[64];
  snprintf(shape, sizeof shape, "[%ld, %ld]", (long)N, (long)V);
  double t = time_op(run_ce, &logits, 1, targets);
  row("cross entropy", shape, 16.0 * N * V / t / 1e9, "GB/s", copy_gbs, "memcpy");
}

int main(int argc, char **argv) {
  bool quick = argc > 1 && !strcmp(argv[1], "--quick");
  if (quick) g_reps = 1;
  tl_arena_init(&g_arena, (size_t)3 << 30);
  tl_set_arena(&g_arena);
  printf("bench-ops: %d threads, best of %d after a warm-up%s\n\n", omp_get_max_threads(),
         g_reps, quick ? " (--quick: seq 128 only)" : "");
  printf("| %-23s | %-26s | %15s | %-33s | %6s |\n", "op (fwd+bwd)", "shape", "rate",
         "baseline (same run)", "ratio");
  printf("|%s|%s|%s|%s|%s|\n", "-------------------------", "----------------------------",
         "-----------------", "-----------------------------------", "--------");
  double copy = memcpy_gbs((int64_t)1 << 24);
  bench_seq(8, 128, copy);
  if (!quick) bench_seq(8, 512, copy);
  // Cross entropy at the masked 15% of a batch of 8 x 128 (and 8 x 512).
  bench_ce(154, 65541, copy);
  if (!quick) bench_ce(615, 65541, copy);
  tl_arena_free(&g_arena);
  return 0;
}
