// cuda_check.h: helpers for the CUDA kernel tests (tests/cuda/test_cuda_*.c).
//
// Every test compares a CUDA kernel with a CPU reference on random data at
// awkward sizes (1, primes, sizes that are not multiples of any tile). The
// comparison is element by element with
//     |got - ref| <= tol * (|ref| + mean |ref| over the array)
// i.e. a relative error with a floor at the array's typical magnitude, so that
// values near zero (cancellation) are judged against the scale of the output,
// not against themselves. tol is TOL_F32 = 1e-5 for f32 and TOL_BF16 = 1e-2 for
// bf16 (bf16 keeps 8 significant bits: one rounding is 2^-9 = 0.2% relative;
// 1e-2 leaves room for a few roundings of inputs and outputs). bf16 references
// are computed from the same bf16-rounded inputs, in f32 or double.
//
// Without a GPU (no driver, no device, or built without CUDA) each test prints
// "skipped: no GPU" and is reported as skipped, which passes.
#pragma once
#include <criterion/criterion.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/device.h"
#include "core/tensor.h"

#define TOL_F32 1e-5
#define TOL_BF16 1e-2

// Skips the current test unless a GPU is usable (and initialises it).
#define REQUIRE_GPU()                                                              \
  do {                                                                             \
    if (!tl_device_available() || tl_device_init(0) != TL_OK) {                    \
      fprintf(stderr, "skipped: no GPU\n");                                        \
      cr_skip_test("skipped: no GPU");                                             \
    }                                                                              \
  } while (0)

// Deterministic normal-ish random numbers (sum of uniforms), per test seed.
static inline float tc_rand(uint64_t *s) {
  float acc = 0.0f;
  for (int i = 0; i < 4; i++) {
    *s = *s * 6364136223846793005ULL + 1442695040888963407ULL;
    acc += (float)((*s >> 40) & 0xFFFFFF) / 16777216.0f;
  }
  return (acc - 2.0f) * 1.7320508f; // mean 0, variance 1
}

// n random floats in [lo-ish, hi-ish]: scale * N(0,1)-like; caller frees.
static inline float *tc_randn(int64_t n, float scale, uint64_t seed) {
  float *x = malloc((size_t)(n ? n : 1) * sizeof(float));
  uint64_t s = seed * 0x9E3779B97F4A7C15ULL + 1;
  for (int64_t i = 0; i < n; i++) x[i] = scale * tc_rand(&s);
  return x;
}

// Rounds every value to bf16 in place when dt is bf16 (so references see what
// the GPU sees).
static inline void tc_round(float *x, int64_t n, tl_dtype dt) {
  if (dt != TL_BF16) return;
  for (int64_t i = 0; i < n; i++) x[i] = tl_bf16_to_f32(tl_f32_to_bf16(x[i]));
}

// Device copy of host floats in dtype dt (f32 or bf16). Free with tl_device_free.
static inline void *tc_up(const float *x, int64_t n, tl_dtype dt) {
  size_t es = tl_dtype_size(dt);
  void *d = tl_device_malloc((size_t)(n ? n : 1) * es);
  cr_assert(d, "device malloc: %s", tl_last_error());
  if (dt == TL_F32) {
    tl_device_upload(d, x, (size_t)n * es);
  } else {
    uint16_t *h = malloc((size_t)(n ? n : 1) * 2);
    for (int64_t i = 0; i < n; i++) h[i] = tl_f32_to_bf16(x[i]);
    tl_device_upload(d, h, (size_t)n * 2);
    tl_device_sync();
    free(h);
  }
  return d;
}

// Host floats from a device array of dtype dt; caller frees.
static inline float *tc_down(const void *d, int64_t n, tl_dtype dt) {
  float *x = malloc((size_t)(n ? n : 1) * sizeof(float));
  if (dt == TL_F32) {
    tl_device_download(x, d, (size_t)n * sizeof(float));
  } else {
    uint16_t *h = malloc((size_t)(n ? n : 1) * 2);
    tl_device_download(h, d, (size_t)n * 2);
    for (int64_t i = 0; i < n; i++) x[i] = tl_bf16_to_f32(h[i]);
    free(h);
  }
  return x;
}

// Device i32 copy.
static inline int32_t *tc_up_i32(const int32_t *x, int64_t n) {
  int32_t *d = tl_device_malloc((size_t)(n ? n : 1) * sizeof(int32_t));
  cr_assert(d, "device malloc: %s", tl_last_error());
  tl_device_upload(d, x, (size_t)n * sizeof(int32_t));
  return d;
}

// Compares per the rule at the top; fails the test naming the first mismatch.
static inline void tc_check(const char *what, const float *got, const float *ref, int64_t n,
                            double tol) {
  double mean_abs = 0.0;
  for (int64_t i = 0; i < n; i++) mean_abs += fabs((double)ref[i]);
  mean_abs = n ? mean_abs / (double)n : 0.0;
  int64_t bad = 0, first = -1;
  double worst = 0.0;
  for (int64_t i = 0; i < n; i++) {
    double err = fabs((double)got[i] - (double)ref[i]);
    double lim = tol * (fabs((double)ref[i]) + mean_abs);
    if (!(err <= lim) && !(isinf(ref[i]) && got[i] == ref[i])) {
      if (first < 0) first = i;
      bad++;
    }
    if (lim > 0 && err / lim > worst) worst = err / lim;
  }
  if (bad)
    cr_assert_fail("%s: %ld of %ld elements off; first [%ld] got %.9g want %.9g "
                   "(tol %.1e, worst err/limit %.3g)",
                   what, (long)bad, (long)n, (long)first, got[first], ref[first], tol, worst);
}

static inline double tc_tol(tl_dtype dt) { return dt == TL_F32 ? TOL_F32 : TOL_BF16; }
