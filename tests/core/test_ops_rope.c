// rope: forward against the Hugging Face Llama definition written here in
// double (cos/sin of cat(freqs, freqs), x * cos + rotate_half(x) * sin),
// backward against finite differences, strided input, pos0 offsets.
#include <criterion/criterion.h>

#include "core/ops.h"
#include "tests/core/check.h"

TestSuite(ops_rope, .init = tl_test_setup, .fini = tl_test_teardown);

// Reference on contiguous x [B, H, T, D]: rotate_half(x) = cat(-x[D/2:], x[:D/2]).
static void ref_rope(const float *x, double *y, int64_t B, int64_t H, int64_t T, int64_t D,
                     int64_t pos0, double theta) {
  int64_t half = D / 2;
  for (int64_t r = 0; r < B * H * T; r++) {
    int64_t t = r % T;
    const float *xr = x + r * D;
    for (int64_t d = 0; d < D; d++) {
      int64_t i = d % half;
      double angle = (double)(pos0 + t) * pow(theta, -2.0 * (double)i / (double)D);
      double rot = d < half ? -xr[d + half] : xr[d - half];
      y[r * D + d] = xr[d] * cos(angle) + rot * sin(angle);
    }
  }
}

// The kernel, like transformers, rounds the angle pos * inv_freq to f32: an
// error of ~pos * 6e-8 radians, times |x| <= ~4. For positions below ~2100
// that stays under 1.3e-4 * 4; atol 1e-6 + 2.5e-7 * pos_max covers it, and a
// wrong pairing or frequency gives O(1) errors.
static void check_forward(int64_t B, int64_t H, int64_t T, int64_t D, int64_t pos0, float theta,
                          uint64_t seed) {
  tl_tensor *x = tl_test_randn(seed, 1.0f, false, 4, (int64_t[]){B, H, T, D});
  tl_tensor *y = tl_rope(x, pos0, theta);
  int64_t n = B * H * T * D;
  double *ref = tl_arena_alloc(&tl_test_arena, sizeof(double) * n);
  ref_rope(x->data, ref, B, H, T, D, pos0, theta);
  double atol = 1e-6 + 2.5e-7 * (double)(pos0 + T);
  const float *got = y->data;
  for (int64_t i = 0; i < n; i++)
    cr_assert(fabs(got[i] - ref[i]) <= atol,
              "[%ld %ld %ld %ld] pos0 %ld element %ld: %.8g want %.8g", (long)B, (long)H,
              (long)T, (long)D, (long)pos0, (long)i, got[i], ref[i]);
}

Test(ops_rope, forward_matches_llama_definition) {
  check_forward(1, 1, 1, 2, 0, 10000.0f, 1);
  check_forward(2, 3, 7, 6, 0, 10000.0f, 2);
  check_forward(1, 2, 13, 64, 5, 10000.0f, 3);
  check_forward(2, 4, 31, 128, 1000, 500000.0f, 4); // Llama 3 theta
  check_forward(3, 6, 67, 32, 0, 10000.0f, 5);      // the parallel path
}

Test(ops_rope, position_zero_is_identity) {
  tl_tensor *x = tl_test_randn(10, 1.0f, false, 4, (int64_t[]){1, 2, 1, 8});
  tl_tensor *y = tl_rope(x, 0, 10000.0f);
  for (int i = 0; i < 16; i++) cr_assert_eq(((float *)y->data)[i], ((float *)x->data)[i]);
}

typedef struct { int64_t pos0; } rope_args;
static tl_tensor *run_rope(tl_tensor **in, void *ctx) {
  return tl_rope(in[0], ((rope_args *)ctx)->pos0, 10000.0f);
}

Test(ops_rope, backward_matches_finite_differences) {
  // A linear map: finite differences are exact up to f32 rounding of the sums
  // (~1e-7 * |f| / eps ~ 1e-5), so atol 1e-3.
  tl_gradcheck_opts o = {.eps = 1e-2, .atol = 1e-3, .rtol = 1e-3};
  int64_t shapes[][4] = {{1, 1, 1, 2}, {2, 3, 5, 6}, {1, 2, 9, 16}};
  for (int k = 0; k < 3; k++) {
    rope_args a = {k * 17};
    tl_tensor *x = tl_test_randn(20 + k, 1.0f, true, 4, shapes[k]);
    cr_assert(tl_test_gradcheck(run_rope, &x, 1, &a, o), "shape %d", k);
  }
}

Test(ops_rope, strided_input_matches_contiguous) {
  // A [B, H, T, D] view of a [B, T, H, D] tensor (as after a transpose).
  tl_tensor *base = tl_test_randn(30, 1.0f, true, 4, (int64_t[]){2, 5, 3, 8});
  tl_tensor *x = tl_arena_alloc(&tl_test_arena, sizeof *x);
  *x = *base;
  x->shape[1] = 3, x->shape[2] = 5, x->stride[1] = base->stride[2], x->stride[2] = base->stride[1];
  tl_tensor *xc = tl_test_dense(x);
  xc->requires_grad = true;
  tl_tensor *y = tl_rope(x, 3, 10000.0f);
  tl_tensor *w = tl_test_randn(31, 1.0f, false, 4, y->shape);
  tl_backward_with(y, w);
  tl_tape_reset();
  tl_tensor *yc = tl_rope(xc, 3, 10000.0f);
  tl_backward_with(yc, w);
  for (int64_t i = 0; i < tl_numel(y); i++) {
    cr_assert_eq(((float *)y->data)[i], ((float *)yc->data)[i], "out %ld", (long)i);
    cr_assert_eq(((float *)x->grad->data)[i], ((float *)xc->grad->data)[i], "grad %ld", (long)i);
  }
}
