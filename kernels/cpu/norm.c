// norm.c: layernorm and RMSNorm. Forward is one parallel loop over rows; the
// row statistics go to double so that a row with a large mean keeps its
// variance. Backward splits rows into one static chunk per thread: each thread
// writes its own rows of dx and its own partial sums of dgamma/dbeta, which are
// then added in thread order (deterministic for a given thread count).
#include "kernels/cpu/norm.h"

#include <math.h>
#include <omp.h>
#include <string.h>

// Reductions carry "omp simd" so that they vectorise without -ffast-math (the
// order of a row's sum then depends on the vector width, not on the thread count).

// Below this many elements a parallel region costs more than it saves.
#define TL_NORM_PAR_MIN 16384

void tl_cpu_layernorm_fwd(const float *x, const float *gamma, const float *beta, float *y,
                          float *mean, float *rstd, int64_t N, int64_t C, float eps) {
#pragma omp parallel for schedule(static) if (N * C >= TL_NORM_PAR_MIN)
  for (int64_t n = 0; n < N; n++) {
    const float *xr = x + n * C;
    float *yr = y + n * C;

    // Two passes over the row (it is in cache): mean, then centred variance.
    double s = 0;
#pragma omp simd reduction(+ : s)
    for (int64_t c = 0; c < C; c++) s += xr[c];
    float mu = (float)(s / (double)C);
    double ss = 0;
#pragma omp simd reduction(+ : ss)
    for (int64_t c = 0; c < C; c++) ss += (double)(xr[c] - mu) * (xr[c] - mu);
    float rs = (float)(1.0 / sqrt(ss / (double)C + eps));

    if (beta) {
#pragma omp simd
      for (int64_t c = 0; c < C; c++) yr[c] = (xr[c] - mu) * rs * gamma[c] + beta[c];
    } else {
#pragma omp simd
      for (int64_t c = 0; c < C; c++) yr[c] = (xr[c] - mu) * rs * gamma[c];
    }
    mean[n] = mu;
    rstd[n] = rs;
  }
}

// Rows [lo, hi) of thread t out of n threads, in order.
static void thread_rows(int64_t N, int t, int n, int64_t *lo, int64_t *hi) {
  *lo = N * t / n;
  *hi = N * (t + 1) / n;
}

// Adds the nthreads partial rows of length C in p (stride C) into dst.
static void add_partials(float *dst, const float *p, int64_t C, int nthreads) {
  for (int t = 0; t < nthreads; t++)
#pragma omp simd
    for (int64_t c = 0; c < C; c++) dst[c] += p[t * C + c];
}

void tl_cpu_layernorm_bwd(const float *x, const float *gamma, const float *mean,
                          const float *rstd, const float *dy, float *dx, float *dgamma,
                          float *dbeta, int64_t N, int64_t C, float *partial, int nthreads) {
  if (N * C < TL_NORM_PAR_MIN) nthreads = 1;
  memset(partial, 0, sizeof(float) * 2 * C * nthreads);

#pragma omp parallel num_threads(nthreads)
  {
    int t = omp_get_thread_num(), nt = omp_get_num_threads();
    float *pg = partial + t * C, *pb = partial + (nthreads + t) * C;
    int64_t lo, hi;
    thread_rows(N, t, nt, &lo, &hi);
    for (int64_t n = lo; n < hi; n++) {
      const float *xr = x + n * C, *gr = dy + n * C;
      float mu = mean[n], rs = rstd[n];

      // Parameter grads and the two row means that dx needs, in one pass.
      double mg = 0, mgx = 0;
#pragma omp simd reduction(+ : mg, mgx)
      for (int64_t c = 0; c < C; c++) {
        float xh = (xr[c] - mu) * rs, g = gr[c] * gamma[c];
        pg[c] += gr[c] * xh;
        pb[c] += gr[c];
        mg += g;
        mgx += (double)g * xh;
      }
      if (!dx) continue;

      // dx = rstd * (g - mean(g) - xhat * mean(g * xhat)).
      float a = (float)(mg / (double)C), b = (float)(mgx / (double)C);
      float *dr = dx + n * C;
#pragma omp simd
      for (int64_t c = 0; c < C; c++) {
        float xh = (xr[c] - mu) * rs;
        dr[c] += rs * (gr[c] * gamma[c] - a - xh * b);
      }
    }
  }
  if (dgamma) add_partials(dgamma, partial, C, nthreads);
  if (dbeta) add_partials(dbeta, partial + nthreads * C, C, nthreads);
}

void tl_cpu_rmsnorm_fwd(const float *x, const float *gamma, float *y, float *rstd, int64_t N,
                        int64_t C, float eps) {
#pragma omp parallel for schedule(static) if (N * C >= TL_NORM_PAR_MIN)
  for (int64_t n = 0; n < N; n++) {
    const float *xr = x + n * C;
    float *yr = y + n * C;
    double ss = 0;
#pragma omp simd reduction(+ : ss)
    for (int64_t c = 0; c < C; c++) ss += (double)xr[c] * xr[c];
    float rs = (float)(1.0 / sqrt(ss / (double)C + eps));
#pragma omp simd
    for (int64_t c = 0; c < C; c++) yr[c] = xr[c] * rs * gamma[c];
    rstd[n] = rs;
  }
}

void tl_cpu_rmsnorm_bwd(const float *x, const float *gamma, const float *rstd, const float *dy,
                        float *dx, float *dgamma, int64_t N, int64_t C, float *partial,
                        int nthreads) {
  if (N * C < TL_NORM_PAR_MIN) nthreads = 1;
  memset(partial, 0, sizeof(float) * C * nthreads);

#pragma omp parallel num_threads(nthreads)
  {
    int t = omp_get_thread_num(), nt = omp_get_num_threads();
    float *pg = partial + t * C;
    int64_t lo, hi;
    thread_rows(N, t, nt, &lo, &hi);
    for (int64_t n = lo; n < hi; n++) {
      const float *xr = x + n * C, *gr = dy + n * C;
      float rs = rstd[n];

      // gamma's grad and mean(g * xhat) in one pass.
      double mgx = 0;
#pragma omp simd reduction(+ : mgx)
      for (int64_t c = 0; c < C; c++) {
        float xh = xr[c] * rs, g = gr[c] * gamma[c];
        pg[c] += gr[c] * xh;
        mgx += (double)g * xh;
      }
      if (!dx) continue;

      // dx = rstd * (g - xhat * mean(g * xhat)): no mean term, RMSNorm does not centre.
      float b = (float)(mgx / (double)C);
      float *dr = dx + n * C;
#pragma omp simd
      for (int64_t c = 0; c < C; c++) dr[c] += rs * (gr[c] * gamma[c] - xr[c] * rs * b);
    }
  }
  if (dgamma) add_partials(dgamma, partial, C, nthreads);
}
