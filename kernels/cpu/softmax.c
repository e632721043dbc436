// softmax.c: row-wise softmax kernels. One row per OpenMP iteration; rows are
// long enough (C >= hidden or vocab) that finer splitting never paid.
#include "kernels/cpu/softmax.h"

#include <math.h>

// Below this many elements a parallel region costs more than it saves.
#define TL_SOFTMAX_PAR_MIN 32768

float tl_cpu_row_max(const float *x, int64_t n) {
  float m = -INFINITY;
  for (int64_t i = 0; i < n; i++) m = x[i] > m ? x[i] : m;
  return m;
}

double tl_cpu_row_exp_sum(const float *x, float *e, int64_t n, float shift) {
  // Four partial sums: shorter dependency chains, and a sum in double keeps a
  // 65k-wide vocabulary row exact to float precision.
  double s0 = 0, s1 = 0, s2 = 0, s3 = 0;
  int64_t i = 0;
  for (; i + 4 <= n; i += 4) {
    e[i] = expf(x[i] - shift);
    e[i + 1] = expf(x[i + 1] - shift);
    e[i + 2] = expf(x[i + 2] - shift);
    e[i + 3] = expf(x[i + 3] - shift);
    s0 += e[i];
    s1 += e[i + 1];
    s2 += e[i + 2];
    s3 += e[i + 3];
  }
  for (; i < n; i++) {
    e[i] = expf(x[i] - shift);
    s0 += e[i];
  }
  return (s0 + s1) + (s2 + s3);
}

float tl_cpu_row_logsumexp(const float *x, int64_t n) {
  float m = tl_cpu_row_max(x, n);
  if (m == -INFINITY) return -INFINITY;
  double s = 0;
  for (int64_t i = 0; i < n; i++) s += expf(x[i] - m);
  return m + (float)log(s);
}

void tl_cpu_softmax_fwd(const float *x, float *y, int64_t N, int64_t C) {
#pragma omp parallel for schedule(static) if (N * C >= TL_SOFTMAX_PAR_MIN)
  for (int64_t n = 0; n < N; n++) {
    const float *xr = x + n * C;
    float *yr = y + n * C;
    float m = tl_cpu_row_max(xr, C);
    float inv = (float)(1.0 / tl_cpu_row_exp_sum(xr, yr, C, m));
    for (int64_t c = 0; c < C; c++) yr[c] *= inv;
  }
}

void tl_cpu_log_softmax_fwd(const float *x, float *y, int64_t N, int64_t C) {
#pragma omp parallel for schedule(static) if (N * C >= TL_SOFTMAX_PAR_MIN)
  for (int64_t n = 0; n < N; n++) {
    const float *xr = x + n * C;
    float *yr = y + n * C;
    float lse = tl_cpu_row_logsumexp(xr, C);
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
    for (int64_t c = 0; c < C; c++) dot += (double)gr[c] * yr[c];
    float d = (float)dot;
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
    for (int64_t c = 0; c < C; c++) sum += gr[c];
    float s = (float)sum;
    for (int64_t c = 0; c < C; c++) dr[c] += gr[c] - expf(yr[c]) * s;
  }
}
