// rows.cu: the ops that work row by row over the last dim: softmax and
// log-softmax, LayerNorm, RMSNorm, cross entropy, plus rotary embedding.
// One block per row; block-wide reductions in a fixed order (deterministic).
// Parameter gradients (dgamma, dbeta) go through the deterministic column
// reduction of common.cuh.
#include "kernels/cuda/common.cuh"

#define ROW_THREADS 256

// Grid of one block per row; rows beyond 2^31 - 1 are not expected.
static inline unsigned row_grid(int64_t N) { return (unsigned)N; }

// --- softmax and log-softmax ------------------------------------------------------

// Row max and sum(exp(x - max)) of one row, for every thread of the block.
template <typename T>
__device__ void row_max_sum(const T *x, int64_t C, float *red, float *mx, float *sum) {
  float m = -INFINITY;
  for (int64_t i = threadIdx.x; i < C; i += blockDim.x) m = fmaxf(m, ld(&x[i]));
  m = block_reduce(m, true, red);
  float s = 0.0f;
  if (m != -INFINITY)
    for (int64_t i = threadIdx.x; i < C; i += blockDim.x) s += expf(ld(&x[i]) - m);
  *mx = m;
  *sum = block_reduce(s, false, red);
}

template <typename T>
__global__ void softmax_kernel(T *y, const T *x, int64_t C, bool log_out) {
  __shared__ float red[32];
  x += (int64_t)blockIdx.x * C;
  y += (int64_t)blockIdx.x * C;
  float m, s;
  row_max_sum(x, C, red, &m, &s);
  float lse = m + logf(s);
  for (int64_t i = threadIdx.x; i < C; i += blockDim.x) {
    float v = ld(&x[i]);
    st(&y[i], log_out ? v - lse : expf(v - m) / s);
  }
}

// softmax:     dx += y * (dy - sum(dy * y))
// log-softmax: dx += dy - exp(y) * sum(dy)
template <typename T>
__global__ void softmax_bwd_kernel(T *dx, const T *dy, const T *y, int64_t C, bool log_out) {
  __shared__ float red[32];
  int64_t off = (int64_t)blockIdx.x * C;
  dx += off, dy += off, y += off;
  float s = 0.0f;
  for (int64_t i = threadIdx.x; i < C; i += blockDim.x)
    s += log_out ? ld(&dy[i]) : ld(&dy[i]) * ld(&y[i]);
  s = block_reduce(s, false, red);
  for (int64_t i = threadIdx.x; i < C; i += blockDim.x) {
    float yi = ld(&y[i]), g = ld(&dy[i]);
    float d = log_out ? g - expf(yi) * s : yi * (g - s);
    st(&dx[i], ld(&dx[i]) + d);
  }
}

static void softmax_run(tl_cuda_dtype dt, void *y, const void *x, int64_t N, int64_t C,
                        bool log_out) {
  if (N <= 0 || C <= 0) return;
  TL_DISPATCH(dt, T, softmax_kernel<T><<<row_grid(N), ROW_THREADS, 0, tl_stream()>>>(
                         (T *)y, (const T *)x, C, log_out));
  TL_CU_LAUNCH();
}

static void softmax_bwd_run(tl_cuda_dtype dt, void *dx, const void *dy, const void *y,
                            int64_t N, int64_t C, bool log_out) {
  if (N <= 0 || C <= 0) return;
  TL_DISPATCH(dt, T, softmax_bwd_kernel<T><<<row_grid(N), ROW_THREADS, 0, tl_stream()>>>(
                         (T *)dx, (const T *)dy, (const T *)y, C, log_out));
  TL_CU_LAUNCH();
}

extern "C" void tl_cuda_softmax(tl_cuda_dtype dt, void *y, const void *x, int64_t N,
                                int64_t C) {
  softmax_run(dt, y, x, N, C, false);
}
extern "C" void tl_cuda_softmax_bwd(tl_cuda_dtype dt, void *dx, const void *dy, const void *y,
                                    int64_t N, int64_t C) {
  softmax_bwd_run(dt, dx, dy, y, N, C, false);
}
extern "C" void tl_cuda_log_softmax(tl_cuda_dtype dt, void *y, const void *x, int64_t N,
                                    int64_t C) {
  softmax_run(dt, y, x, N, C, true);
}
extern "C" void tl_cuda_log_softmax_bwd(tl_cuda_dtype dt, void *dx, const void *dy,
                                        const void *y, int64_t N, int64_t C) {
  softmax_bwd_run(dt, dx, dy, y, N, C, true);
}

// --- LayerNorm and RMSNorm ----------------------------------------------------------
// rms = true is RMSNorm: no mean, no beta. Statistics by two passes over the row
// (mean, then the centred sum of squares) for accuracy.

template <typename T>
__global__ void norm_kernel(T *y, float *mean_out, float *rstd_out, const T *x,
                            const float *gamma, const float *beta, int64_t C, float eps,
                            bool rms) {
  __shared__ float red[32];
  int64_t n = blockIdx.x;
  x += n * C;
  y += n * C;
  float mean = 0.0f;
  if (!rms) {
    float s = 0.0f;
    for (int64_t i = threadIdx.x; i < C; i += blockDim.x) s += ld(&x[i]);
    mean = block_reduce(s, false, red) / (float)C;
  }
  float q = 0.0f;
  for (int64_t i = threadIdx.x; i < C; i += blockDim.x) {
    float d = ld(&x[i]) - mean;
    q += d * d;
  }
  float rstd = 1.0f / sqrtf(block_reduce(q, false, red) / (float)C + eps);
  for (int64_t i = threadIdx.x; i < C; i += blockDim.x) {
    float v = (ld(&x[i]) - mean) * rstd * gamma[i];
    st(&y[i], beta ? v + beta[i] : v);
  }
  if (threadIdx.x == 0) {
    if (mean_out) mean_out[n] = mean;
    rstd_out[n] = rstd;
  }
}

// dx += rstd * (g - mean(g) - xhat * mean(g * xhat)), g = dy * gamma; RMSNorm
// drops the mean(g) term and uses mean 0.
template <typename T>
__global__ void norm_bwd_kernel(T *dx, const T *dy, const T *x, const float *gamma,
                                const float *mean, const float *rstd, int64_t C, bool rms) {
  __shared__ float red[32];
  int64_t n = blockIdx.x;
  dx += n * C, dy += n * C, x += n * C;
  float mu = rms ? 0.0f : mean[n], rs = rstd[n];
  float sg = 0.0f, sgx = 0.0f;
  for (int64_t i = threadIdx.x; i < C; i += blockDim.x) {
    float g = ld(&dy[i]) * gamma[i];
    sg += g;
    sgx += g * (ld(&x[i]) - mu) * rs;
  }
  float mg = rms ? 0.0f : block_reduce(sg, false, red) / (float)C;
  float mgx = block_reduce(sgx, false, red) / (float)C;
  for (int64_t i = threadIdx.x; i < C; i += blockDim.x) {
    float g = ld(&dy[i]) * gamma[i], xhat = (ld(&x[i]) - mu) * rs;
    st(&dx[i], ld(&dx[i]) + rs * (g - mg - xhat * mgx));
  }
}

// Column-reduction terms: dy * xhat (dgamma) and dy (dbeta).
template <typename T> struct norm_dgamma_term {
  const T *dy, *x;
  const float *mean, *rstd;
  int64_t C;
  __device__ float operator()(int64_t r, int64_t j) const {
    float mu = mean ? mean[r] : 0.0f;
    return ld(&dy[r * C + j]) * (ld(&x[r * C + j]) - mu) * rstd[r];
  }
};
template <typename T> struct norm_dbeta_term {
  const T *dy;
  int64_t C;
  __device__ float operator()(int64_t r, int64_t j) const { return ld(&dy[r * C + j]); }
};

template <typename T>
static void norm_bwd_run(T *dx, float *dgamma, float *dbeta, const T *dy, const T *x,
                         const float *gamma, const float *mean, const float *rstd, int64_t N,
                         int64_t C, bool rms) {
  if (dx) {
    norm_bwd_kernel<T><<<row_grid(N), ROW_THREADS, 0, tl_stream()>>>(dx, dy, x, gamma, mean,
                                                                     rstd, C, rms);
    TL_CU_LAUNCH();
  }
  if (dgamma) colreduce_acc(dgamma, norm_dgamma_term<T>{dy, x, rms ? NULL : mean, rstd, C}, N,
                            C, 1.0f);
  if (dbeta) colreduce_acc(dbeta, norm_dbeta_term<T>{dy, C}, N, C, 1.0f);
}

extern "C" void tl_cuda_layernorm(tl_cuda_dtype dt, void *y, float *mean, float *rstd,
                                  const void *x, const float *gamma, const float *beta,
                                  int64_t N, int64_t C, float eps) {
  if (N <= 0 || C <= 0) return;
  TL_DISPATCH(dt, T, norm_kernel<T><<<row_grid(N), ROW_THREADS, 0, tl_stream()>>>(
                         (T *)y, mean, rstd, (const T *)x, gamma, beta, C, eps, false));
  TL_CU_LAUNCH();
}

extern "C" void tl_cuda_layernorm_bwd(tl_cuda_dtype dt, void *dx, float *dgamma, float *dbeta,
                                      const void *dy, const void *x, const float *gamma,
                                      const float *mean, const float *rstd, int64_t N,
                                      int64_t C) {
  if (N <= 0 || C <= 0) return;
  TL_DISPATCH(dt, T, norm_bwd_run((T *)dx, dgamma, dbeta, (const T *)dy, (const T *)x, gamma,
                                  mean, rstd, N, C, false));
}

extern "C" void tl_cuda_rmsnorm(tl_cuda_dtype dt, void *y, float *rstd, const void *x,
                                const float *gamma, int64_t N, int64_t C, float eps) {
  if (N <= 0 || C <= 0) return;
  TL_DISPATCH(dt, T, norm_kernel<T><<<row_grid(N), ROW_THREADS, 0, tl_stream()>>>(
                         (T *)y, NULL, rstd, (const T *)x, gamma, NULL, C, eps, true));
  TL_CU_LAUNCH();
}

extern "C" void tl_cuda_rmsnorm_bwd(tl_cuda_dtype dt, void *dx, float *dgamma, const void *dy,
                                    const void *x, const float *gamma, const float *rstd,
                                    int64_t N, int64_t C) {
  if (N <= 0 || C <= 0) return;
  TL_DISPATCH(dt, T, norm_bwd_run((T *)dx, dgamma, (float *)NULL, (const T *)dy, (const T *)x,
                                  gamma, (const float *)NULL, rstd, N, C, true));
}

// --- cross entropy ------------------------------------------------------------------

// Per row: lse, and into rows[2n], rows[2n+1] the loss term and 1 when counted.
template <typename T>
__global__ void ce_rows_kernel(float *lse_out, float *rows, const T *logits,
                               const int32_t *targets, int64_t V, int ignore_index,
                               int64_t *bad) {
  __shared__ float red[32];
  int64_t n = blockIdx.x;
  const T *x = logits + n * V;
  float m, s;
  row_max_sum(x, V, red, &m, &s);
  if (threadIdx.x != 0) return;
  float lse = m + logf(s);
  lse_out[n] = lse;
  int64_t t = targets[n];
  bool counted = t != ignore_index && t >= 0 && t < V;
  if (t != ignore_index && !counted) note_bad_index(bad, t);
  rows[2 * n] = counted ? lse - ld(&x[t]) : 0.0f;
  rows[2 * n + 1] = counted ? 1.0f : 0.0f;
}

// One block sums the rows in a fixed order: loss = sum / count (0 when none).
__global__ void ce_mean_kernel(float *loss, float *count, const float *rows, int64_t N) {
  __shared__ float red[32];
  float s = 0.0f, c = 0.0f;
  for (int64_t n = threadIdx.x; n < N; n += blockDim.x) {
    s += rows[2 * n];
    c += rows[2 * n + 1];
  }
  s = block_reduce(s, false, red);
  c = block_reduce(c, false, red);
  if (threadIdx.x == 0) {
    loss[0] = c > 0.0f ? s / c : 0.0f;
    count[0] = c;
  }
}

extern "C" void tl_cuda_cross_entropy(tl_cuda_dtype dt, float *loss, float *count, float *lse,
                                      const void *logits, const int32_t *targets, int64_t N,
                                      int64_t V, int ignore_index) {
  if (N <= 0) {
    tl_cuda_memset0(loss, sizeof(float));
    tl_cuda_memset0(count, sizeof(float));
    return;
  }
  float *rows = (float *)tl_cuda_scratch((size_t)N * 2 * sizeof(float));
  int64_t *bad = tl_cuda_bad_index_slot();
  TL_DISPATCH(dt, T, ce_rows_kernel<T><<<row_grid(N), ROW_THREADS, 0, tl_stream()>>>(
                         lse, rows, (const T *)logits, targets, V, ignore_index, bad));
  TL_CU_LAUNCH();
  ce_mean_kernel<<<1, 1024, 0, tl_stream()>>>(loss, count, rows, N);
  TL_CU_LAUNCH();
}

template <typename T>
__global__ void ce_bwd_kernel(T *dlogits, const float *dloss, const float *count,
                              const float *lse, const T *logits, const int32_t *targets,
                              int64_t V, int ignore_index) {
  int64_t n = blockIdx.x;
  int64_t t = targets[n];
  if (t == ignore_index || t < 0 || t >= V || count[0] <= 0.0f) return;
  float scale = dloss[0] / count[0], l = lse[n];
  const T *x = logits + n * V;
  T *dx = dlogits + n * V;
  for (int64_t i = threadIdx.x; i < V; i += blockDim.x) {
    float p = expf(ld(&x[i]) - l) - (i == t ? 1.0f : 0.0f);
    st(&dx[i], ld(&dx[i]) + scale * p);
  }
}

extern "C" void tl_cuda_cross_entropy_bwd(tl_cuda_dtype dt, void *dlogits, const float *dloss,
                                          const float *count, const float *lse,
                                          const void *logits, const int32_t *targets, int64_t N,
                                          int64_t V, int ignore_index) {
  if (N <= 0 || V <= 0) return;
  TL_DISPATCH(dt, T, ce_bwd_kernel<T><<<row_grid(N), ROW_THREADS, 0, tl_stream()>>>(
                         (T *)dlogits, dloss, count, lse, (const T *)logits, targets, V,
                         ignore_index));
  TL_CU_LAUNCH();
}

// --- rotary embedding -----------------------------------------------------------------
// One thread per pair (i, i + D/2) of one token; sign = -1 applies the inverse
// rotation (backward), which also accumulates. The angle is computed in f32 as
// transformers (and kernels/cpu/rope.c) do: inv_freq = 1 / theta^(2i/D) in f32,
// angle = f32(pos) * inv_freq, so far positions round the same way on both
// devices. pow, cos and sin go through double and round once, which matches a
// correctly rounded libm (glibc's powf/cosf/sinf are, to within the last bit).

template <typename T>
__global__ void rope_kernel(T *y, const T *x, int64_t BH, int64_t T_, int64_t D, int64_t pos0,
                            float theta, float sign, bool acc) {
  int64_t half = D / 2, total = BH * T_ * half;
  for (int64_t k = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; k < total;
       k += (int64_t)gridDim.x * blockDim.x) {
    int64_t i = k % half, row = k / half, t = row % T_;
    float expo = (float)(2 * i) / (float)D;
    float inv_freq = 1.0f / (float)pow((double)theta, (double)expo);
    float angle = (float)(pos0 + t) * inv_freq;
    float c = (float)cos((double)angle), s = sign * (float)sin((double)angle);
    const T *xr = x + row * D;
    T *yr = y + row * D;
    float a = ld(&xr[i]), b = ld(&xr[i + half]);
    float ya = a * c - b * s, yb = b * c + a * s;
    if (acc) {
      ya += ld(&yr[i]);
      yb += ld(&yr[i + half]);
    }
    st(&yr[i], ya);
    st(&yr[i + half], yb);
  }
}

static void rope_run(tl_cuda_dtype dt, void *y, const void *x, int64_t BH, int64_t T,
                     int64_t D, int64_t pos0, float theta, float sign, bool acc) {
  int64_t total = BH * T * (D / 2);
  if (total <= 0) return;
  TL_DISPATCH(dt, Ty, rope_kernel<Ty><<<tl_blocks(total, 256), 256, 0, tl_stream()>>>(
                          (Ty *)y, (const Ty *)x, BH, T, D, pos0, theta, sign, acc));
  TL_CU_LAUNCH();
}

extern "C" void tl_cuda_rope(tl_cuda_dtype dt, void *y, const void *x, int64_t BH, int64_t T,
                             int64_t D, int64_t pos0, float theta) {
  rope_run(dt, y, x, BH, T, D, pos0, theta, 1.0f, false);
}

extern "C" void tl_cuda_rope_bwd(tl_cuda_dtype dt, void *dx, const void *dy, int64_t BH,
                                 int64_t T, int64_t D, int64_t pos0, float theta) {
  rope_run(dt, dx, dy, BH, T, D, pos0, theta, -1.0f, true);
}
