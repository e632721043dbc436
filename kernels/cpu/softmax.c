// softmax.c: row-wise softmax kernels. One row per OpenMP iteration; rows are
// long enough (C >= hidden or vocab) that finer splitting never paid.
#include "kernels/cpu/softmax.h"

#include <math.h>
#include <stddef.h>

// Below this many elements a parallel region costs more than it saves.
#define TL_SOFTMAX_PAR_MIN 32768

float tl_cpu_row_max(const float *x, int64_t n) {
  float m = -INFINITY;
#pragma omp simd reduction(max : m)
  for (int64_t i = 0; i < n; i++) m = x[i] > m ? x[i] : m;
  return m;
}

// --- exp over a row, 8 lanes at a time on AVX2 -------------------------------
// glibc's expf is scalar (~6 ns an element here); attention's softmax calls it
// T*S times per head, as often as the GEMMs do a multiply-add per 128 flops, so
// it must vectorise. exp(v) = 2^k * e^r with k = round(v / ln 2) and |r| <= ln2/2,
// e^r by its Taylor series to r^7 (error < 1.2e-7 relative, ~1 ulp). Lanes
// below -87 give exactly 0 (masked scores are -inf); NaN stays NaN.
// Functions compiled for AVX2 + FMA whatever the build's -march; called only
// after a runtime check (have_avx2). An attribute, not a pragma: clang too.
#define TL_AVX2 __attribute__((target("avx2,fma")))

typedef float tl_v8f __attribute__((vector_size(32)));
typedef int32_t tl_v8i __attribute__((vector_size(32)));

static inline __attribute__((always_inline)) TL_AVX2 tl_v8f exp8(tl_v8f v) {
  tl_v8i zero = ~(v < -87.0f);            // all-ones where the result is not 0
  tl_v8i hi = v > 88.0f, lo = v < -88.0f; // clamp so 2^k stays a normal float
  tl_v8f c = (tl_v8f)(((tl_v8i)v & ~(hi | lo)) | ((tl_v8i)((tl_v8f){0} + 88.0f) & hi) |
                      ((tl_v8i)((tl_v8f){0} - 88.0f) & lo));
  tl_v8f k = (c * 1.44269504f + 12582912.0f) - 12582912.0f; // round to nearest
  tl_v8f r = c - k * 0.693145752f - k * 1.42860677e-6f;     // ln 2 split hi + lo
  tl_v8f p = r * (1.0f / 5040) + 1.0f / 720;
  p = p * r + 1.0f / 120;
  p = p * r + 1.0f / 24;
  p = p * r + 1.0f / 6;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  tl_v8f two_k = (tl_v8f)((__builtin_convertvector(k, tl_v8i) + 127) << 23);
  return (tl_v8f)((tl_v8i)(p * two_k) & zero);
}

// Blocks of 1024 elements sum in float lanes, blocks add up in double: exact
// enough for a 65k-wide vocabulary row without a double per element.
TL_AVX2 static double exp_sum_avx2(const float *x, float *e, int64_t n, float shift) {
  double total = 0;
  int64_t i = 0;
  while (i + 8 <= n) {
    tl_v8f acc = {0};
    for (int64_t end = i + 1024 < n ? i + 1024 : n; i + 8 <= end; i += 8) {
      tl_v8f v;
      __builtin_memcpy(&v, x + i, sizeof v);
      tl_v8f y = exp8(v - shift);
      if (e) __builtin_memcpy(e + i, &y, sizeof y);
      acc += y;
    }
    total += ((double)acc[0] + acc[1] + acc[2] + acc[3]) +
             ((double)acc[4] + acc[5] + acc[6] + acc[7]);
  }
  for (; i < n; i++) {
    float y = expf(x[i] - shift);
    if (e) e[i] = y;
    total += y;
  }
  return total;
}

TL_AVX2 static void exp_add_avx2(const float *x, float shift, float scale, float *y, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    tl_v8f v, out;
    __builtin_memcpy(&v, x + i, sizeof v);
    __builtin_memcpy(&out, y + i, sizeof out);
    out += scale * exp8(v - shift);
    __builtin_memcpy(y + i, &out, sizeof out);
  }
  for (; i < n; i++) y[i] += scale * expf(x[i] - shift);
}

static int have_avx2(void) {
  static int cached = -1;
  if (cached < 0) cached = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  return cached;
}

double tl_cpu_row_exp_sum(const float *x, float *e, int64_t n, float shift) {
  if (have_avx2()) return exp_sum_avx2(x, e, n, shift);
  double total = 0;
  for (int64_t i = 0; i < n; i++) {
    float y = expf(x[i] - shift);
    if (e) e[i] = y;
    total += y;
  }
  return total;
}

void tl_cpu_row_exp_add(const float *x, float shift, float scale, float *y, int64_t n) {
  if (have_avx2()) {
    exp_add_avx2(x, shift, scale, y, n);
    return;
  }
  for (int64_t i = 0; i < n; i++) y[i] += scale * expf(x[i] - shift);
}

float tl_cpu_row_logsumexp(const float *x, int64_t n) {
  float m = tl_cpu_row_max(x, n);
  if (m == -INFINITY) return -INFINITY;
  return m + (float)log(tl_cpu_row_exp_sum(x, NULL, n, m));
}

void tl_cpu_softmax_fwd(const float *x, float *y, int64_t N, int64_t C) {
#pragma omp parallel for schedule(static) if (N * C >= TL_SOFTMAX_PAR_MIN)
  for (int64_t n = 0; n < N; n++) {
    const float *xr = x + n * C;
    float *yr = y + n * C;
    float m = tl_cpu_row_max(xr, C);
    float inv = (float)(1.0 / tl_cpu_row_exp_sum(xr, yr, C, m));
#pragma omp simd
    for (int64_t c = 0; c < C; c++) yr[c] *= inv;
  }
}

void tl_cpu_log_softmax_fwd(const float *x, float *y, int64_t N, int64_t C) {
#pragma omp parallel for schedule(static) if (N * C >= TL_SOFTMAX_PAR_MIN)
  for (int64_t n = 0; n < N; n++) {
    const float *xr = x + n * C;
    float *yr = y + n * C;
    float lse = tl_cpu_row_logsumexp(xr, C);
#pragma omp simd
    for (int64_t c = 0; c < C; c++) yr[c] = xr[c] - lse;
  }
}

void tl_cpu_softmax_bwd(const float *y, const float *dy, float *dx, int64_t N, int64_t C) {
#pragma omp parallel for schedule(static) if (N * C >= TL_SOFTMAX_PAR_MIN)
  for (int64_t n = 0; n < N; n++) {
    const float *yr = y + n * C, *gr = dy + n * C;
    float *dr = dx + n * C;
    // d softmax: the Jacobian diag(y) - y y^T applied to dy.
    double dot = 0;
#pragma omp simd reduction(+ : dot)
    for (int64_t c = 0; c < C; c++) dot += (double)gr[c] * yr[c];
    float d = (float)dot;
#pragma omp simd
    for (int64_t c = 0; c < C; c++) dr[c] += yr[c] * (gr[c] - d);
  }
}

void tl_cpu_log_softmax_bwd(const float *y, const float *dy, float *dx, int64_t N, int64_t C) {
#pragma omp parallel for schedule(static) if (N * C >= TL_SOFTMAX_PAR_MIN)
  for (int64_t n = 0; n < N; n++) {
    const float *yr = y + n * C, *gr = dy + n * C;
    float *dr = dx + n * C;
    // d log-softmax: dy minus softmax times the row's total upstream gradient.
    double sum = 0;
#pragma omp simd reduction(+ : sum)
    for (int64_t c = 0; c < C; c++) sum += gr[c];
    float s = (float)sum;
    for (int64_t c = 0; c < C; c++) dr[c] += gr[c] - expf(yr[c]) * s;
  }
}
