// parity.h: helpers for the PyTorch parity tests (fixtures written by
// tests/make_fixtures.py, read with train/safetensors.h).
//
// Error measure used by every parity check, per tensor:
//   rel_err(a, ref) = max_i |a_i - ref_i| / max_i |ref_i|
// i.e. the worst absolute error scaled by the reference's largest magnitude, so
// tiny elements (where elementwise relative error is noise) do not dominate,
// yet any element off by a visible fraction of the tensor's scale fails. The
// references are float64 results rounded to float32, so the tolerance budgets
// tl's float32 arithmetic only.
#pragma once
#include <criterion/criterion.h>
#include <math.h>

#include "tests/core/check.h"
#include "train/safetensors.h"

#define TL_PARITY_TOL 1e-4

static inline tl_safetensors tl_parity_open(const char *file) {
  tl_safetensors st;
  const char *path = tl_fmt("%s/tests/fixtures/%s", TL_SOURCE_DIR, file);
  cr_assert_eq(tl_safetensors_open(&st, path), TL_OK, "%s", tl_last_error());
  return st;
}

// A fixture tensor as an arena tensor of its own shape (f32 or i32).
static inline tl_tensor *tl_parity_get(const tl_safetensors *st, const char *name) {
  const tl_st_tensor *e = tl_safetensors_find(st, name);
  cr_assert(e, "fixture %s has no tensor %s", st->path, name);
  cr_assert(e->supported && e->rank <= TL_MAX_RANK, "fixture tensor %s unusable", name);
  tl_tensor *t = tl_empty(e->dtype, e->rank, e->shape);
  cr_assert_eq(tl_safetensors_load(st, name, t), TL_OK, "%s", tl_last_error());
  return t;
}

// rel_err as defined above; a and ref hold n floats.
static inline double tl_parity_rel_err(const float *a, const float *ref, int64_t n) {
  double worst = 0, scale = 0;
  for (int64_t i = 0; i < n; i++) {
    double d = fabs((double)a[i] - ref[i]);
    if (!(d <= worst)) worst = d; // NaN in a counts as the worst error
    if (fabs(ref[i]) > scale) scale = fabs(ref[i]);
  }
  return scale > 0 ? worst / scale : worst;
}

// Compares tensor a (any layout) with fixture tensor name (same element count)
// and fails the test naming both when rel_err exceeds tol. Returns the error.
static inline double tl_parity_check(const tl_safetensors *st, const char *name,
                                     const tl_tensor *a, double tol) {
  tl_tensor *ref = tl_parity_get(st, name);
  cr_assert_eq(tl_numel(ref), tl_numel(a), "%s: %ld elements, fixture has %ld", name,
               (long)tl_numel(a), (long)tl_numel(ref));
  tl_tensor *dense = tl_empty(TL_F32, a->rank, a->shape);
  tl_copy(dense, a);
  double err = tl_parity_rel_err(dense->data, ref->data, tl_numel(ref));
  cr_expect(err <= tol, "%s: rel_err %.3g > %.1g", name, err, tol);
  return err;
}

// A gradient that is exactly zero in exact arithmetic (e.g. attention key
// biases: softmax is invariant to adding the same q.b_k to every score of a
// row) has a reference of pure float64 round-off, so rel_err is meaningless.
// Such a gradient passes when max|a| <= tol * max|ref of the sibling weight's
// gradient| (name with ".bias" replaced by ".weight").
static inline void tl_parity_check_zero_grad(const tl_safetensors *st, const tl_tensor *t,
                                             double tol) {
  char wname[256];
  size_t len = strlen(t->name);
  cr_assert(len > 5 && !strcmp(t->name + len - 5, ".bias"), "%s is not a bias", t->name);
  snprintf(wname, sizeof wname, "grad.%.*s.weight", (int)(len - 5), t->name);
  tl_tensor *ref = tl_parity_get(st, wname);
  double scale = 0, worst = 0;
  for (int64_t i = 0; i < tl_numel(ref); i++) scale = fmax(scale, fabs(((float *)ref->data)[i]));
  const float *g = t->grad->data;
  for (int64_t i = 0; i < tl_numel(t); i++) worst = fmax(worst, fabs(g[i]));
  cr_expect(worst <= tol * scale, "grad.%s: max %.3g, exact zero; %s scale %.3g", t->name,
            worst, wname, scale);
}

// Every parameter's gradient against "grad." + name; returns the worst rel_err.
// Parameters whose name ends in zero_suffix (NULL: none) have an exactly zero
// gradient and are checked by tl_parity_check_zero_grad instead.
static inline double tl_parity_check_grads(const tl_safetensors *st, const tl_params *p,
                                           double tol, const char *zero_suffix) {
  double worst = 0;
  size_t zl = zero_suffix ? strlen(zero_suffix) : 0;
  for (int i = 0; i < p->count; i++) {
    const tl_tensor *t = p->info[i].tensor;
    size_t len = strlen(t->name);
    if (zero_suffix && len >= zl && !strcmp(t->name + len - zl, zero_suffix)) {
      tl_parity_check_zero_grad(st, t, tol);
      continue;
    }
    char name[256];
    snprintf(name, sizeof name, "grad.%s", t->name);
    double e = tl_parity_check(st, name, t->grad, tol);
    if (e > worst) worst = e;
  }
  return worst;
}

static inline float tl_parity_scalar(const tl_safetensors *st, const char *name) {
  float x = 0;
  cr_assert_eq(tl_safetensors_read_raw(st, name, &x, sizeof x), TL_OK, "%s", tl_last_error());
  return x;
}
