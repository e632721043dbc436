// The op API (core/ops.h) on CUDA tensors against the same ops on CPU tensors:
// forward values and every input's gradient after backward with a random
// upstream gradient. This checks the dispatch (core/dev_kernels.c,
// core/ops_cuda.c), the device arena, and the tape on the device.
//
// Tolerances: a single op is held to f32 1e-5 (cuda_check.h). The composed
// block (about twenty ops: linear, attention, norms, activations, dropout,
// cross entropy) is held to 1e-4: each op may differ by ~1e-6 between OpenBLAS
// and cuBLAS summation orders, and backward compounds them through the chain.
#include "tests/cuda/cuda_check.h"

#ifndef TL_HAVE_CUDA
Test(cuda_ops, skipped) {
  fprintf(stderr, "skipped: no GPU (built without CUDA)\n");
  cr_skip_test("skipped: no GPU (built without CUDA)");
}
#else
#include "core/ops.h"

static tl_arena g_host, g_dev;

static void setup(void) {
  if (!tl_device_available() || tl_device_init(0) != TL_OK) return;
  tl_arena_init(&g_host, 256 << 20);
  tl_set_arena(&g_host);
  cr_assert_eq(tl_device_arena_init(&g_dev, 512 << 20), TL_OK, "%s", tl_last_error());
  tl_set_device_arena(&g_dev);
}

static void teardown(void) {
  tl_tape_reset();
  tl_device_arena_free(&g_dev);
  tl_arena_free(&g_host);
}

// A program maps up to 4 inputs (on one device) to one output.
typedef tl_tensor *(*program)(tl_tensor **in);

typedef struct {
  int rank;
  int64_t shape[TL_MAX_RANK];
  bool grad; // a leaf that requires grad (f32); otherwise i32 ids in [0, hi)
  int hi;
} input_spec;

static tl_tensor *make_input(const input_spec *s, uint64_t seed) {
  tl_tensor *t;
  if (s->grad) {
    t = tl_empty(TL_F32, s->rank, s->shape);
    float *r = tc_randn(tl_numel(t), 1.0f, seed);
    memcpy(t->data, r, tl_numel(t) * 4);
    free(r);
    t->requires_grad = true;
  } else {
    t = tl_empty(TL_I32, s->rank, s->shape);
    for (int64_t i = 0; i < tl_numel(t); i++)
      ((int32_t *)t->data)[i] = (int32_t)((i * 7919 + seed) % (uint64_t)s->hi);
  }
  return t;
}

// Runs prog on CPU copies and GPU copies of the same inputs; compares the
// output and each f32 input's gradient.
static void check_program(const char *name, program prog, const input_spec *specs, int n,
                          double tol) {
  tl_tensor *cpu[4], *gpu[4];
  for (int i = 0; i < n; i++) {
    cpu[i] = make_input(&specs[i], 10 + i);
    gpu[i] = tl_to_device(&g_dev, cpu[i]);
    gpu[i]->requires_grad = cpu[i]->requires_grad;
  }
  tl_tensor *yc = prog(cpu), *yg = prog(gpu);
  cr_assert_eq(yg->device, TL_CUDA, "%s: output not on the GPU", name);
  cr_assert(tl_same_shape(yc, yg));

  // The same upstream gradient on both sides.
  tl_tensor *up = tl_empty(TL_F32, yc->rank, yc->shape);
  float *r = tc_randn(tl_numel(up), 1.0f, 99);
  memcpy(up->data, r, tl_numel(up) * 4);
  free(r);
  tl_tensor *ycc = tl_contiguous(yc);
  tc_check(tl_fmt("%s: output", name), tl_to_host(tl_contiguous(yg))->data, ycc->data,
           tl_numel(yc), tol);
  tl_backward_with(yc, up);
  tl_backward_with(yg, tl_to_device(&g_dev, up));
  for (int i = 0; i < n; i++) {
    if (!specs[i].grad) continue;
    cr_assert(gpu[i]->grad, "%s: input %d got no gradient on the GPU", name, i);
    tc_check(tl_fmt("%s: grad of input %d", name, i), tl_to_host(gpu[i]->grad)->data,
             cpu[i]->grad->data, tl_numel(cpu[i]), tol);
  }
  tl_tape_reset();
}

// --- single ops -------------------------------------------------------------------------

static tl_tensor *p_add_bcast(tl_tensor **in) { return tl_add(in[0], in[1]); }
static tl_tensor *p_mul_sub(tl_tensor **in) {
  return tl_sub(tl_mul(in[0], in[1]), tl_scale(in[0], 0.5f));
}
static tl_tensor *p_acts(tl_tensor **in) {
  return tl_add(tl_add(tl_gelu(in[0]), tl_tanh(in[0])), tl_swiglu(tl_silu(in[0]), in[1]));
}
static tl_tensor *p_matmul_t(tl_tensor **in) { return tl_matmul(in[0], in[1], true, false); }
static tl_tensor *p_matmul_shared(tl_tensor **in) { return tl_matmul(in[0], in[1], false, true); }
static tl_tensor *p_linear(tl_tensor **in) { return tl_linear(in[0], in[1], in[2]); }
static tl_tensor *p_views(tl_tensor **in) {
  tl_tensor *t = tl_transpose(in[0], 0, 2);                     // [5, 3, 2]
  tl_tensor *s = tl_slice(t, 1, 1, 2);                          // [5, 2, 2]
  tl_tensor *xs[3] = {s, tl_scale(s, 2.0f), s};
  return tl_concat(xs, 3, 2);                                   // [5, 2, 6]
}
static tl_tensor *p_softmax(tl_tensor **in) {
  return tl_add(tl_softmax(in[0]), tl_log_softmax(in[0]));
}
static tl_tensor *p_norms(tl_tensor **in) {
  return tl_add(tl_layernorm(in[0], in[1], in[2], 1e-5f), tl_rmsnorm(in[0], in[1], 1e-6f));
}
static tl_tensor *p_lookup(tl_tensor **in) {
  tl_tensor *e = tl_embedding(in[0], in[1]);                    // [4, 6, 8]
  return tl_gather_rows(tl_reshape(e, 2, (int64_t[]){24, 8}), in[2]);
}
static tl_tensor *p_dropout(tl_tensor **in) { return tl_dropout(in[0], 0.3f, 5, 77); }
static tl_tensor *p_reduce(tl_tensor **in) {
  return tl_add(tl_sum(in[0]), tl_scale(tl_mean(in[0]), 3.0f));
}
static tl_tensor *p_xent(tl_tensor **in) { return tl_cross_entropy(in[0], in[1], 2); }
static tl_tensor *p_rope(tl_tensor **in) { return tl_rope(tl_transpose(in[0], 1, 2), 3, 1e4f); }
static tl_tensor *p_attention(tl_tensor **in) {
  tl_attention_opts o = {.key_mask = in[3], .dropout = 0.2f, .seed = 3, .offset = 11};
  return tl_attention(in[0], in[1], in[2], &o);
}
static tl_tensor *p_attention_causal_gqa(tl_tensor **in) {
  tl_attention_opts o = {.causal = true};
  return tl_attention(in[0], in[1], in[2], &o);
}

#define SPEC(r, ...) {r, {__VA_ARGS__}, true, 0}
#define IDS(hi, r, ...) {r, {__VA_ARGS__}, false, hi}

Test(cuda_ops, single_ops, .init = setup, .fini = teardown) {
  REQUIRE_GPU();
  const double t = TOL_F32;
  check_program("add broadcast", p_add_bcast, (input_spec[]){SPEC(3, 2, 5, 7), SPEC(1, 7)}, 2, t);
  check_program("mul sub scale", p_mul_sub, (input_spec[]){SPEC(2, 13, 3), SPEC(2, 13, 3)}, 2, t);
  check_program("activations", p_acts, (input_spec[]){SPEC(2, 7, 11), SPEC(2, 7, 11)}, 2, t);
  check_program("matmul a^T batched", p_matmul_t,
                (input_spec[]){SPEC(3, 2, 17, 5), SPEC(3, 2, 17, 9)}, 2, t);
  check_program("matmul shared b^T", p_matmul_shared,
                (input_spec[]){SPEC(4, 2, 3, 7, 5), SPEC(2, 6, 5)}, 2, t);
  check_program("linear", p_linear,
                (input_spec[]){SPEC(3, 2, 9, 31), SPEC(2, 13, 31), SPEC(1, 13)}, 3, t);
  check_program("views and concat", p_views, (input_spec[]){SPEC(3, 2, 3, 5)}, 1, t);
  check_program("softmax", p_softmax, (input_spec[]){SPEC(2, 9, 37)}, 1, t);
  check_program("norms", p_norms, (input_spec[]){SPEC(2, 9, 37), SPEC(1, 37), SPEC(1, 37)}, 3,
                t);
  check_program("lookups", p_lookup,
                (input_spec[]){SPEC(2, 11, 8), IDS(11, 2, 4, 6), IDS(24, 1, 5)}, 3, t);
  check_program("dropout", p_dropout, (input_spec[]){SPEC(2, 13, 7)}, 1, t);
  check_program("sum mean", p_reduce, (input_spec[]){SPEC(2, 13, 7)}, 1, t);
  check_program("cross entropy", p_xent, (input_spec[]){SPEC(2, 9, 23), IDS(23, 1, 9)}, 2, t);
  check_program("rope", p_rope, (input_spec[]){SPEC(4, 2, 7, 3, 8)}, 1, t);
  check_program("attention mask dropout", p_attention,
                (input_spec[]){SPEC(4, 2, 2, 9, 16), SPEC(4, 2, 2, 9, 16), SPEC(4, 2, 2, 9, 16),
                               IDS(2, 2, 2, 9)},
                4, t);
  check_program("attention causal gqa", p_attention_causal_gqa,
                (input_spec[]){SPEC(4, 1, 4, 13, 8), SPEC(4, 1, 2, 13, 8), SPEC(4, 1, 2, 13, 8)},
                3, t);
}

// --- a transformer block, end to end ----------------------------------------------------
// in: x [2, 9, 16], w_qkv [48, 16], w_o [16, 16], gamma [16].

static tl_tensor *p_block(tl_tensor **in) {
  int64_t B = 2, T = 9, C = 16, H = 2, D = 8;
  tl_tensor *x = in[0];
  tl_tensor *qkv = tl_linear(x, in[1], NULL);                                // [B, T, 3C]
  tl_tensor *q = tl_slice(qkv, 2, 0, C), *k = tl_slice(qkv, 2, C, C);
  tl_tensor *v = tl_slice(qkv, 2, 2 * C, C);
  int64_t heads[4] = {B, T, H, D};
  q = tl_rope(tl_transpose(tl_reshape(tl_contiguous(q), 4, heads), 1, 2), 0, 1e4f);
  k = tl_rope(tl_transpose(tl_reshape(tl_contiguous(k), 4, heads), 1, 2), 0, 1e4f);
  v = tl_transpose(tl_reshape(tl_contiguous(v), 4, heads), 1, 2);
  tl_attention_opts o = {.causal = true, .dropout = 0.1f, .seed = 9, .offset = 1};
  tl_tensor *a = tl_attention(q, k, v, &o);                                  // [B, H, T, D]
  a = tl_reshape(tl_contiguous(tl_transpose(a, 1, 2)), 3, (int64_t[]){B, T, C});
  x = tl_rmsnorm(tl_add(x, tl_linear(a, in[2], NULL)), in[3], 1e-6f);
  x = tl_dropout(tl_gelu(x), 0.1f, 9, 100000);
  // Logits over C "tokens" at every position, targets = position mod C.
  tl_tensor *flat = tl_reshape(tl_contiguous(x), 2, (int64_t[]){B * T, C});
  tl_tensor *tg = tl_empty_on(flat->device, TL_I32, 1, (int64_t[]){B * T});
  int32_t host[18];
  for (int i = 0; i < 18; i++) host[i] = i % 7 == 3 ? -100 : i % (int)C;
  if (flat->device == TL_CUDA) tl_device_upload(tg->data, host, sizeof host);
  else memcpy(tg->data, host, sizeof host);
  return tl_cross_entropy(flat, tg, -100);
}

Test(cuda_ops, transformer_block, .init = setup, .fini = teardown) {
  REQUIRE_GPU();
  check_program("block", p_block,
                (input_spec[]){SPEC(3, 2, 9, 16), SPEC(2, 48, 16), SPEC(2, 16, 16), SPEC(1, 16)},
                4, 1e-4);
}
#endif
