// dropout: the mask is the documented function of (seed, offset + i), the kept
// fraction matches p, the backward uses the same mask, p = 0 is the identity.
#include <criterion/criterion.h>

#include "core/ops.h"
#include "core/rng.h"
#include "tests/core/check.h"

TestSuite(dropout, .init = tl_test_setup, .fini = tl_test_teardown);

static float *F(const tl_tensor *t) { return (float *)t->data; }

// The reference: keep iff tl_rng_uniform(seed, offset + i) >= p (rng.h's mapping,
// itself checked against Philox known answers in test_rng.c), scale by 1/(1-p).
static void check_forward(const tl_tensor *x, const tl_tensor *y, float p, uint64_t seed,
                          uint64_t offset) {
  float scale = 1.0f / (1.0f - p);
  for (int64_t i = 0; i < tl_numel(x); i++) {
    bool keep = tl_rng_uniform(seed, offset + (uint64_t)i) >= p;
    cr_assert_eq(F(y)[i], keep ? F(x)[i] * scale : 0.0f, "element %ld offset %lu", (long)i,
                 (unsigned long)offset);
  }
}

Test(dropout, mask_is_function_of_seed_and_counter) {
  static const int64_t sizes[] = {1, 7, 13, 31, 1000, 65537};
  static const uint64_t offsets[] = {0, 1, 3, 6, (1ull << 33) + 1};
  for (int s = 0; s < 6; s++)
    for (int o = 0; o < 5; o++) {
      tl_tensor *x = tl_test_randn(s, 1.0f, false, 1, &sizes[s]);
      check_forward(x, tl_dropout(x, 0.3f, 1234, offsets[o]), 0.3f, 1234, offsets[o]);
    }
}

// Shifting the offset by one shifts the mask by one element: counters, not calls.
Test(dropout, offset_shifts_mask) {
  int64_t n = 101;
  tl_tensor *ones = tl_empty(TL_F32, 1, &n);
  for (int64_t i = 0; i < n; i++) F(ones)[i] = 1.0f;
  tl_tensor *a = tl_dropout(ones, 0.5f, 7, 10), *b = tl_dropout(ones, 0.5f, 7, 11);
  for (int64_t i = 0; i + 1 < n; i++) cr_assert_eq(F(a)[i + 1], F(b)[i]);
  // A different seed gives a different mask (equal masks: chance 2^-101).
  tl_tensor *c = tl_dropout(ones, 0.5f, 8, 10);
  cr_assert(memcmp(a->data, c->data, (size_t)n * sizeof(float)) != 0);
}

// Kept fraction over 2^18 elements for p = 0.1: standard error sqrt(p(1-p)/n)
// = 5.9e-4, so 3e-3 is over 5 sigma. Kept values are exactly x / (1 - p).
Test(dropout, kept_fraction) {
  int64_t n = 1 << 18;
  tl_tensor *ones = tl_empty(TL_F32, 1, &n);
  for (int64_t i = 0; i < n; i++) F(ones)[i] = 1.0f;
  tl_tensor *y = tl_dropout(ones, 0.1f, 99, 0);
  int64_t kept = 0;
  for (int64_t i = 0; i < n; i++) {
    cr_assert(F(y)[i] == 0.0f || F(y)[i] == 1.0f / 0.9f);
    kept += F(y)[i] != 0.0f;
  }
  cr_assert(fabs((double)kept / n - 0.9) < 3e-3, "kept %g", (double)kept / n);
}

static tl_tensor *dropout_fn(tl_tensor **in, void *ctx) {
  return tl_dropout(in[0], 0.25f, 42, 5);
}

// Backward: linear in x for a fixed mask, so central differences are exact up
// to f32 rounding (eps 1e-2, atol = rtol = 1e-4). And directly: dx = mask * scale.
Test(dropout, backward_uses_same_mask) {
  tl_tensor *x = tl_test_randn(1, 1.0f, true, 2, (int64_t[]){13, 31});
  tl_gradcheck_opts o = {.eps = 1e-2, .atol = 1e-4, .rtol = 1e-4, .max_checks = 500};
  cr_assert(tl_test_gradcheck(dropout_fn, &x, 1, NULL, o));
  x->grad = NULL;
  tl_tape_reset();
  tl_backward(tl_sum(dropout_fn(&x, NULL)));
  for (int64_t i = 0; i < 13 * 31; i++) {
    bool keep = tl_rng_uniform(42, 5 + (uint64_t)i) >= 0.25f;
    cr_assert_eq(F(x->grad)[i], keep ? 1.0f / 0.75f : 0.0f);
  }
}

Test(dropout, p_zero_is_identity) {
  tl_tensor *x = tl_test_randn(2, 1.0f, true, 1, (int64_t[]){7});
  cr_assert_eq(tl_dropout(x, 0.0f, 1, 0), x);
}
