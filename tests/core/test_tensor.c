// Tensor, arena, parameter block and gradient-check harness tests.
#include <criterion/criterion.h>

#include "tests/core/check.h"

TestSuite(tensor, .init = tl_test_setup, .fini = tl_test_teardown);

Test(tensor, contiguous_strides) {
  tl_tensor *t = tl_zeros(TL_F32, 3, (int64_t[]){2, 3, 5});
  cr_assert_eq(t->stride[0], 15);
  cr_assert_eq(t->stride[2], 1);
  cr_assert(tl_is_contiguous(t));
  cr_assert_eq(tl_numel(t), 30);
  t->stride[1] = 1;
  t->stride[2] = 3;
  cr_assert_not(tl_is_contiguous(t));
}

Test(tensor, arena_high_water_and_reset) {
  size_t before = tl_test_arena.used;
  tl_empty(TL_F32, 1, (int64_t[]){1000});
  cr_assert_geq(tl_test_arena.used, before + 4000);
  size_t peak = tl_test_arena.high_water;
  tl_arena_reset(&tl_test_arena);
  cr_assert_eq(tl_test_arena.used, 0);
  cr_assert_eq(tl_test_arena.high_water, peak);
  void *p = tl_arena_alloc(&tl_test_arena, 3);
  cr_assert_eq((uintptr_t)p % 64, 0);
}

Test(tensor, bf16_round_trip) {
  float xs[] = {0.0f, 1.0f, -2.5f, 3.14159f, 1e-20f, 65504.0f};
  for (size_t i = 0; i < sizeof xs / sizeof *xs; i++) {
    float back = tl_bf16_to_f32(tl_f32_to_bf16(xs[i]));
    cr_assert_float_eq(back, xs[i], fabsf(xs[i]) * 4e-3f + 1e-30f, "%g -> %g", xs[i], back);
  }
  // 1 + 2^-8 is halfway between two bf16 values: ties go to even (1.0).
  cr_assert_eq(tl_bf16_to_f32(tl_f32_to_bf16(1.0f + 1.0f / 256)), 1.0f);
}

Test(tensor, copy_strided_transposed) {
  tl_tensor *a = tl_test_randn(1, 1, false, 2, (int64_t[]){3, 4});
  tl_tensor view = *a;  // a transposed view of a: shape [4, 3]
  view.shape[0] = 4, view.shape[1] = 3, view.stride[0] = 1, view.stride[1] = 4;
  tl_tensor *d = tl_test_dense(&view);
  const float *x = a->data, *y = d->data;
  for (int i = 0; i < 3; i++)
    for (int j = 0; j < 4; j++) cr_assert_eq(y[j * 3 + i], x[i * 4 + j]);
}

Test(tensor, params_block_layout) {
  tl_params p;
  tl_params_init(&p);
  tl_tensor *w = tl_params_add(&p, "w", 2, (int64_t[]){3, 5}, false);
  tl_tensor *b = tl_params_add(&p, "b", 1, (int64_t[]){5}, true);
  tl_params_freeze(&p, "b", true);
  tl_params_alloc(&p);
  cr_assert_eq(w->data, p.values);
  cr_assert_eq(w->grad->data, p.grads);
  cr_assert_eq((float *)b->data - p.values, 16, "parameters are 16-float aligned");
  cr_assert(w->requires_grad);
  cr_assert_not(b->requires_grad);
  cr_assert_eq(tl_params_find(&p, "b"), b);
  cr_assert_null(tl_params_find(&p, "c"));
  cr_assert_eq(p.m, p.values + 2 * p.numel);
  tl_params_free(&p);
}

// A hand-written op whose backward we control, so the harness itself is tested:
// out = x^2 with a correct or a deliberately wrong derivative.
static void square_backward_right(tl_node *n) {
  const float *x = n->in[0]->data, *g = n->out->grad->data;
  float *dx = tl_grad(n->in[0])->data;
  for (int64_t i = 0; i < tl_numel(n->out); i++) dx[i] += 2 * x[i] * g[i];
}
static void square_backward_wrong(tl_node *n) {
  const float *x = n->in[0]->data, *g = n->out->grad->data;
  float *dx = tl_grad(n->in[0])->data;
  for (int64_t i = 0; i < tl_numel(n->out); i++) dx[i] += 2.1f * x[i] * g[i];
}
static tl_tensor *square(tl_tensor **in, void *ctx) {
  tl_tensor *x = in[0], *y = tl_empty_like(x);
  const float *xv = x->data;
  float *yv = y->data;
  for (int64_t i = 0; i < tl_numel(x); i++) yv[i] = xv[i] * xv[i];
  if (tl_needs_grad(in, 1)) tl_record("square", (tl_backward_fn)ctx, y, in, 1);
  return y;
}

Test(tensor, gradcheck_accepts_right_and_rejects_wrong) {
  tl_tensor *x = tl_test_randn(3, 1, true, 2, (int64_t[]){7, 3});
  tl_gradcheck_opts o = {.eps = 1e-2, .atol = 1e-3, .rtol = 1e-3};
  cr_assert(tl_test_gradcheck(square, &x, 1, (void *)square_backward_right, o));
  cr_assert_not(tl_test_gradcheck(square, &x, 1, (void *)square_backward_wrong, o));
}

Test(tensor, gradients_accumulate_and_no_grad_records_nothing) {
  tl_tensor *x = tl_test_randn(4, 1, true, 1, (int64_t[]){5});
  tl_tensor *ones = tl_empty(TL_F32, 1, (int64_t[]){5});
  for (int i = 0; i < 5; i++) ((float *)ones->data)[i] = 1;
  tl_backward_with(square(&x, (void *)square_backward_right), ones);
  tl_tape_reset();
  tl_backward_with(square(&x, (void *)square_backward_right), ones);
  const float *xv = x->data, *g = x->grad->data;
  for (int i = 0; i < 5; i++) cr_assert_float_eq(g[i], 4 * xv[i], 1e-5);
  tl_tape_reset();
  tl_set_grad_enabled(false);
  tl_tensor *y = square(&x, (void *)square_backward_right);
  tl_set_grad_enabled(true);
  cr_assert_eq(tl_tape_length(), 0);
  cr_assert_not(y->requires_grad);
}
