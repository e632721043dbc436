// reshape, transpose, slice, contiguous: forward by index arithmetic written here,
// data sharing, and backward against finite differences.
#include <criterion/criterion.h>

#include "core/ops.h"
#include "tests/core/check.h"

TestSuite(ops_view, .init = tl_test_setup, .fini = tl_test_teardown);

// Views only move values, so the function is linear and central differences are
// exact up to the rounding of the weighted sum (~1e-7 relative to its terms, / 2 eps);
// eps = 1e-2, atol 1e-4, rtol 1e-4: a misplaced gradient is off by O(1).
static const tl_gradcheck_opts GC = {.eps = 1e-2, .atol = 1e-4, .rtol = 1e-4};

static float *F(const tl_tensor *t) { return (float *)t->data; }

// Element of t at a multi-index, by t's own strides (the view's geometry).
static float at(const tl_tensor *t, int64_t i0, int64_t i1, int64_t i2) {
  int64_t idx[3] = {i0, i1, i2};
  return tl_get_f32(t, idx);
}

Test(ops_view, transpose_forward_shares_data) {
  tl_tensor *x = tl_test_randn(1, 1.0f, false, 3, (int64_t[]){7, 1, 13});
  tl_tensor *v = tl_transpose(x, 0, 2);
  cr_assert_eq(v->shape[0], 13);
  cr_assert_eq(v->shape[2], 7);
  cr_assert_eq(v->data, x->data);
  for (int64_t a = 0; a < 7; a++)
    for (int64_t c = 0; c < 13; c++) cr_assert_eq(at(v, c, 0, a), F(x)[a * 13 + c]);
  // Writing through the source is seen by the view.
  F(x)[3 * 13 + 5] = 42.0f;
  cr_assert_eq(at(v, 5, 0, 3), 42.0f);
  // Negative dims count from the end.
  tl_tensor *w = tl_transpose(x, -1, -3);
  cr_assert_eq(w->stride[0], v->stride[0]);
}

Test(ops_view, slice_forward) {
  tl_tensor *x = tl_test_randn(2, 1.0f, false, 3, (int64_t[]){5, 7, 3});
  tl_tensor *v = tl_slice(x, 1, 2, 4);
  cr_assert_eq(v->shape[1], 4);
  for (int64_t a = 0; a < 5; a++)
    for (int64_t b = 0; b < 4; b++)
      for (int64_t c = 0; c < 3; c++)
        cr_assert_eq(at(v, a, b, c), F(x)[(a * 7 + b + 2) * 3 + c]);
  // A slice of the whole range and an empty slice are legal.
  cr_assert_eq(tl_numel(tl_slice(x, 0, 0, 5)), tl_numel(x));
  cr_assert_eq(tl_numel(tl_slice(x, 2, 3, 0)), 0);
}

Test(ops_view, reshape_and_contiguous) {
  tl_tensor *x = tl_test_randn(3, 1.0f, false, 2, (int64_t[]){6, 35});
  tl_tensor *r = tl_reshape(x, 3, (int64_t[]){2, -1, 5});
  cr_assert_eq(r->shape[1], 21);
  cr_assert_eq(r->data, x->data);
  // contiguous() of a contiguous tensor is the tensor itself.
  cr_assert_eq(tl_contiguous(x), x);
  // Of a transpose: a copy in the transposed order.
  tl_tensor *t = tl_transpose(x, 0, 1);
  tl_tensor *c = tl_contiguous(t);
  cr_assert(tl_is_contiguous(c));
  cr_assert_neq(c->data, x->data);
  for (int64_t i = 0; i < 35; i++)
    for (int64_t j = 0; j < 6; j++) cr_assert_eq(F(c)[i * 6 + j], F(x)[j * 35 + i]);
  // Reshaping a strided view goes through a copy in logical order.
  tl_tensor *rt = tl_reshape(t, 1, (int64_t[]){210});
  for (int64_t i = 0; i < 210; i++) cr_assert_eq(F(rt)[i], F(c)[i]);
}

// --- backward: each view's gradient lands at the source positions it reads.

static tl_tensor *transpose_fn(tl_tensor **in, void *ctx) {
  int *d = ctx;
  return tl_transpose(in[0], d[0], d[1]);
}

static tl_tensor *slice_fn(tl_tensor **in, void *ctx) {
  int64_t *s = ctx;
  return tl_slice(in[0], (int)s[0], s[1], s[2]);
}

// A chain: transpose, slice the transposed view, reshape (forces a copy), scale.
static tl_tensor *chain_fn(tl_tensor **in, void *ctx) {
  tl_tensor *t = tl_transpose(in[0], 1, 2);              // [3, 13, 7]
  tl_tensor *s = tl_slice(t, 1, 4, 5);                   // [3, 5, 7]
  tl_tensor *r = tl_reshape(s, 2, (int64_t[]){15, 7});
  return tl_scale(r, 2.0f);
}

// Two overlapping slices of one tensor, added: their gradients accumulate.
static tl_tensor *overlap_fn(tl_tensor **in, void *ctx) {
  tl_tensor *a = tl_slice(in[0], 0, 0, 5);
  tl_tensor *b = tl_slice(in[0], 0, 2, 5);
  return tl_add(a, b);
}

Test(ops_view, transpose_backward) {
  int dims[][2] = {{0, 1}, {0, 2}, {1, 2}, {2, 2}};
  for (int k = 0; k < 4; k++) {
    tl_tensor *x = tl_test_randn(10 + k, 1.0f, true, 3, (int64_t[]){7, 1, 13});
    cr_assert(tl_test_gradcheck(transpose_fn, &x, 1, dims[k], GC), "dims %d", k);
  }
}

Test(ops_view, slice_backward) {
  int64_t cases[][3] = {{0, 1, 3}, {1, 0, 1}, {2, 5, 8}, {2, 0, 13}};
  for (int k = 0; k < 4; k++) {
    tl_tensor *x = tl_test_randn(20 + k, 1.0f, true, 3, (int64_t[]){7, 3, 13});
    cr_assert(tl_test_gradcheck(slice_fn, &x, 1, cases[k], GC), "case %d", k);
  }
}

Test(ops_view, chain_backward) {
  tl_tensor *x = tl_test_randn(30, 1.0f, true, 3, (int64_t[]){3, 7, 13});
  cr_assert(tl_test_gradcheck(chain_fn, &x, 1, NULL, GC));
}

Test(ops_view, overlapping_slices_accumulate) {
  tl_tensor *x = tl_test_randn(31, 1.0f, true, 2, (int64_t[]){7, 3});
  cr_assert(tl_test_gradcheck(overlap_fn, &x, 1, NULL, GC));
  // Directly: rows 2..4 are read twice, so d sum / dx is 2 there, 1 elsewhere.
  tl_tape_reset();
  x->grad = NULL;
  tl_backward(tl_sum(overlap_fn(&x, NULL)));
  for (int64_t r = 0; r < 7; r++)
    for (int64_t c = 0; c < 3; c++)
      cr_assert_eq(F(x->grad)[r * 3 + c], (r >= 2 && r < 5) ? 2.0f : 1.0f, "row %ld", (long)r);
}

// Views of a parameter put their gradient into the parameter block.
Test(ops_view, view_of_parameter) {
  tl_params p;
  tl_params_init(&p);
  tl_tensor *w = tl_params_add(&p, "w", 2, (int64_t[]){5, 4}, false);
  tl_params_alloc(&p);
  for (int i = 0; i < 20; i++) F(w)[i] = (float)i;
  tl_tensor *col = tl_slice(tl_transpose(w, 0, 1), 0, 1, 1); // [1, 5]: column 1
  tl_backward(tl_sum(tl_mul(col, col)));
  for (int r = 0; r < 5; r++)
    for (int c = 0; c < 4; c++)
      cr_assert_eq(p.grads[r * 4 + c], c == 1 ? 2.0f * (r * 4 + 1) : 0.0f);
  tl_params_free(&p);
}

// Views work on any dtype: i32 ids reshaped and sliced, u8 sliced (pointer
// arithmetic in bytes), a strided i32 view made contiguous.
Test(ops_view, integer_views) {
  tl_tensor *ids = tl_test_randint(5, 0, 1000, 2, (int64_t[]){7, 13});
  const int32_t *iv = ids->data;
  tl_tensor *flat = tl_reshape(ids, 1, (int64_t[]){91});
  cr_assert_eq(flat->dtype, TL_I32);
  cr_assert_eq(((int32_t *)flat->data)[50], iv[50]);
  tl_tensor *col = tl_contiguous(tl_slice(tl_transpose(ids, 0, 1), 0, 4, 1)); // [1, 7]
  for (int r = 0; r < 7; r++) cr_assert_eq(((int32_t *)col->data)[r], iv[r * 13 + 4]);

  uint8_t bytes[30];
  for (int i = 0; i < 30; i++) bytes[i] = (uint8_t)(3 * i);
  tl_tensor *b = tl_from_data(TL_U8, 2, (int64_t[]){5, 6}, bytes);
  tl_tensor *s = tl_slice(b, 1, 2, 3);
  int64_t idx[2] = {4, 1};
  cr_assert_eq(tl_get_f32(s, idx), (float)bytes[4 * 6 + 3]);
}
