// check.h: shared helpers for op tests: an arena per test, seeded random
// tensors, and a central finite-difference gradient check.
#pragma once
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "core/autograd.h"

static tl_arena tl_test_arena;

// Call at the start of each test (or from a Criterion .init): a 256 MB arena.
static inline void tl_test_setup(void) {
  tl_arena_init(&tl_test_arena, (size_t)256 << 20);
  tl_set_arena(&tl_test_arena);
  tl_tape_reset();
  tl_set_grad_enabled(true);
}

static inline void tl_test_teardown(void) {
  tl_tape_reset();
  tl_arena_free(&tl_test_arena);
}

// xorshift64*: tests need repeatable numbers, not good ones.
static inline double tl_test_uniform(uint64_t *state) {
  *state ^= *state >> 12;
  *state ^= *state << 25;
  *state ^= *state >> 27;
  return (double)((*state * 2685821657736338717ULL) >> 11) / 9007199254740992.0;
}

static inline double tl_test_normal(uint64_t *state) {
  double u1 = tl_test_uniform(state), u2 = tl_test_uniform(state);
  if (u1 < 1e-300) u1 = 1e-300;
  return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

// A contiguous f32 tensor of N(0, scale^2) values; requires_grad as asked.
static inline tl_tensor *tl_test_randn(uint64_t seed, float scale, bool requires_grad,
                                       int rank, const int64_t *shape) {
  tl_tensor *t = tl_empty(TL_F32, rank, shape);
  uint64_t state = seed * 0x9E3779B97F4A7C15ULL + 1;
  float *x = t->data;
  for (int64_t i = 0; i < tl_numel(t); i++) x[i] = (float)(scale * tl_test_normal(&state));
  t->requires_grad = requires_grad;
  return t;
}

// i32 tensor of values uniform in [lo, hi).
static inline tl_tensor *tl_test_randint(uint64_t seed, int lo, int hi, int rank,
                                         const int64_t *shape) {
  tl_tensor *t = tl_empty(TL_I32, rank, shape);
  uint64_t state = seed * 0x9E3779B97F4A7C15ULL + 7;
  int32_t *x = t->data;
  for (int64_t i = 0; i < tl_numel(t); i++)
    x[i] = lo + (int32_t)(tl_test_uniform(&state) * (hi - lo));
  return t;
}

// The op under test: builds its output from inputs (ctx carries extra arguments).
typedef tl_tensor *(*tl_test_fn)(tl_tensor **inputs, void *ctx);

// A contiguous f32 copy of t (t may be a strided view).
static inline tl_tensor *tl_test_dense(const tl_tensor *t) {
  tl_tensor *d = tl_empty(TL_F32, t->rank, t->shape);
  tl_copy(d, t);
  return d;
}

// sum(out * w) in double, forward only; arena memory it used is given back.
static inline double tl_test_weighted_sum(tl_test_fn fn, tl_tensor **in, void *ctx,
                                          const float *w) {
  bool was = tl_grad_enabled();
  tl_set_grad_enabled(false);
  size_t mark = tl_test_arena.used;
  tl_tensor *out = tl_test_dense(fn(in, ctx));
  double s = 0;
  const float *o = out->data;
  for (int64_t i = 0; i < tl_numel(out); i++) s += (double)o[i] * w[i];
  tl_arena_rewind(&tl_test_arena, mark);
  tl_set_grad_enabled(was);
  return s;
}

typedef struct {
  double eps;        // finite-difference step
  double atol, rtol; // pass when |analytic - numeric| <= atol + rtol * |numeric|
  int max_checks;    // elements checked per input (random subset when larger); 0 = 256
} tl_gradcheck_opts;

// Checks d sum(fn(in) * w) / d in[k] for every input with requires_grad, against
// central differences (f(x+eps) - f(x-eps)) / 2eps, w fixed random weights.
// Prints the worst mismatch and returns false if any element is out of tolerance.
static inline bool tl_test_gradcheck(tl_test_fn fn, tl_tensor **in, int n_in, void *ctx,
                                     tl_gradcheck_opts o) {
  if (o.max_checks <= 0) o.max_checks = 256;
  // Analytic gradients through the tape.
  tl_tape_reset();
  for (int k = 0; k < n_in; k++) in[k]->grad = NULL;
  tl_tensor *out = fn(in, ctx);
  int64_t n_out = tl_numel(out);
  float *w = tl_arena_alloc(&tl_test_arena, (size_t)n_out * sizeof(float));
  uint64_t state = 12345;
  for (int64_t i = 0; i < n_out; i++) w[i] = (float)tl_test_normal(&state);
  tl_tensor *w_t = tl_from_data(TL_F32, out->rank, out->shape, w);
  if (!out->requires_grad) {
    fprintf(stderr, "gradcheck: output does not require grad\n");
    return false;
  }
  tl_backward_with(out, w_t);
  tl_tape_reset();

  bool ok = true;
  for (int k = 0; k < n_in; k++) {
    tl_tensor *x = in[k];
    if (!x->requires_grad || x->dtype != TL_F32) continue;
    if (!x->grad) {
      fprintf(stderr, "gradcheck: input %d got no gradient\n", k);
      return false;
    }
    TL_ASSERT(tl_is_contiguous(x));
    float *xv = x->data;
    const float *g = x->grad->data;
    int64_t n = tl_numel(x);
    double worst = 0;
    int64_t worst_i = -1;
    double worst_a = 0, worst_n = 0;
    for (int c = 0; c < o.max_checks && c < n; c++) {
      int64_t i = n <= o.max_checks ? c : (int64_t)(tl_test_uniform(&state) * n);
      float saved = xv[i];
      xv[i] = (float)(saved + o.eps);
      double plus = tl_test_weighted_sum(fn, in, ctx, w);
      xv[i] = (float)(saved - o.eps);
      double minus = tl_test_weighted_sum(fn, in, ctx, w);
      xv[i] = saved;
      double numeric = (plus - minus) / (2 * o.eps);
      double err = fabs(g[i] - numeric) - o.rtol * fabs(numeric);
      if (err > worst) worst = err, worst_i = i, worst_a = g[i], worst_n = numeric;
    }
    if (worst > o.atol) {
      fprintf(stderr, "gradcheck: input %d element %ld: analytic %.6g numeric %.6g\n", k,
              (long)worst_i, worst_a, worst_n);
      ok = false;
    }
  }
  return ok;
}
