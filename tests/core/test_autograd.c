// The tape with real ops: what gets recorded, gradient accumulation, no-grad
// mode, frozen parameters, and that the gradient checker catches a wrong
// backward.
#include <criterion/criterion.h>

#include "core/ops.h"
#include "tests/core/check.h"

TestSuite(autograd, .init = tl_test_setup, .fini = tl_test_teardown);

static float *F(const tl_tensor *t) { return (float *)t->data; }

Test(autograd, records_only_what_needs_grad) {
  tl_tensor *a = tl_test_randn(1, 1.0f, false, 1, (int64_t[]){7});
  tl_tensor *b = tl_test_randn(2, 1.0f, true, 1, (int64_t[]){7});
  tl_tensor *c = tl_gelu(tl_mul(a, a)); // no input requires grad
  cr_assert_eq(tl_tape_length(), 0);
  cr_assert_not(c->requires_grad);
  cr_assert_null(c->node);
  tl_tensor *d = tl_add(c, b); // b does: one node, linked from the output
  cr_assert_eq(tl_tape_length(), 1);
  cr_assert(d->requires_grad);
  cr_assert_not_null(d->node);
  cr_assert_str_eq(d->node->op, "add");
  cr_assert_eq(d->node->in[1], b);
}

Test(autograd, no_grad_mode) {
  tl_tensor *x = tl_test_randn(3, 1.0f, true, 2, (int64_t[]){3, 5});
  tl_set_grad_enabled(false);
  tl_tensor *y = tl_sum(tl_tanh(tl_transpose(x, 0, 1)));
  cr_assert_eq(tl_tape_length(), 0);
  cr_assert_not(y->requires_grad);
  tl_set_grad_enabled(true);
  tl_tensor *z = tl_sum(tl_tanh(x));
  cr_assert_eq(tl_tape_length(), 2);
  cr_assert(z->requires_grad);
}

// y = sum(x * x + x): x is used three times; the contributions add: 2x + 1.
Test(autograd, gradients_accumulate_over_uses) {
  tl_tensor *x = tl_test_randn(4, 1.0f, true, 1, (int64_t[]){13});
  tl_backward(tl_sum(tl_add(tl_mul(x, x), x)));
  for (int i = 0; i < 13; i++)
    cr_assert_float_eq(F(x->grad)[i], 2 * F(x)[i] + 1, 1e-6f, "element %d", i);
}

// Parameter grads live in the block and add up over backward calls (gradient
// accumulation) until tl_params_zero_grad.
Test(autograd, parameter_grads_accumulate_across_steps) {
  tl_params p;
  tl_params_init(&p);
  tl_tensor *w = tl_params_add(&p, "w", 2, (int64_t[]){5, 7}, false);
  tl_tensor *b = tl_params_add(&p, "b", 1, (int64_t[]){5}, true);
  tl_params_alloc(&p);
  uint64_t st = 9;
  for (int i = 0; i < 35; i++) F(w)[i] = (float)tl_test_normal(&st);
  tl_tensor *x = tl_test_randn(5, 1.0f, false, 2, (int64_t[]){3, 7});

  float once[40];
  for (int step = 0; step < 2; step++) {
    tl_backward(tl_sum(tl_linear(x, w, b)));
    tl_tape_reset();
    if (step == 0) memcpy(once, p.grads, sizeof once);
  }
  // d sum / d b = rows = 3, twice; d sum / d w[o, i] = sum_r x[r, i], twice.
  for (int o = 0; o < 5; o++) cr_assert_float_eq(F(b->grad)[o], 6.0f, 1e-5f);
  for (int i = 0; i < 35; i++) cr_assert_float_eq(F(w->grad)[i], 2 * once[i], 1e-5f);
  cr_assert_eq(w->grad->data, p.grads); // in the block, not the arena
  tl_params_zero_grad(&p);
  cr_assert_eq(F(w->grad)[3], 0.0f);
  tl_params_free(&p);
}

// A frozen parameter (a LoRA base weight) gets no gradient and records no node
// when nothing else needs grad; the trainable one beside it still learns.
Test(autograd, frozen_parameters) {
  tl_params p;
  tl_params_init(&p);
  tl_tensor *base = tl_params_add(&p, "base.weight", 2, (int64_t[]){7, 13}, false);
  tl_tensor *lora = tl_params_add(&p, "lora.weight", 2, (int64_t[]){7, 13}, false);
  tl_params_alloc(&p);
  tl_params_freeze(&p, "base.weight", true);
  for (int i = 0; i < 91; i++) F(base)[i] = 0.01f * i, F(lora)[i] = -0.02f * i;
  tl_tensor *x = tl_test_randn(6, 1.0f, false, 2, (int64_t[]){3, 13});

  tl_tensor *h = tl_linear(x, base, NULL);
  cr_assert_eq(tl_tape_length(), 0);
  tl_tensor *y = tl_add(h, tl_linear(x, lora, NULL));
  tl_backward(tl_sum(tl_tanh(y)));
  for (int i = 0; i < 91; i++) cr_assert_eq(F(base->grad)[i], 0.0f);
  float norm = 0;
  for (int i = 0; i < 91; i++) norm += fabsf(F(lora->grad)[i]);
  cr_assert_gt(norm, 0.0f);
  tl_params_free(&p);
}

// --- the checker must be able to fail --------------------------------------------

// square with a deliberately wrong backward (dx = x dy, missing the 2) and a
// right one; both forwards are x^2.
static void square_backward_wrong(tl_node *node) {
  tl_tensor *x = node->in[0];
  for (int64_t i = 0; i < tl_numel(x); i++)
    F(tl_grad(x))[i] += F(x)[i] * F(node->out->grad)[i];
}

static void square_backward_right(tl_node *node) {
  tl_tensor *x = node->in[0];
  for (int64_t i = 0; i < tl_numel(x); i++)
    F(tl_grad(x))[i] += 2 * F(x)[i] * F(node->out->grad)[i];
}

static tl_tensor *square_fn(tl_tensor **in, void *ctx) {
  tl_tensor *x = in[0], *y = tl_empty(TL_F32, x->rank, x->shape);
  for (int64_t i = 0; i < tl_numel(x); i++) F(y)[i] = F(x)[i] * F(x)[i];
  if (tl_needs_grad(&x, 1)) tl_record("square", (tl_backward_fn)ctx, y, &x, 1);
  return y;
}

Test(autograd, checker_flags_a_wrong_backward) {
  tl_tensor *x = tl_test_randn(7, 1.0f, true, 1, (int64_t[]){13});
  // Same tolerances the op tests use for smooth ops.
  tl_gradcheck_opts o = {.eps = 1e-2, .atol = 1e-3, .rtol = 1e-3};
  cr_assert(tl_test_gradcheck(square_fn, &x, 1, (void *)square_backward_right, o));
  cr_assert_not(tl_test_gradcheck(square_fn, &x, 1, (void *)square_backward_wrong, o));
}
