// softmax and log_softmax: forward against a double-precision loop written here,
// backward against central finite differences, at awkward row lengths.
#include <criterion/criterion.h>

#include "core/ops.h"
#include "kernels/cpu/softmax.h"
#include "tests/core/check.h"

TestSuite(ops_softmax, .init = tl_test_setup, .fini = tl_test_teardown);

// Reference: softmax (log = false) or log-softmax of each row, in double.
static void ref_softmax(const float *x, double *y, int64_t N, int64_t C, bool log_form) {
  for (int64_t n = 0; n < N; n++) {
    const float *r = x + n * C;
    double m = -INFINITY, s = 0;
    for (int64_t c = 0; c < C; c++) m = r[c] > m ? r[c] : m;
    for (int64_t c = 0; c < C; c++) s += exp(r[c] - m);
    for (int64_t c = 0; c < C; c++)
      y[n * C + c] = log_form ? r[c] - m - log(s) : exp(r[c] - m) / s;
  }
}

// Float outputs against double references: f32 rounding of expf and of the
// normaliser gives a few ulp of relative error, so 1e-6 relative + 1e-7 absolute
// (probabilities) and 2e-5 absolute (log-probabilities of magnitude up to ~20).
static void check_forward(bool log_form, int64_t N, int64_t C, float scale, uint64_t seed) {
  tl_tensor *x = tl_test_randn(seed, scale, false, 2, (int64_t[]){N, C});
  tl_tensor *y = log_form ? tl_log_softmax(x) : tl_softmax(x);
  double *ref = tl_arena_alloc(&tl_test_arena, sizeof(double) * N * C);
  ref_softmax(x->data, ref, N, C, log_form);
  const float *got = y->data;
  double atol = log_form ? 2e-5 : 1e-7, rtol = 1e-6;
  for (int64_t i = 0; i < N * C; i++)
    cr_assert(fabs(got[i] - ref[i]) <= atol + rtol * fabs(ref[i]),
              "%s [%ld, %ld] element %ld: got %.9g want %.9g", log_form ? "log_softmax"
              : "softmax", (long)N, (long)C, (long)i, got[i], ref[i]);
}

Test(ops_softmax, forward_awkward_sizes) {
  int64_t sizes[][2] = {{1, 1}, {1, 7}, {3, 1}, {5, 131}, {37, 64}, {64, 521}, {2, 65541}};
  for (size_t k = 0; k < sizeof sizes / sizeof *sizes; k++) {
    check_forward(false, sizes[k][0], sizes[k][1], 3.0f, 10 + k);
    check_forward(true, sizes[k][0], sizes[k][1], 3.0f, 20 + k);
  }
}

Test(ops_softmax, forward_large_logits_stay_finite) {
  // Logits of magnitude ~1e3 overflow a naive exp: the max must be subtracted.
  check_forward(false, 4, 33, 1000.0f, 3);
  check_forward(true, 4, 33, 1000.0f, 4);
}

static tl_tensor *run_softmax(tl_tensor **in, void *ctx) { return tl_softmax(in[0]); }
static tl_tensor *run_log_softmax(tl_tensor **in, void *ctx) { return tl_log_softmax(in[0]); }

// eps 1e-2 in f32: truncation error ~eps^2 * f''' ~ 1e-4 and rounding noise
// ~1e-7 * |f| / eps ~ 1e-5; atol 2e-3 and rtol 1e-2 sit well above both and far
// below the size of a wrong gradient (O(0.1..1)).
static const tl_gradcheck_opts fd = {.eps = 1e-2, .atol = 2e-3, .rtol = 1e-2};

Test(ops_softmax, backward_matches_finite_differences) {
  int64_t sizes[][3] = {{1, 1, 1}, {1, 1, 5}, {2, 3, 7}, {1, 4, 131}};
  for (size_t k = 0; k < sizeof sizes / sizeof *sizes; k++) {
    tl_tensor *x = tl_test_randn(30 + k, 1.5f, true, 3, sizes[k]);
    cr_assert(tl_test_gradcheck(run_softmax, &x, 1, NULL, fd), "softmax size %zu", k);
    cr_assert(tl_test_gradcheck(run_log_softmax, &x, 1, NULL, fd), "log_softmax size %zu", k);
  }
}

Test(ops_softmax, backward_parallel_path) {
  // 64 x 521 crosses the kernels' parallel threshold; check a random subset.
  tl_tensor *x = tl_test_randn(40, 1.0f, true, 2, (int64_t[]){64, 521});
  tl_gradcheck_opts o = fd;
  o.max_checks = 48;
  cr_assert(tl_test_gradcheck(run_softmax, &x, 1, NULL, o));
  cr_assert(tl_test_gradcheck(run_log_softmax, &x, 1, NULL, o));
}

Test(ops_softmax, no_grad_records_nothing) {
  tl_tensor *x = tl_test_randn(50, 1.0f, true, 2, (int64_t[]){3, 4});
  tl_set_grad_enabled(false);
  tl_tensor *y = tl_softmax(x);
  cr_assert_not(y->requires_grad);
  cr_assert_eq(tl_tape_length(), 0);
}

Test(ops_softmax, row_exp_kernel_accuracy_and_edges) {
  // The vectorised exp every softmax here uses: 2 ulp (2.4e-7 relative) of the
  // double exp over [-87, 88]; exactly 0 for -inf and below exp(-87); NaN kept.
  // 1003 elements: 125 vectors of 8 plus a scalar tail of 3.
  int64_t n = 1003;
  float *x = tl_arena_alloc(&tl_test_arena, n * sizeof(float));
  float *e = tl_arena_alloc(&tl_test_arena, n * sizeof(float));
  for (int64_t i = 0; i < n; i++) x[i] = -87.0f + 175.0f * (float)i / (float)(n - 1);
  x[5] = -INFINITY, x[6] = -100.0f, x[7] = NAN;
  double sum = tl_cpu_row_exp_sum(x, e, n, 0.0f), want = 0;
  for (int64_t i = 0; i < n; i++) {
    if (i >= 5 && i <= 7) continue;
    double r = exp((double)x[i]);
    want += e[i];
    cr_assert(fabs(e[i] - r) <= 2.4e-7 * r, "exp(%.9g): %.9g want %.9g", x[i], e[i], r);
  }
  cr_assert_eq(e[5], 0.0f);
  cr_assert_eq(e[6], 0.0f);
  cr_assert(isnan(e[7]));
  cr_assert(isnan(sum));
  x[7] = 0.0f;
  cr_assert(fabs(tl_cpu_row_exp_sum(x, NULL, n, 0.0f) - (want + 1.0)) <= 1e-6 * want);
}
