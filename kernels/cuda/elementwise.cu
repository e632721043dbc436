// elementwise.cu: binary ops with row broadcast and their backward pieces,
// activations, type conversion, Philox dropout, AdamW, sums.
// Everything here is memory bound: one grid-stride loop per op, f32 math.
#include "kernels/cuda/common.cuh"

#define THREADS 256
#define LAUNCH(kernel, n) kernel<<<tl_blocks(n, THREADS), THREADS, 0, tl_stream()>>>
#define FOR_EACH(i, n)                                                             \
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < (n);        \
       i += (int64_t)gridDim.x * blockDim.x)

// --- binary ops and their backward pieces -----------------------------------

template <typename T>
__global__ void binary_kernel(tl_cuda_binop op, const T *a, const T *b, T *y, int64_t n,
                              int64_t nb) {
  FOR_EACH(i, n) {
    float x = ld(&a[i]), z = ld(&b[nb == n ? i : i % nb]);
    st(&y[i], op == TL_CUDA_ADD ? x + z : op == TL_CUDA_SUB ? x - z : x * z);
  }
}

extern "C" void tl_cuda_binary(tl_cuda_dtype dt, tl_cuda_binop op, const void *a,
                               const void *b, void *y, int64_t n, int64_t nb) {
  if (n <= 0) return;
  TL_DISPATCH(dt, T, LAUNCH(binary_kernel<T>, n)(op, (const T *)a, (const T *)b, (T *)y, n, nb));
  TL_CU_LAUNCH();
}

// y = s * x + (acc ? y : 0): scale and axpy in one kernel.
template <typename T>
__global__ void scale_kernel(T *y, const T *x, float s, int64_t n, bool acc) {
  FOR_EACH(i, n) st(&y[i], s * ld(&x[i]) + (acc ? ld(&y[i]) : 0.0f));
}

extern "C" void tl_cuda_scale(tl_cuda_dtype dt, void *y, const void *x, float s, int64_t n) {
  if (n <= 0) return;
  TL_DISPATCH(dt, T, LAUNCH(scale_kernel<T>, n)((T *)y, (const T *)x, s, n, false));
  TL_CU_LAUNCH();
}

extern "C" void tl_cuda_axpy(tl_cuda_dtype dt, void *y, const void *x, float s, int64_t n) {
  if (n <= 0) return;
  TL_DISPATCH(dt, T, LAUNCH(scale_kernel<T>, n)((T *)y, (const T *)x, s, n, true));
  TL_CU_LAUNCH();
}

template <typename T>
__global__ void mul_acc_kernel(T *y, const T *x, const T *b, int64_t n, int64_t nb) {
  FOR_EACH(i, n) st(&y[i], ld(&y[i]) + ld(&x[i]) * ld(&b[nb == n ? i : i % nb]));
}

extern "C" void tl_cuda_mul_acc(tl_cuda_dtype dt, void *y, const void *x, const void *b,
                                int64_t n, int64_t nb) {
  if (n <= 0) return;
  TL_DISPATCH(dt, T, LAUNCH(mul_acc_kernel<T>, n)((T *)y, (const T *)x, (const T *)b, n, nb));
  TL_CU_LAUNCH();
}

// x[r, j] * (w ? w[r, j] : 1) for the column reduction.
template <typename T> struct colsum_term {
  const T *x, *w;
  int64_t C;
  __device__ float operator()(int64_t r, int64_t j) const {
    float v = ld(&x[r * C + j]);
    return w ? v * ld(&w[r * C + j]) : v;
  }
};

extern "C" void tl_cuda_colsum_acc(tl_cuda_dtype dt, void *db, const void *x, const void *w,
                                   float s, int64_t n, int64_t nb) {
  if (n <= 0 || nb <= 0) return;
  TL_DISPATCH(dt, T, colreduce_acc((T *)db, colsum_term<T>{(const T *)x, (const T *)w, nb},
                                   n / nb, nb, s));
}

template <typename T>
__global__ void add_scalar_kernel(T *y, const float *s, float mul, int64_t n) {
  float v = mul * (s ? s[0] : 1.0f);
  FOR_EACH(i, n) st(&y[i], ld(&y[i]) + v);
}

extern "C" void tl_cuda_add_scalar(tl_cuda_dtype dt, void *y, const float *s, float mul,
                                   int64_t n) {
  if (n <= 0) return;
  TL_DISPATCH(dt, T, LAUNCH(add_scalar_kernel<T>, n)((T *)y, s, mul, n));
  TL_CU_LAUNCH();
}

// Shape and strides by value; the index is decomposed over the shape (row-major).
struct strided4 {
  int64_t shape[4], dst[4], src[4];
  int rank;
};

template <typename T>
__global__ void strided_copy_kernel(T *dst, const T *src, strided4 g, int64_t n, bool acc) {
  FOR_EACH(i, n) {
    int64_t rem = i, od = 0, os = 0;
    for (int d = g.rank - 1; d >= 0; d--) {
      int64_t k = rem % g.shape[d];
      rem /= g.shape[d];
      od += k * g.dst[d];
      os += k * g.src[d];
    }
    float v = ld(&src[os]);
    st(&dst[od], acc ? ld(&dst[od]) + v : v);
  }
}

extern "C" void tl_cuda_strided_copy(tl_cuda_dtype dt, void *dst, const int64_t *dst_stride,
                                     const void *src, const int64_t *src_stride,
                                     const int64_t *shape, int rank, bool accumulate) {
  if (rank < 0 || rank > 4) tl_cuda_fail("tl_cuda_strided_copy", __FILE__, __LINE__, "rank > 4");
  strided4 g;
  int64_t n = 1;
  g.rank = rank;
  for (int d = 0; d < rank; d++) {
    g.shape[d] = shape[d], g.dst[d] = dst_stride[d], g.src[d] = src_stride[d];
    n *= shape[d];
  }
  if (n <= 0) return;
  TL_DISPATCH(dt, T, LAUNCH(strided_copy_kernel<T>, n)((T *)dst, (const T *)src, g, n,
                                                      accumulate));
  TL_CU_LAUNCH();
}

template <typename TD, typename TS>
__global__ void convert_kernel(TD *dst, const TS *src, int64_t n) {
  FOR_EACH(i, n) st(&dst[i], ld(&src[i]));
}

extern "C" void tl_cuda_convert(tl_cuda_dtype dst_dt, void *dst, tl_cuda_dtype src_dt,
                                const void *src, int64_t n) {
  if (n <= 0) return;
  TL_DISPATCH(dst_dt, TD, TL_DISPATCH(src_dt, TS,
      LAUNCH((convert_kernel<TD, TS>), n)((TD *)dst, (const TS *)src, n)));
  TL_CU_LAUNCH();
}

// --- activations --------------------------------------------------------------
// One kernel per direction; the op is a small enum so four activations share it.

enum act { ACT_GELU, ACT_TANH, ACT_SILU };

// Phi(x) = erfc(-x / sqrt 2) / 2: erfc, unlike 1 + erf, does not cancel for x < 0.
__device__ __forceinline__ float normal_cdf(float x) {
  return 0.5f * erfcf(-x * 0.70710678118654752f);
}

__device__ __forceinline__ float act_fwd(act a, float x) {
  if (a == ACT_GELU) return x * normal_cdf(x);
  if (a == ACT_TANH) return tanhf(x);
  return x / (1.0f + expf(-x));
}

// d act / dx at x (for tanh, `x` is the saved output y: 1 - y^2).
__device__ __forceinline__ float act_grad(act a, float x) {
  if (a == ACT_GELU) {
    float cdf = normal_cdf(x);
    float pdf = 0.39894228040143268f * expf(-0.5f * x * x);
    return cdf + x * pdf;
  }
  if (a == ACT_TANH) return 1.0f - x * x;
  float sg = 1.0f / (1.0f + expf(-x));
  return sg * (1.0f + x * (1.0f - sg));
}

template <typename T> __global__ void act_kernel(act a, T *y, const T *x, int64_t n) {
  FOR_EACH(i, n) st(&y[i], act_fwd(a, ld(&x[i])));
}

template <typename T>
__global__ void act_bwd_kernel(act a, T *dx, const T *dy, const T *x, int64_t n) {
  FOR_EACH(i, n) st(&dx[i], ld(&dx[i]) + ld(&dy[i]) * act_grad(a, ld(&x[i])));
}

static void run_act(act a, tl_cuda_dtype dt, void *y, const void *x, int64_t n) {
  if (n <= 0) return;
  TL_DISPATCH(dt, T, LAUNCH(act_kernel<T>, n)(a, (T *)y, (const T *)x, n));
  TL_CU_LAUNCH();
}

static void run_act_bwd(act a, tl_cuda_dtype dt, void *dx, const void *dy, const void *x,
                        int64_t n) {
  if (n <= 0) return;
  TL_DISPATCH(dt, T, LAUNCH(act_bwd_kernel<T>, n)(a, (T *)dx, (const T *)dy, (const T *)x, n));
  TL_CU_LAUNCH();
}

extern "C" void tl_cuda_gelu(tl_cuda_dtype dt, void *y, const void *x, int64_t n) {
  run_act(ACT_GELU, dt, y, x, n);
}
extern "C" void tl_cuda_gelu_bwd(tl_cuda_dtype dt, void *dx, const void *dy, const void *x,
                                 int64_t n) {
  run_act_bwd(ACT_GELU, dt, dx, dy, x, n);
}
extern "C" void tl_cuda_tanh(tl_cuda_dtype dt, void *y, const void *x, int64_t n) {
  run_act(ACT_TANH, dt, y, x, n);
}
extern "C" void tl_cuda_tanh_bwd(tl_cuda_dtype dt, void *dx, const void *dy, const void *y,
                                 int64_t n) {
  run_act_bwd(ACT_TANH, dt, dx, dy, y, n);
}
extern "C" void tl_cuda_silu(tl_cuda_dtype dt, void *y, const void *x, int64_t n) {
  run_act(ACT_SILU, dt, y, x, n);
}
extern "C" void tl_cuda_silu_bwd(tl_cuda_dtype dt, void *dx, const void *dy, const void *x,
                                 int64_t n) {
  run_act_bwd(ACT_SILU, dt, dx, dy, x, n);
}

template <typename T>
__global__ void swiglu_kernel(T *y, const T *gate, const T *up, int64_t n) {
  FOR_EACH(i, n) st(&y[i], act_fwd(ACT_SILU, ld(&gate[i])) * ld(&up[i]));
}

template <typename T>
__global__ void swiglu_bwd_kernel(T *dgate, T *dup, const T *dy, const T *gate, const T *up,
                                  int64_t n) {
  FOR_EACH(i, n) {
    float g = ld(&gate[i]), d = ld(&dy[i]);
    if (dgate) st(&dgate[i], ld(&dgate[i]) + d * ld(&up[i]) * act_grad(ACT_SILU, g));
    if (dup) st(&dup[i], ld(&dup[i]) + d * act_fwd(ACT_SILU, g));
  }
}

extern "C" void tl_cuda_swiglu(tl_cuda_dtype dt, void *y, const void *gate, const void *up,
                               int64_t n) {
  if (n <= 0) return;
  TL_DISPATCH(dt, T, LAUNCH(swiglu_kernel<T>, n)((T *)y, (const T *)gate, (const T *)up, n));
  TL_CU_LAUNCH();
}

extern "C" void tl_cuda_swiglu_bwd(tl_cuda_dtype dt, void *dgate, void *dup, const void *dy,
                                   const void *gate, const void *up, int64_t n) {
  if (n <= 0 || (!dgate && !dup)) return;
  TL_DISPATCH(dt, T, LAUNCH(swiglu_bwd_kernel<T>, n)((T *)dgate, (T *)dup, (const T *)dy,
                                                     (const T *)gate, (const T *)up, n));
  TL_CU_LAUNCH();
}

// --- Philox and dropout -------------------------------------------------------
// The generator itself is philox_uniform in common.cuh (shared with attention).

extern "C" float tl_cuda_philox_uniform_host(uint64_t seed, uint64_t counter) {
  return philox_uniform(seed, counter);
}

__global__ void rng_uniform_kernel(float *out, int64_t n, uint64_t seed, uint64_t offset) {
  FOR_EACH(i, n) out[i] = philox_uniform(seed, offset + (uint64_t)i);
}

extern "C" void tl_cuda_rng_uniform(float *out, int64_t n, uint64_t seed, uint64_t offset) {
  if (n <= 0) return;
  LAUNCH(rng_uniform_kernel, n)(out, n, seed, offset);
  TL_CU_LAUNCH();
}

// Forward (acc = false): y = mask * x / (1 - p). Backward (acc = true): y += ...
template <typename T>
__global__ void dropout_kernel(T *y, const T *x, int64_t n, float p, uint64_t seed,
                               uint64_t offset, bool acc) {
  float keep_scale = 1.0f / (1.0f - p);
  FOR_EACH(i, n) {
    bool keep = philox_uniform(seed, offset + (uint64_t)i) >= p;
    float v = keep ? ld(&x[i]) * keep_scale : 0.0f;
    st(&y[i], acc ? ld(&y[i]) + v : v);
  }
}

extern "C" void tl_cuda_dropout(tl_cuda_dtype dt, void *y, const void *x, int64_t n, float p,
                                uint64_t seed, uint64_t offset) {
  if (n <= 0) return;
  TL_DISPATCH(dt, T, LAUNCH(dropout_kernel<T>, n)((T *)y, (const T *)x, n, p, seed, offset,
                                                  false));
  TL_CU_LAUNCH();
}

extern "C" void tl_cuda_dropout_bwd(tl_cuda_dtype dt, void *dx, const void *dy, int64_t n,
                                    float p, uint64_t seed, uint64_t offset) {
  if (n <= 0) return;
  TL_DISPATCH(dt, T, LAUNCH(dropout_kernel<T>, n)((T *)dx, (const T *)dy, n, p, seed, offset,
                                                  true));
  TL_CU_LAUNCH();
}

// --- AdamW and the gradient norm ------------------------------------------------

// Flags of the segment holding element i: the last k with seg_start[k] <= i.
__device__ __forceinline__ uint8_t segment_flags(int64_t i, const int64_t *seg_start,
                                                 const uint8_t *seg_flags, int nseg) {
  if (nseg == 0) return 0;
  int lo = 0, hi = nseg - 1;
  while (lo < hi) {
    int mid = (lo + hi + 1) / 2;
    if (seg_start[mid] <= i) lo = mid;
    else hi = mid - 1;
  }
  return seg_flags[lo];
}

__global__ void adamw_kernel(float *w, const float *grad, float *m, float *v, int64_t n,
                             tl_cuda_adamw_hp hp, float bc1, float bc2, const int64_t *seg_start,
                             const uint8_t *seg_flags, int nseg, bf16 *w_bf16) {
  FOR_EACH(i, n) {
    uint8_t flags = segment_flags(i, seg_start, seg_flags, nseg);
    float wi = w[i];
    if (!(flags & TL_CUDA_SEG_FROZEN)) {
      // Moments, bias correction, then the decoupled decay on the old weight.
      float g = grad[i] * hp.grad_scale;
      float mi = hp.beta1 * m[i] + (1.0f - hp.beta1) * g;
      float vi = hp.beta2 * v[i] + (1.0f - hp.beta2) * g * g;
      m[i] = mi;
      v[i] = vi;
      float wd = (flags & TL_CUDA_SEG_NO_DECAY) ? 0.0f : hp.weight_decay;
      float update = (mi / bc1) / (sqrtf(vi / bc2) + hp.eps);
      wi -= hp.lr * (wd * wi + update);
      w[i] = wi;
    }
    if (w_bf16) w_bf16[i] = __float2bfloat16_rn(wi);
  }
}

extern "C" void tl_cuda_adamw(float *w, const float *grad, float *m, float *v, int64_t n,
                              const tl_cuda_adamw_hp *hp, const int64_t *seg_start,
                              const uint8_t *seg_flags, int nseg, uint16_t *w_bf16) {
  if (n <= 0) return;
  // Bias corrections once on the host, in double: 1 - beta^t.
  float bc1 = (float)(1.0 - pow((double)hp->beta1, (double)hp->step));
  float bc2 = (float)(1.0 - pow((double)hp->beta2, (double)hp->step));
  if (hp->no_bias_correction) bc1 = bc2 = 1.0f;
  LAUNCH(adamw_kernel, n)(w, grad, m, v, n, *hp, bc1, bc2, seg_start, seg_flags, nseg,
                          (bf16 *)w_bf16);
  TL_CU_LAUNCH();
}

// Fixed grid (not sized by the GPU) so the partition, and so the sum, is fixed.
#define SUM_BLOCKS 256

template <typename T>
__global__ void sum_partial_kernel(float *partial, const T *x, int64_t n, bool square) {
  __shared__ float red[32];
  float s = 0.0f;
  FOR_EACH(i, n) {
    float v = ld(&x[i]);
    s += square ? v * v : v;
  }
  s = block_reduce(s, false, red);
  if (threadIdx.x == 0) partial[blockIdx.x] = s;
}

__global__ void sum_final_kernel(float *out, const float *partial, float scale) {
  __shared__ float red[32];
  float s = block_reduce(partial[threadIdx.x], false, red);
  if (threadIdx.x == 0) out[0] = scale * s;
}

static void sum_run(tl_cuda_dtype dt, float *out, const void *x, int64_t n, float scale,
                    bool square) {
  float *partial = (float *)tl_cuda_scratch(SUM_BLOCKS * sizeof(float));
  TL_DISPATCH(dt, T, sum_partial_kernel<T><<<SUM_BLOCKS, THREADS, 0, tl_stream()>>>(
                         partial, (const T *)x, n, square));
  TL_CU_LAUNCH();
  sum_final_kernel<<<1, SUM_BLOCKS, 0, tl_stream()>>>(out, partial, scale);
  TL_CU_LAUNCH();
}

extern "C" void tl_cuda_sumsq(float *out, const float *x, int64_t n) {
  sum_run(TL_CUDA_F32, out, x, n, 1.0f, true);
}

extern "C" void tl_cuda_sum(tl_cuda_dtype dt, float *out, const void *x, int64_t n,
                            float scale) {
  sum_run(dt, out, x, n, scale, false);
}
