// common.cuh: what every .cu file of the backend shares: the checked-call
// macros, the process stream, scratch memory, f32/bf16 load/store, reductions.
#pragma once
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <math.h>
#include <stdint.h>

#include "kernels/cuda/tl_cuda.h"

typedef __nv_bfloat16 bf16;

// Fatal: prints "file:line: call: reason" and aborts (a kernel wrapper cannot
// recover from a failed launch; the device state is unknown).
[[noreturn]] void tl_cuda_fail(const char *call, const char *file, int line, const char *why);
#define TL_CU(call)                                                                \
  do {                                                                             \
    cudaError_t e_ = (call);                                                       \
    if (e_ != cudaSuccess) tl_cuda_fail(#call, __FILE__, __LINE__, cudaGetErrorString(e_)); \
  } while (0)
// After every launch: catches bad configurations at once (not async faults).
#define TL_CU_LAUNCH() TL_CU(cudaGetLastError())

// The process stream (initialises device 0 on first use).
cudaStream_t tl_stream(void);
// Device scratch of at least `bytes`, valid until the next call (stream order
// keeps earlier users safe: growing waits for the stream first).
void *tl_cuda_scratch(size_t bytes);
// Device flag for out-of-range ids (embedding, cross entropy targets).
int64_t *tl_cuda_bad_index_slot(void);

// Remembers the first bad id seen (any one of them, if several race).
__device__ __forceinline__ void note_bad_index(int64_t *slot, int64_t id) {
  atomicCAS((unsigned long long *)slot, (unsigned long long)-1LL, (unsigned long long)id);
}

// --- Philox4x32-10 -------------------------------------------------------------
// The exact generator and mapping of core/rng.h, as a device function: key from
// the seed's halves, counter block = counter >> 2, lane = counter & 3, top 24
// bits to a float. Any change there must be mirrored here (the test compares
// the two bit for bit).

// 32x32 -> high 32 bits: the intrinsic on the device, a 64-bit product on the host.
__host__ __device__ __forceinline__ uint32_t mulhi32(uint32_t a, uint32_t b) {
#ifdef __CUDA_ARCH__
  return __umulhi(a, b);
#else
  return (uint32_t)(((uint64_t)a * b) >> 32);
#endif
}

// __host__ too, so a CPU-only machine can test this copy against core/rng.h.
__host__ __device__ __forceinline__ float philox_uniform(uint64_t seed, uint64_t counter) {
  uint64_t block = counter >> 2;
  uint32_t c0 = (uint32_t)block, c1 = (uint32_t)(block >> 32), c2 = 0, c3 = 0;
  uint32_t k0 = (uint32_t)seed, k1 = (uint32_t)(seed >> 32);
  for (int r = 0; r < 10; r++) {
    uint32_t hi0 = mulhi32(0xD2511F53u, c0), lo0 = 0xD2511F53u * c0;
    uint32_t hi1 = mulhi32(0xCD9E8D57u, c2), lo1 = 0xCD9E8D57u * c2;
    uint32_t n0 = hi1 ^ c1 ^ k0, n2 = hi0 ^ c3 ^ k1;
    c1 = lo1;
    c3 = lo0;
    c0 = n0;
    c2 = n2;
    k0 += 0x9E3779B9u;
    k1 += 0xBB67AE85u;
  }
  uint32_t lane = (uint32_t)(counter & 3);
  uint32_t bits = lane == 0 ? c0 : lane == 1 ? c1 : lane == 2 ? c2 : c3;
  return (float)(bits >> 8) * (1.0f / 16777216.0f);
}

// Blocks for an n-element grid-stride loop: enough to fill the GPU, never 0.
static inline unsigned tl_blocks(int64_t n, int threads) {
  int64_t b = (n + threads - 1) / threads;
  if (b < 1) b = 1;
  if (b > 65535LL * 8) b = 65535LL * 8;
  return (unsigned)b;
}

// f32 <-> storage type; bf16 stores round to nearest even.
__device__ __forceinline__ float ld(const float *p) { return *p; }
__device__ __forceinline__ float ld(const bf16 *p) { return __bfloat162float(*p); }
__device__ __forceinline__ void st(float *p, float v) { *p = v; }
__device__ __forceinline__ void st(bf16 *p, float v) { *p = __float2bfloat16_rn(v); }

// Runs the statement with T = float or bf16 by the dtype.
#define TL_DISPATCH(dt, T, ...)                                                    \
  do {                                                                             \
    if ((dt) == TL_CUDA_F32) {                                                     \
      typedef float T;                                                             \
      __VA_ARGS__;                                                                 \
    } else {                                                                       \
      typedef bf16 T;                                                              \
      __VA_ARGS__;                                                                 \
    }                                                                              \
  } while (0)

__device__ __forceinline__ float warp_sum(float v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
__device__ __forceinline__ float warp_max(float v) {
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

// Block-wide sum or max; every thread gets the result. blockDim.x a multiple of
// 32, at most 1024. Order is fixed by the block shape, so results are
// deterministic. shared: 32 floats of scratch; the function syncs before reuse.
__device__ __forceinline__ float block_reduce(float v, bool is_max, float *shared) {
  int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = blockDim.x >> 5;
  v = is_max ? warp_max(v) : warp_sum(v);
  __syncthreads(); // shared may still be read by a previous call
  if (lane == 0) shared[warp] = v;
  __syncthreads();
  float r = lane < nwarps ? shared[lane] : (is_max ? -INFINITY : 0.0f);
  return is_max ? warp_max(r) : warp_sum(r);
}

// --- deterministic column reduction -----------------------------------------
// out[j] += s * sum over rows r < N of f(r, j), for an [N, C] matrix given as a
// functor. Stage 1: rows are cut into chunks of TL_COLRED_ROWS; a 32 x 8 block
// sums 32 columns of one chunk into partial[chunk, j]. Stage 2: one thread per
// column adds the chunk partials in chunk order. The partition depends on N
// only, so the result is the same bits on every run and every GPU.
#define TL_COLRED_ROWS 64

template <typename F>
__global__ void colred_partial_kernel(float *partial, F f, int64_t N, int64_t C) {
  __shared__ float acc[8][33];
  int64_t j = (int64_t)blockIdx.x * 32 + threadIdx.x;
  int64_t r0 = (int64_t)blockIdx.y * TL_COLRED_ROWS;
  int64_t r1 = r0 + TL_COLRED_ROWS < N ? r0 + TL_COLRED_ROWS : N;
  float s = 0.0f;
  if (j < C)
    for (int64_t r = r0 + threadIdx.y; r < r1; r += 8) s += f(r, j);
  acc[threadIdx.y][threadIdx.x] = s;
  __syncthreads();
  if (threadIdx.y == 0 && j < C) {
    float t = 0.0f;
    for (int y = 0; y < 8; y++) t += acc[y][threadIdx.x];
    partial[(int64_t)blockIdx.y * C + j] = t;
  }
}

template <typename T>
__global__ void colred_final_kernel(T *out, const float *partial, int64_t chunks, int64_t C,
                                    float s) {
  int64_t j = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (j >= C) return;
  float t = 0.0f;
  for (int64_t k = 0; k < chunks; k++) t += partial[k * C + j];
  st(&out[j], ld(&out[j]) + s * t);
}

template <typename T, typename F>
void colreduce_acc(T *out, F f, int64_t N, int64_t C, float s) {
  if (N <= 0 || C <= 0) return;
  int64_t chunks = (N + TL_COLRED_ROWS - 1) / TL_COLRED_ROWS;
  if (chunks > 65535) tl_cuda_fail("colreduce_acc", __FILE__, __LINE__, "more than 4M rows");
  float *partial = (float *)tl_cuda_scratch((size_t)(chunks * C) * sizeof(float));
  dim3 grid((unsigned)((C + 31) / 32), (unsigned)chunks), block(32, 8);
  colred_partial_kernel<<<grid, block, 0, tl_stream()>>>(partial, f, N, C);
  TL_CU_LAUNCH();
  colred_final_kernel<<<(unsigned)((C + 255) / 256), 256, 0, tl_stream()>>>(out, partial,
                                                                            chunks, C, s);
  TL_CU_LAUNCH();
}
