// layernorm and RMSNorm: forward against double-precision loops written here,
// backward (x, gamma, beta) against central finite differences.
#include <criterion/criterion.h>

#include "core/ops.h"
#include "tests/core/check.h"

TestSuite(ops_norm, .init = tl_test_setup, .fini = tl_test_teardown);

// Reference layernorm (rms = false, biased variance, beta may be NULL) or
// RMSNorm (rms = true) of each row, in double.
static void ref_norm(const float *x, const float *g, const float *b, double *y, int64_t N,
                     int64_t C, double eps, bool rms) {
  for (int64_t n = 0; n < N; n++) {
    const float *r = x + n * C;
    double mu = 0, var = 0;
    if (!rms) {
      for (int64_t c = 0; c < C; c++) mu += r[c];
      mu /= (double)C;
    }
    for (int64_t c = 0; c < C; c++) var += (r[c] - mu) * (r[c] - mu);
    double rs = 1.0 / sqrt(var / (double)C + eps);
    for (int64_t c = 0; c < C; c++)
      y[n * C + c] = (r[c] - mu) * rs * g[c] + (b ? b[c] : 0.0);
  }
}

// f32 output of magnitude ~|gamma| * 3 + |beta|: a few ulp, so atol 2e-6 plus
// 2e-6 relative for centred rows. eps 1e-5 as BERT, 1e-6 as Llama.
static void check_forward_tol(bool rms, bool with_beta, int64_t N, int64_t C, float shift,
                              uint64_t seed, double atol) {
  tl_tensor *x = tl_test_randn(seed, 2.0f, false, 2, (int64_t[]){N, C});
  for (int64_t i = 0; i < N * C; i++) ((float *)x->data)[i] += shift;
  tl_tensor *g = tl_test_randn(seed + 1, 1.0f, false, 1, (int64_t[]){C});
  tl_tensor *b = with_beta ? tl_test_randn(seed + 2, 1.0f, false, 1, (int64_t[]){C}) : NULL;
  float eps = rms ? 1e-6f : 1e-5f;
  tl_tensor *y = rms ? tl_rmsnorm(x, g, eps) : tl_layernorm(x, g, b, eps);
  double *ref = tl_arena_alloc(&tl_test_arena, sizeof(double) * N * C);
  ref_norm(x->data, g->data, b ? b->data : NULL, ref, N, C, eps, rms);
  const float *got = y->data;
  for (int64_t i = 0; i < N * C; i++)
    cr_assert(fabs(got[i] - ref[i]) <= atol + 2e-6 * fabs(ref[i]),
              "%s [%ld, %ld] element %ld: got %.9g want %.9g", rms ? "rmsnorm" : "layernorm",
              (long)N, (long)C, (long)i, got[i], ref[i]);
}

static void check_forward(bool rms, bool with_beta, int64_t N, int64_t C, float shift,
                          uint64_t seed) {
  check_forward_tol(rms, with_beta, N, C, shift, seed, 2e-6);
}

static const int64_t sizes[][2] = {{1, 1}, {1, 7}, {3, 2}, {5, 131}, {32, 768}, {9, 3072}};
#define NSIZES (sizeof sizes / sizeof *sizes)

Test(ops_norm, layernorm_forward) {
  for (size_t k = 0; k < NSIZES; k++) {
    check_forward(false, true, sizes[k][0], sizes[k][1], 0.0f, 10 + k);
    check_forward(false, false, sizes[k][0], sizes[k][1], 0.0f, 20 + k);
  }
}

Test(ops_norm, layernorm_forward_large_mean) {
  // Rows centred at 1e3 with spread 2: a one-pass E[x^2] - E[x]^2 in f32 would
  // lose the variance entirely. What f32 cannot avoid: the mean rounded to f32
  // (half an ulp of 1000 = 3e-5) shifts xhat by up to 3e-5 / 2, as in PyTorch,
  // hence atol 5e-5 here.
  check_forward_tol(false, true, 4, 257, 1000.0f, 30, 5e-5);
}

Test(ops_norm, rmsnorm_forward) {
  for (size_t k = 0; k < NSIZES; k++) check_forward(true, false, sizes[k][0], sizes[k][1],
                                                   0.0f, 40 + k);
}

typedef struct { float eps; } norm_args;
static tl_tensor *run_ln(tl_tensor **in, void *ctx) {
  return tl_layernorm(in[0], in[1], in[2], ((norm_args *)ctx)->eps);
}
static tl_tensor *run_ln_nobeta(tl_tensor **in, void *ctx) {
  return tl_layernorm(in[0], in[1], NULL, ((norm_args *)ctx)->eps);
}
static tl_tensor *run_rms(tl_tensor **in, void *ctx) {
  return tl_rmsnorm(in[0], in[1], ((norm_args *)ctx)->eps);
}

// eps 1e-2 on inputs of spread 1.5: the normalisation's third derivative is
// O(rstd^3) ~ 1, so truncation ~1e-4; f32 noise ~1e-7 * |f| / eps ~ 1e-4.
// atol 3e-3, rtol 1e-2 are well below a wrong gradient's O(0.1) error.
static const tl_gradcheck_opts fd = {.eps = 1e-2, .atol = 3e-3, .rtol = 1e-2};

Test(ops_norm, backward_matches_finite_differences) {
  int64_t grad_sizes[][2] = {{1, 1}, {1, 5}, {3, 7}, {4, 131}};
  norm_args a = {1e-5f};
  for (size_t k = 0; k < sizeof grad_sizes / sizeof *grad_sizes; k++) {
    int64_t N = grad_sizes[k][0], C = grad_sizes[k][1];
    tl_tensor *in[3] = {tl_test_randn(50 + k, 1.5f, true, 2, grad_sizes[k]),
                        tl_test_randn(60 + k, 1.0f, true, 1, (int64_t[]){C}),
                        tl_test_randn(70 + k, 1.0f, true, 1, (int64_t[]){C})};
    cr_assert(tl_test_gradcheck(run_ln, in, 3, &a, fd), "layernorm [%ld, %ld]", (long)N,
              (long)C);
    cr_assert(tl_test_gradcheck(run_ln_nobeta, in, 2, &a, fd), "layernorm no beta");
    cr_assert(tl_test_gradcheck(run_rms, in, 2, &a, fd), "rmsnorm [%ld, %ld]", (long)N,
              (long)C);
  }
}

Test(ops_norm, backward_parallel_path) {
  // 32 x 768 crosses the parallel threshold: per-thread dgamma partials are summed.
  norm_args a = {1e-5f};
  tl_gradcheck_opts o = fd;
  o.max_checks = 48;
  tl_tensor *in[3] = {tl_test_randn(80, 1.0f, true, 2, (int64_t[]){32, 768}),
                      tl_test_randn(81, 1.0f, true, 1, (int64_t[]){768}),
                      tl_test_randn(82, 1.0f, true, 1, (int64_t[]){768})};
  cr_assert(tl_test_gradcheck(run_ln, in, 3, &a, o));
  cr_assert(tl_test_gradcheck(run_rms, in, 2, &a, o));
}

Test(ops_norm, only_gamma_requires_grad) {
  // x frozen (e.g. an input): only gamma and beta get gradients.
  norm_args a = {1e-5f};
  tl_tensor *in[3] = {tl_test_randn(90, 1.0f, false, 3, (int64_t[]){2, 3, 11}),
                      tl_test_randn(91, 1.0f, true, 1, (int64_t[]){11}),
                      tl_test_randn(92, 1.0f, true, 1, (int64_t[]){11})};
  cr_assert(tl_test_gradcheck(run_ln, in, 3, &a, fd));
  cr_assert_null(in[0]->grad);
}
