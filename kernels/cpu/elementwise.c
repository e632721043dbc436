// elementwise.c: OpenMP loops for elementwise ops, their gradients and view copies.
// Contracts in elementwise.h. Every loop is a flat pass over contiguous memory
// except the row-broadcast ones, which run rows in parallel and columns inside.
#include "kernels/cpu/elementwise.h"

#include <math.h>
#include <stdbool.h>

#include "core/rng.h"

// tl never enables floating-point traps; telling GCC so lets it if-convert the
// float compares in vexp's clamps (and the dropout select), so those loops vectorise.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("no-trapping-math")
#endif

#define PAR(n) if ((n) >= TL_CPU_PAR_MIN)

void tl_cpu_binary(tl_cpu_binop op, const float *a, const float *b, float *y, int64_t n,
                   int64_t nb) {
  // Same shape: one flat pass; the switch sits outside the loops.
  if (nb == n) {
    switch (op) {
    case TL_BIN_ADD:
#pragma omp parallel for simd schedule(static) PAR(n)
      for (int64_t i = 0; i < n; i++) y[i] = a[i] + b[i];
      break;
    case TL_BIN_SUB:
#pragma omp parallel for simd schedule(static) PAR(n)
      for (int64_t i = 0; i < n; i++) y[i] = a[i] - b[i];
      break;
    case TL_BIN_MUL:
#pragma omp parallel for simd schedule(static) PAR(n)
      for (int64_t i = 0; i < n; i++) y[i] = a[i] * b[i];
      break;
    }
    return;
  }
  // Row broadcast: rows in parallel, b's row reused by each.
  int64_t rows = n / nb;
#pragma omp parallel for schedule(static) PAR(n)
  for (int64_t r = 0; r < rows; r++) {
    const float *ar = a + r * nb;
    float *yr = y + r * nb;
    if (op == TL_BIN_ADD)
      for (int64_t j = 0; j < nb; j++) yr[j] = ar[j] + b[j];
    else if (op == TL_BIN_SUB)
      for (int64_t j = 0; j < nb; j++) yr[j] = ar[j] - b[j];
    else
      for (int64_t j = 0; j < nb; j++) yr[j] = ar[j] * b[j];
  }
}

void tl_cpu_axpy(float *y, const float *x, float s, int64_t n) {
#pragma omp parallel for simd schedule(static) PAR(n)
  for (int64_t i = 0; i < n; i++) y[i] += s * x[i];
}

void tl_cpu_scale(float *y, const float *x, float s, int64_t n) {
#pragma omp parallel for simd schedule(static) PAR(n)
  for (int64_t i = 0; i < n; i++) y[i] = s * x[i];
}

void tl_cpu_mul_acc(float *y, const float *x, const float *b, int64_t n, int64_t nb) {
  if (nb == n) {
#pragma omp parallel for simd schedule(static) PAR(n)
    for (int64_t i = 0; i < n; i++) y[i] += x[i] * b[i];
    return;
  }
  int64_t rows = n / nb;
#pragma omp parallel for schedule(static) PAR(n)
  for (int64_t r = 0; r < rows; r++)
    for (int64_t j = 0; j < nb; j++) y[r * nb + j] += x[r * nb + j] * b[j];
}

// Columns per tile of the column sum: the double accumulators stay in L1.
#define COLSUM_TILE 256

void tl_cpu_colsum_acc(float *db, const float *x, const float *w, float s, int64_t n,
                       int64_t nb) {
  int64_t rows = n / nb;
  int64_t tiles = (nb + COLSUM_TILE - 1) / COLSUM_TILE;
  // Each tile of columns belongs to one thread and sums its rows in order, so the
  // result does not depend on the thread count.
#pragma omp parallel for schedule(static) PAR(n)
  for (int64_t t = 0; t < tiles; t++) {
    double acc[COLSUM_TILE] = {0};
    int64_t j0 = t * COLSUM_TILE;
    int64_t nj = nb - j0 < COLSUM_TILE ? nb - j0 : COLSUM_TILE;
    for (int64_t r = 0; r < rows; r++) {
      const float *xr = x + r * nb + j0;
      if (w) {
        const float *wr = w + r * nb + j0;
        for (int64_t j = 0; j < nj; j++) acc[j] += (double)xr[j] * wr[j];
      } else {
        for (int64_t j = 0; j < nj; j++) acc[j] += xr[j];
      }
    }
    for (int64_t j = 0; j < nj; j++) db[j0 + j] += s * (float)acc[j];
  }
}

// --- activations.
//
// exp and the normal cdf are computed inline (vexp, vnormal below) so the loops
// vectorise; tanhf is libm's, per element (tanh is off the hot path).

// e^x within 2 ulp for x in [-87.3, 88.7] (clamped outside, so e^-100 gives
// 1.2e-38 rather than 0): x = k ln2 + r with |r| <= ln2/2, e^r by its Taylor
// polynomial to r^7 (truncation 5e-9), times 2^k built in the exponent bits.
static inline float vexp(float x) {
  x = x < -87.3f ? -87.3f : x;
  x = x > 88.7f ? 88.7f : x;
  // k = round(x / ln2) by the 1.5 * 2^23 trick (needs no fast-math, which tl avoids).
  float k = (x * 1.44269504f + 12582912.0f) - 12582912.0f;
  // ln2 split into an exact head (9 bits, so k * head is exact) and a tail.
  float r = (x - k * 0.693359375f) + k * 2.12194440e-4f;
  float p = 1.0f / 5040;
  p = p * r + 1.0f / 720;
  p = p * r + 1.0f / 120;
  p = p * r + 1.0f / 24;
  p = p * r + 1.0f / 6;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  union { int32_t i; float f; } two_k = {.i = ((int32_t)k + 127) << 23};
  return p * two_k.f;
}

// Logistic sigmoid; saturates cleanly to 0 and 1 through vexp's clamp.
static inline float sigmoid(float v) { return 1.0f / (1.0f + vexp(-v)); }

// The standard normal cdf Phi(x) and density phi(x), vectorisable, for GELU.
// With u = |x|: Phi(-u) = e^(-u^2/2) erfcx(u/sqrt 2) / 2, and erfcx(u/sqrt 2) =
// t P(t) with t = 1 / (1 + u/4) in (0, 1]: P is smooth there (it tends to
// sqrt(2/pi)/4 as u grows), and the degree-10 polynomial below, fitted for tl by
// weighted least squares on Chebyshev nodes over u in [0, 16]
// (kernels/cpu/fit_normal_cdf.py prints the coefficients), is within 2e-9
// relative; evaluated in f32 the whole cdf is within ~4e-7 relative (about 6
// ulp, measured against double erfc). Phi(x) for x > 0 is 1 - Phi(-x), which
// does not cancel because Phi(-x) <= 1/2.
static inline float vnormal(float x, float *pdf) {
  float u = fabsf(x);
  float e = vexp(-0.5f * u * u);
  float t = 1.0f / (1.0f + 0.25f * u);
  // Horner, written out: a loop here would keep GCC from vectorising the caller.
  float p = -2.239199964e-02f;
  p = p * t + 1.672342411e-01f;
  p = p * t - 4.784218635e-01f;
  p = p * t + 6.398963221e-01f;
  p = p * t - 4.645485881e-01f;
  p = p * t + 3.631893755e-01f;
  p = p * t + 2.581149909e-02f;
  p = p * t + 1.868239129e-01f;
  p = p * t + 1.831280931e-01f;
  p = p * t + 1.998217744e-01f;
  p = p * t + 1.994572344e-01f;
  float q = 0.5f * e * t * p; // Phi(-u)
  *pdf = 0.3989422804f * e;
  return x < 0.0f ? q : 1.0f - q;
}

void tl_cpu_gelu(float *y, const float *x, int64_t n) {
#pragma omp parallel for simd schedule(static) PAR(n / 4)
  for (int64_t i = 0; i < n; i++) {
    float pdf;
    y[i] = x[i] * vnormal(x[i], &pdf);
  }
}

void tl_cpu_gelu_bwd(float *dx, const float *dy, const float *x, int64_t n) {
  // d/dx x Phi(x) = Phi(x) + x phi(x).
#pragma omp parallel for simd schedule(static) PAR(n / 4)
  for (int64_t i = 0; i < n; i++) {
    float pdf, cdf = vnormal(x[i], &pdf);
    dx[i] += dy[i] * (cdf + x[i] * pdf);
  }
}

void tl_cpu_tanh(float *y, const float *x, int64_t n) {
#pragma omp parallel for schedule(static) PAR(n / 8)
  for (int64_t i = 0; i < n; i++) y[i] = tanhf(x[i]);
}

void tl_cpu_tanh_bwd(float *dx, const float *dy, const float *y, int64_t n) {
#pragma omp parallel for simd schedule(static) PAR(n)
  for (int64_t i = 0; i < n; i++) dx[i] += dy[i] * (1.0f - y[i] * y[i]);
}

void tl_cpu_silu(float *y, const float *x, int64_t n) {
#pragma omp parallel for simd schedule(static) PAR(n / 4)
  for (int64_t i = 0; i < n; i++) y[i] = x[i] * sigmoid(x[i]);
}

void tl_cpu_silu_bwd(float *dx, const float *dy, const float *x, int64_t n) {
  // d/dx x s(x) = s (1 + x (1 - s)).
#pragma omp parallel for simd schedule(static) PAR(n / 4)
  for (int64_t i = 0; i < n; i++) {
    float s = sigmoid(x[i]);
    dx[i] += dy[i] * s * (1.0f + x[i] * (1.0f - s));
  }
}

void tl_cpu_swiglu(float *y, const float *gate, const float *up, int64_t n) {
#pragma omp parallel for simd schedule(static) PAR(n / 4)
  for (int64_t i = 0; i < n; i++) y[i] = gate[i] * sigmoid(gate[i]) * up[i];
}

void tl_cpu_swiglu_bwd(float *dgate, float *dup, const float *dy, const float *gate,
                       const float *up, int64_t n) {
  // Two loops rather than a NULL test per element, so each vectorises.
  if (dgate) {
#pragma omp parallel for simd schedule(static) PAR(n / 4)
    for (int64_t i = 0; i < n; i++) {
      float g = gate[i], s = sigmoid(g);
      dgate[i] += dy[i] * up[i] * s * (1.0f + g * (1.0f - s));
    }
  }
  if (dup) {
#pragma omp parallel for simd schedule(static) PAR(n / 4)
    for (int64_t i = 0; i < n; i++) dup[i] += dy[i] * gate[i] * sigmoid(gate[i]);
  }
}

// --- strided copies for views: padded to rank 4, outer three dims in parallel.

static void pad4(const int64_t *shape, const int64_t *ds, const int64_t *ss, int rank,
                 int64_t sh[4], int64_t d[4], int64_t s[4]) {
  for (int k = 0; k < 4; k++) {
    int src = k - (4 - rank);
    sh[k] = src >= 0 ? shape[src] : 1;
    d[k] = src >= 0 ? ds[src] : 0;
    s[k] = src >= 0 ? ss[src] : 0;
  }
}

static void strided(float *dst, const int64_t *dst_stride, const float *src,
                    const int64_t *src_stride, const int64_t *shape, int rank, bool add) {
  int64_t sh[4], d[4], s[4];
  pad4(shape, dst_stride, src_stride, rank, sh, d, s);
  int64_t n = sh[0] * sh[1] * sh[2] * sh[3];
#pragma omp parallel for collapse(3) schedule(static) PAR(n)
  for (int64_t i0 = 0; i0 < sh[0]; i0++)
    for (int64_t i1 = 0; i1 < sh[1]; i1++)
      for (int64_t i2 = 0; i2 < sh[2]; i2++) {
        float *dr = dst + i0 * d[0] + i1 * d[1] + i2 * d[2];
        const float *sr = src + i0 * s[0] + i1 * s[1] + i2 * s[2];
        if (add)
          for (int64_t i3 = 0; i3 < sh[3]; i3++) dr[i3 * d[3]] += sr[i3 * s[3]];
        else
          for (int64_t i3 = 0; i3 < sh[3]; i3++) dr[i3 * d[3]] = sr[i3 * s[3]];
      }
}

void tl_cpu_strided_copy(float *dst, const int64_t *dst_stride, const float *src,
                         const int64_t *src_stride, const int64_t *shape, int rank) {
  strided(dst, dst_stride, src, src_stride, shape, rank, false);
}

void tl_cpu_strided_add(float *dst, const int64_t *dst_stride, const float *src,
                        const int64_t *src_stride, const int64_t *shape, int rank) {
  strided(dst, dst_stride, src, src_stride, shape, rank, true);
}

// --- reductions

#define SUM_CHUNKS 64

double tl_cpu_sum(const float *x, int64_t n) {
  double part[SUM_CHUNKS];
  int64_t per = (n + SUM_CHUNKS - 1) / SUM_CHUNKS;
#pragma omp parallel for schedule(static) PAR(n)
  for (int c = 0; c < SUM_CHUNKS; c++) {
    int64_t lo = c * per, hi = lo + per < n ? lo + per : n;
    double s = 0;
    for (int64_t i = lo; i < hi; i++) s += x[i];
    part[c] = s;
  }
  double total = 0;
  for (int c = 0; c < SUM_CHUNKS; c++) total += part[c];
  return total;
}

void tl_cpu_add_scalar(float *y, float s, int64_t n) {
#pragma omp parallel for simd schedule(static) PAR(n)
  for (int64_t i = 0; i < n; i++) y[i] += s;
}

// --- dropout

void tl_cpu_dropout(float *y, const float *x, int64_t n, float p, uint64_t seed,
                    uint64_t offset, bool accumulate) {
  if (n <= 0) return;
  const float scale = 1.0f / (1.0f - p);
  const uint32_t key[2] = {(uint32_t)seed, (uint32_t)(seed >> 32)};
  // One Philox block gives the four counters 4b..4b+3; the first and last
  // blocks may be partly outside [offset, offset + n).
  uint64_t first = offset >> 2, last = (offset + (uint64_t)n - 1) >> 2;
  int64_t nblocks = (int64_t)(last - first + 1);
#pragma omp parallel for schedule(static) PAR(n / 4)
  for (int64_t b = 0; b < nblocks; b++) {
    uint64_t block = first + (uint64_t)b;
    const uint32_t ctr[4] = {(uint32_t)block, (uint32_t)(block >> 32), 0, 0};
    uint32_t bits[4];
    tl_philox4x32_10(ctr, key, bits);
    for (int l = 0; l < 4; l++) {
      uint64_t c = block * 4 + (uint64_t)l;
      if (c < offset || c - offset >= (uint64_t)n) continue;
      int64_t i = (int64_t)(c - offset);
      float v = tl_rng_bits_to_uniform(bits[l]) >= p ? x[i] * scale : 0.0f;
      if (accumulate) y[i] += v;
      else y[i] = v;
    }
  }
}
