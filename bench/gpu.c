// gpu.c: times every CUDA kernel at BERT-base sizes and prints a markdown table
// for bench/RESULTS.md. The yardsticks are measured in the same run, never
// looked up by GPU name: bandwidth against a device-to-device cudaMemcpy, and
// FLOP rates against a large cuBLAS bf16 GEMM (f32 accumulation).
//
//   bench-gpu            kernel table (about a minute on an H100-class GPU)
//   bench-gpu --bert     one BERT-base pre-training step on the GPU, through the
//                        op API (needs the ops' CUDA dispatch); prints one row
// Without a GPU (or built without CUDA) it prints "skipped: no GPU" and exits 0.
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "core/device.h"

#ifndef TL_HAVE_CUDA
int main(void) {
  printf("skipped: no GPU (built without CUDA)\n");
  return 0;
}
#else
#include "kernels/cuda/tl_cuda.h"
#include "train/bert.h"

// BERT-base at ET-BERT's sequence length: B*T tokens of C channels.
enum { B = 32, T = 512, C = 768, H = 12, D = 64, F = 3072, V = 65541, NTOK = B * T };
enum { MBM_ROWS = NTOK * 15 / 100 }; // masked positions scored by the MBM head
#define NPARAMS 110000000LL          // AdamW over a BERT-base-sized flat buffer

static double g_copy_gbs, g_gemm_tflops; // the yardsticks of this run

// Average milliseconds per call of fn(arg) after two warm-up calls.
static double time_ms(void (*fn)(void *), void *arg, int reps) {
  fn(arg), fn(arg);
  tl_cuda_timer_begin();
  for (int i = 0; i < reps; i++) fn(arg);
  return tl_cuda_timer_end_ms() / reps;
}

static void *dmalloc(size_t bytes) {
  void *p = tl_device_malloc(bytes);
  if (!p) {
    fprintf(stderr, "bench-gpu: %s\n", tl_last_error());
    exit(1);
  }
  tl_cuda_memset0(p, bytes);
  return p;
}

// One table row: bytes moved gives GB/s (and % of the copy); flops gives
// TFLOP/s (and % of the GEMM); 0 leaves the column empty.
static void row(const char *name, const char *shape, double ms, double bytes, double flops) {
  printf("| %s | %s | %.3f |", name, shape, ms);
  if (bytes > 0)
    printf(" %.0f | %.0f%% |", bytes / ms / 1e6, 100.0 * bytes / ms / 1e6 / g_copy_gbs);
  else
    printf(" | |");
  if (flops > 0)
    printf(" %.1f | %.0f%% |\n", flops / ms / 1e9, 100.0 * flops / ms / 1e9 / g_gemm_tflops);
  else
    printf(" | |\n");
  fflush(stdout);
}

// --- yardsticks ---------------------------------------------------------------------

typedef struct {
  void *a, *b;
  size_t bytes;
} copy_arg;
static void run_copy(void *p) {
  copy_arg *c = p;
  tl_cuda_memcpy_d2d(c->b, c->a, c->bytes);
}

typedef struct {
  tl_cuda_dtype ab, c;
  bool ta, tb;
  int M, N, K;
  void *A, *B, *C;
} gemm_arg;
static void run_gemm(void *p) {
  gemm_arg *g = p;
  tl_cuda_gemm(g->ab, g->c, g->ta, g->tb, g->M, g->N, g->K, 1.0f, g->A, g->ta ? g->M : g->K,
               g->B, g->tb ? g->K : g->N, 0.0f, g->C, g->N);
}

static void yardsticks(void) {
  // Copy: 1 GiB each way; a copy reads and writes every byte.
  size_t bytes = 1ULL << 30;
  copy_arg c = {dmalloc(bytes), dmalloc(bytes), bytes};
  double ms = time_ms(run_copy, &c, 10);
  g_copy_gbs = 2.0 * bytes / ms / 1e6;
  tl_cuda_free(c.a), tl_cuda_free(c.b);

  // GEMM: 8192^3 bf16 in, bf16 out, f32 accumulation.
  int n = 8192;
  gemm_arg g = {TL_CUDA_BF16, TL_CUDA_BF16, false, false, n, n, n, dmalloc((size_t)n * n * 2),
                dmalloc((size_t)n * n * 2), dmalloc((size_t)n * n * 2)};
  ms = time_ms(run_gemm, &g, 10);
  g_gemm_tflops = 2.0 * n * (double)n * n / ms / 1e9;
  tl_cuda_free(g.A), tl_cuda_free(g.B), tl_cuda_free(g.C);
}

// --- kernels ----------------------------------------------------------------------------
// One struct of buffers shared by every kernel, sized for the largest use.

static struct {
  tl_cuda_dtype dt;
  void *x, *y, *z, *w;      // [NTOK, F] activations in dt
  float *gamma, *beta, *dg, *db, *stats, *stats2;
  int32_t *ids, *targets;
  void *logits;             // [MBM_ROWS, V] in dt
  float *table, *dtable;    // [V, C] f32
  float *pw, *pg, *pm, *pv; // AdamW [NPARAMS]
  uint16_t *pw16;
  float *scalar, *count;
  void *q, *k, *v, *o, *dq, *dk, *dv, *dout;
  float *lse;
} k;

#define KERNEL(fname, ...) \
  static void fname(void *p) { (void)p; __VA_ARGS__; }
KERNEL(k_add, tl_cuda_binary(k.dt, TL_CUDA_ADD, k.x, k.y, k.z, (int64_t)NTOK * C, C))
KERNEL(k_mul, tl_cuda_binary(k.dt, TL_CUDA_MUL, k.x, k.y, k.z, (int64_t)NTOK * C,
                             (int64_t)NTOK * C))
KERNEL(k_colsum, tl_cuda_colsum_acc(k.dt, k.w, k.x, NULL, 1.0f, (int64_t)NTOK * C, C))
KERNEL(k_gelu, tl_cuda_gelu(k.dt, k.y, k.x, (int64_t)NTOK * F))
KERNEL(k_gelu_bwd, tl_cuda_gelu_bwd(k.dt, k.z, k.y, k.x, (int64_t)NTOK * F))
KERNEL(k_swiglu, tl_cuda_swiglu(k.dt, k.z, k.x, k.y, (int64_t)NTOK * F))
KERNEL(k_swiglu_bwd, tl_cuda_swiglu_bwd(k.dt, k.z, k.w, k.y, k.x, k.y, (int64_t)NTOK * F))
KERNEL(k_dropout, tl_cuda_dropout(k.dt, k.y, k.x, (int64_t)NTOK * C, 0.1f, 1, 0))
KERNEL(k_softmax, tl_cuda_softmax(k.dt, k.y, k.x, (int64_t)B * H * T, T))
KERNEL(k_softmax_bwd, tl_cuda_softmax_bwd(k.dt, k.z, k.y, k.x, (int64_t)B * H * T, T))
KERNEL(k_ln, tl_cuda_layernorm(k.dt, k.y, k.stats, k.stats2, k.x, k.gamma, k.beta, NTOK, C,
                               1e-12f))
KERNEL(k_ln_bwd, tl_cuda_layernorm_bwd(k.dt, k.z, k.dg, k.db, k.y, k.x, k.gamma, k.stats,
                                       k.stats2, NTOK, C))
KERNEL(k_rms, tl_cuda_rmsnorm(k.dt, k.y, k.stats2, k.x, k.gamma, NTOK, C, 1e-6f))
KERNEL(k_rms_bwd, tl_cuda_rmsnorm_bwd(k.dt, k.z, k.dg, k.y, k.x, k.gamma, k.stats2, NTOK, C))
KERNEL(k_emb, tl_cuda_embedding(TL_CUDA_F32, k.table, k.dt, k.y, k.ids, NTOK, C, V))
KERNEL(k_emb_bwd_det, tl_cuda_embedding_bwd(TL_CUDA_F32, k.dtable, k.dt, k.y, k.ids, NTOK, C,
                                            V, true))
KERNEL(k_emb_bwd_atomic, tl_cuda_embedding_bwd(TL_CUDA_F32, k.dtable, k.dt, k.y, k.ids, NTOK, C,
                                               V, false))
KERNEL(k_ce, tl_cuda_cross_entropy(k.dt, k.scalar, k.count, k.stats, k.logits, k.targets,
                                   MBM_ROWS, V, -100))
KERNEL(k_ce_bwd, tl_cuda_cross_entropy_bwd(k.dt, k.logits, k.scalar, k.count, k.stats, k.logits,
                                           k.targets, MBM_ROWS, V, -100))
KERNEL(k_rope, tl_cuda_rope(k.dt, k.y, k.x, (int64_t)B * H, T, D, 0, 10000.0f))
KERNEL(k_adamw, {
  tl_cuda_adamw_hp hp = {1e-4f, 0.9f, 0.999f, 1e-8f, 0.01f, 1.0f, 10, false};
  tl_cuda_adamw(k.pw, k.pg, k.pm, k.pv, NPARAMS, &hp, NULL, NULL, 0, k.pw16);
})
KERNEL(k_sumsq, tl_cuda_sumsq(k.scalar, k.pg, NPARAMS))

static tl_cuda_attn attn_shape(bool causal) {
  tl_cuda_attn a = {B, H, H, T, T, D, NULL, causal, 0.0f, 0.0f, 0, 0};
  return a;
}
KERNEL(k_attn, {
  tl_cuda_attn a = attn_shape(false);
  tl_cuda_attention(k.dt, &a, k.o, k.lse, k.q, k.k, k.v);
})
KERNEL(k_attn_bwd, {
  tl_cuda_attn a = attn_shape(false);
  tl_cuda_attention_bwd(k.dt, &a, k.dq, k.dk, k.dv, k.dout, k.q, k.k, k.v, k.o, k.lse, NULL);
})
KERNEL(k_attn_causal, {
  tl_cuda_attn a = attn_shape(true);
  tl_cuda_attention(k.dt, &a, k.o, k.lse, k.q, k.k, k.v);
})

static gemm_arg g_lin;
KERNEL(k_linear, run_gemm(&g_lin))

static void alloc_buffers(void) {
  size_t act = (size_t)NTOK * F * 4; // room for f32 [NTOK, F]
  k.x = dmalloc(act), k.y = dmalloc(act), k.z = dmalloc(act), k.w = dmalloc(act);
  k.gamma = dmalloc(F * 4), k.beta = dmalloc(F * 4), k.dg = dmalloc(F * 4);
  k.db = dmalloc(F * 4);
  k.stats = dmalloc((size_t)NTOK * 4 * 4), k.stats2 = dmalloc((size_t)NTOK * 4 * 4);
  k.ids = dmalloc((size_t)NTOK * 4), k.targets = dmalloc((size_t)NTOK * 4);
  k.logits = dmalloc((size_t)MBM_ROWS * V * 4);
  k.table = dmalloc((size_t)V * C * 4), k.dtable = dmalloc((size_t)V * C * 4);
  k.pw = dmalloc(NPARAMS * 4), k.pg = dmalloc(NPARAMS * 4);
  k.pm = dmalloc(NPARAMS * 4), k.pv = dmalloc(NPARAMS * 4), k.pw16 = dmalloc(NPARAMS * 2);
  k.scalar = dmalloc(4), k.count = dmalloc(4);
  size_t qkv = (size_t)B * H * T * D * 4;
  k.q = dmalloc(qkv), k.k = dmalloc(qkv), k.v = dmalloc(qkv), k.o = dmalloc(qkv);
  k.dq = dmalloc(qkv), k.dk = dmalloc(qkv), k.dv = dmalloc(qkv), k.dout = dmalloc(qkv);
  k.lse = dmalloc((size_t)B * H * T * 4);

  // Ids spread over the vocabulary (zeros would all hit one row); gamma 1.
  int32_t *ids = malloc((size_t)NTOK * 4);
  for (int i = 0; i < NTOK; i++) ids[i] = (int32_t)((i * 2654435761u) % V);
  tl_cuda_memcpy_h2d(k.ids, ids, (size_t)NTOK * 4);
  tl_cuda_memcpy_h2d(k.targets, ids, (size_t)NTOK * 4);
  tl_cuda_sync();
  free(ids);
  float one = 1.0f;
  for (int i = 0; i < F; i++) tl_cuda_memcpy_h2d(k.gamma + i, &one, 4);
  tl_cuda_sync();
}

static void kernel_table(tl_cuda_dtype dt) {
  k.dt = dt;
  const char *tn = dt == TL_CUDA_F32 ? "f32" : "bf16";
  double es = dt == TL_CUDA_F32 ? 4 : 2, n = (double)NTOK * C, nf = (double)NTOK * F;
  double natt = (double)B * H * T * D, sc = (double)B * H * T * T;
  char s[96];
#define SHAPE(...) (snprintf(s, sizeof s, __VA_ARGS__), s)
#define ROW(name, fn, reps, bytes, flops) \
  row(tl_fmt("%s %s", name, tn), s, time_ms(fn, NULL, reps), bytes, flops)

  SHAPE("[%d, %d] + [%d]", NTOK, C, C);
  ROW("add (bias)", k_add, 20, 2 * n * es, 0);
  SHAPE("[%d, %d]", NTOK, C);
  ROW("mul", k_mul, 20, 3 * n * es, 0);
  ROW("colsum (bias grad)", k_colsum, 20, n * es, 0);
  ROW("dropout p=0.1", k_dropout, 20, 2 * n * es, 0);
  SHAPE("[%d, %d]", NTOK, F);
  ROW("gelu", k_gelu, 20, 2 * nf * es, 0);
  ROW("gelu bwd", k_gelu_bwd, 20, 4 * nf * es, 0);
  ROW("swiglu", k_swiglu, 20, 3 * nf * es, 0);
  ROW("swiglu bwd", k_swiglu_bwd, 20, 7 * nf * es, 0);
  SHAPE("[%d, %d]", B * H * T, T);
  ROW("softmax", k_softmax, 10, 2 * sc * es, 0);
  ROW("softmax bwd", k_softmax_bwd, 10, 4 * sc * es, 0);
  SHAPE("[%d, %d]", NTOK, C);
  ROW("layernorm", k_ln, 20, 2 * n * es, 0);
  ROW("layernorm bwd", k_ln_bwd, 20, 4 * n * es, 0);
  ROW("rmsnorm", k_rms, 20, 2 * n * es, 0);
  ROW("rmsnorm bwd", k_rms_bwd, 20, 4 * n * es, 0);
  SHAPE("%d ids of [%d, %d]", NTOK, V, C);
  ROW("embedding", k_emb, 20, n * (4 + es), 0);
  ROW("embedding bwd (deterministic)", k_emb_bwd_det, 10, n * (8 + es), 0);
  ROW("embedding bwd (atomic)", k_emb_bwd_atomic, 10, n * (8 + es), 0);
  SHAPE("[%d, %d]", MBM_ROWS, V);
  ROW("cross entropy", k_ce, 10, (double)MBM_ROWS * V * es, 0);
  ROW("cross entropy bwd", k_ce_bwd, 10, 3.0 * MBM_ROWS * V * es, 0);
  SHAPE("[%d, %d, %d, %d]", B, H, T, D);
  ROW("rope", k_rope, 20, 2 * natt * es, 0);
  // FLOPs by the usual convention: 4 T S D per head forward (QK^T and PV), 2.5x
  // that backward; causal does half the work.
  ROW("attention", k_attn, 5, 0, 4 * sc * D);
  ROW("attention causal", k_attn_causal, 5, 0, 2 * sc * D);
  ROW("attention bwd", k_attn_bwd, 3, 0, 10 * sc * D);

  // The FFN's first linear, as cuBLAS runs it for the model.
  g_lin = (gemm_arg){dt, dt, false, true, NTOK, F, C, k.x, k.w, k.z};
  SHAPE("[%d, %d] x [%d, %d]^T", NTOK, C, F, C);
  ROW("linear (cuBLAS)", k_linear, 10, 0, 2.0 * NTOK * F * C);
#undef ROW
#undef SHAPE
}

static void optimizer_rows(void) {
  char s[64];
  snprintf(s, sizeof s, "%lld floats", (long long)NPARAMS);
  // Per element: w, m, v read and written, g read, bf16 copy written.
  row("adamw f32 (+bf16 copy)", s, time_ms(k_adamw, NULL, 10), NPARAMS * 30.0, 0);
  row("grad sumsq f32", s, time_ms(k_sumsq, NULL, 10), NPARAMS * 4.0, 0);
}

static void kernels_main(void) {
  char name[256], date[32];
  size_t mem = 0;
  int sms = 0;
  tl_cuda_device_info(name, sizeof name, &mem, &sms);
  time_t now = time(NULL);
  strftime(date, sizeof date, "%Y-%m-%d %H:%M UTC", gmtime(&now));
  yardsticks();
  alloc_buffers();

  printf("## CUDA kernels: %s (%d SMs, %.0f GiB), %s\n\n", name, sms, mem / 1073741824.0, date);
  printf("Yardsticks measured in this run: device-to-device copy %.0f GB/s "
         "(read + write), cuBLAS bf16 GEMM 8192^3 %.1f TFLOP/s.\n\n",
         g_copy_gbs, g_gemm_tflops);
  printf("| kernel | shape | ms | GB/s | of copy | TFLOP/s | of GEMM |\n");
  printf("|---|---|---:|---:|---:|---:|---:|\n");
  kernel_table(TL_CUDA_BF16);
  kernel_table(TL_CUDA_F32);
  optimizer_rows();
}

// --- BERT-base training step through the op API ---------------------------------------
// Needs the ops' CUDA dispatch (core/ops_*.c): an op that does not dispatch aborts
// on a device tensor, which gpu.sh reports as "not available".

static void bert_main(void) {
  tl_bert_config cfg;
  TL_ASSERT(tl_bert_preset("base", &cfg) == TL_OK);
  tl_params params;
  tl_params_init(&params);
  tl_bert model;
  tl_bert_declare(&params, &cfg, &model);
  tl_params_alloc(&params);
  tl_bert_init_weights(&model, 1);
  tl_device_params dp;
  if (tl_device_params_attach(&dp, &params, true) != TL_OK) {
    fprintf(stderr, "bench-gpu: %s\n", tl_last_error());
    exit(1);
  }

  // Host arena for headers, device arena for data; a batch of ids on the device.
  tl_arena host, dev;
  tl_arena_init(&host, 64 << 20);
  tl_set_arena(&host);
  size_t mem = 0;
  tl_cuda_device_info(NULL, 0, &mem, NULL);
  if (tl_device_arena_init(&dev, mem / 2) != TL_OK) { // parameters and moments need ~2 GiB
    fprintf(stderr, "bench-gpu: %s\n", tl_last_error());
    exit(1);
  }
  tl_set_device_arena(&dev);
  int bt = 16; // batch of 16 x 512 keeps activations well inside the arena
  int32_t *h_ids = malloc((size_t)bt * T * 4), *h_seg = malloc((size_t)bt * T * 4);
  int32_t *h_rows = malloc((size_t)bt * T * 4), *h_tg = malloc((size_t)bt * T * 4);
  int32_t *h_sbp = malloc((size_t)bt * 4);
  int m = 0;
  for (int i = 0; i < bt * T; i++) {
    h_ids[i] = 5 + (int32_t)((i * 2654435761u) % (uint32_t)(cfg.vocab - 5));
    h_seg[i] = (i % T) < T / 2 ? 1 : 2;
    if (i % 7 == 3) h_rows[m] = i, h_tg[m++] = h_ids[i];
  }
  for (int b = 0; b < bt; b++) h_sbp[b] = b & 1;

  double total_ms = 0;
  int steps = 6, warm = 2;
  for (int step = 1; step <= steps; step++) {
    tl_cuda_sync();
    tl_cuda_timer_begin();
    tl_bert_batch batch = {
        tl_to_device(&dev, tl_from_data(TL_I32, 2, (int64_t[]){bt, T}, h_ids)),
        tl_to_device(&dev, tl_from_data(TL_I32, 2, (int64_t[]){bt, T}, h_seg)), NULL,
        tl_to_device(&dev, tl_from_data(TL_I32, 1, (int64_t[]){m}, h_rows)),
        tl_to_device(&dev, tl_from_data(TL_I32, 1, (int64_t[]){m}, h_tg)),
        tl_to_device(&dev, tl_from_data(TL_I32, 1, (int64_t[]){bt}, h_sbp))};
    tl_bert_rng rng = {true, 1234, (uint64_t)step << 40};
    tl_tensor *loss = tl_bert_pretrain_loss(&model, &batch, 1.0f, 1.0f, &rng, NULL);
    tl_backward(loss);
    tl_device_adamw_step(&dp, 1e-4f, 0.9f, 0.999f, 1e-6f, 0.01f, 1.0f, step, true);
    tl_device_params_zero_grad(&dp);
    float ms = tl_cuda_timer_end_ms();
    if (step > warm) total_ms += ms;
    tl_tape_reset();
    tl_arena_reset(&host);
    tl_arena_reset(&dev);
  }
  double ms = total_ms / (steps - warm), tokens = (double)bt * T;
  // 6 N per token for the weights (forward + backward) plus attention's 12 L T C.
  double flops = tokens * (6.0 * (double)params.numel + 12.0 * cfg.layers * T * cfg.hidden);
  printf("| BERT-base pre-training step (B=%d, T=%d, f32 ops) | %.1f ms | %.0f tokens/s | "
         "MFU %.1f%% of measured bf16 GEMM | device arena peak %.1f GiB |\n",
         bt, T, ms, tokens / ms * 1e3, 100.0 * flops / ms / 1e9 / g_gemm_tflops,
         dev.high_water / 1073741824.0);
  tl_device_params_detach(&dp, &params);
  tl_device_arena_free(&dev);
  tl_arena_free(&host);
  tl_bert_free(&model);
  tl_params_free(&params);
  free(h_ids), free(h_seg), free(h_rows), free(h_tg), free(h_sbp);
}

int main(int argc, char **argv) {
  if (!tl_device_available() || tl_device_init(0) != TL_OK) {
    printf("skipped: no GPU\n");
    return 0;
  }
  bool bert = argc > 1 && !strcmp(argv[1], "--bert");
  if (bert) {
    yardsticks(); // MFU is relative to this run's GEMM
    bert_main();
  } else {
    kernels_main();
  }
  return 0;
}
#endif
