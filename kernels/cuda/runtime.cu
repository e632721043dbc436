// runtime.cu: device selection, the process stream, device memory, copies,
// timing, and GEMM through cuBLAS. Every CUDA and cuBLAS call is checked.
#include <cublas_v2.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/cuda/common.cuh"

// One device, one stream, one cuBLAS handle per process (DESIGN.md).
static struct {
  int ordinal; // -1 until tl_cuda_init succeeds
  cudaStream_t stream;
  cublasHandle_t blas;
  cudaEvent_t t0, t1;
  void *scratch;
  size_t scratch_bytes;
  int64_t *bad_index; // device slot, -1 when clean
  char error[512];
} g = {-1, 0, 0, 0, 0, 0, 0, 0, {0}};

void tl_cuda_fail(const char *call, const char *file, int line, const char *why) {
  fprintf(stderr, "tl: %s:%d: %s: %s\n", file, line, call, why);
  abort();
}

#define TL_CUBLAS(call)                                                            \
  do {                                                                             \
    cublasStatus_t s_ = (call);                                                    \
    if (s_ != CUBLAS_STATUS_SUCCESS)                                               \
      tl_cuda_fail(#call, __FILE__, __LINE__, cublasGetStatusString(s_));          \
  } while (0)

// Setup failures: remember "file:line: call: reason" and return -1.
static int setup_error(const char *call, int line, const char *why) {
  snprintf(g.error, sizeof g.error, "%s:%d: %s: %s", __FILE__, line, call, why);
  return -1;
}
#define TL_CU_SETUP(call)                                                          \
  do {                                                                             \
    cudaError_t e_ = (call);                                                       \
    if (e_ != cudaSuccess) return setup_error(#call, __LINE__, cudaGetErrorString(e_)); \
  } while (0)

extern "C" int tl_cuda_device_count(void) {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError(); // clear the sticky "no driver" error for later calls
    return 0;
  }
  return n;
}

extern "C" const char *tl_cuda_error(void) { return g.error; }

extern "C" int tl_cuda_init(int ordinal) {
  if (g.ordinal == ordinal) return 0;
  if (g.ordinal >= 0) {
    snprintf(g.error, sizeof g.error, "tl_cuda_init(%d): device %d is already in use",
             ordinal, g.ordinal);
    return -1;
  }
  int n = tl_cuda_device_count();
  if (ordinal < 0 || ordinal >= n) {
    snprintf(g.error, sizeof g.error, "tl_cuda_init(%d): %d CUDA device(s) visible", ordinal,
             n);
    return -1;
  }

  // Device, stream, events, handle (bound to the stream), the bad-index slot.
  TL_CU_SETUP(cudaSetDevice(ordinal));
  TL_CU_SETUP(cudaStreamCreateWithFlags(&g.stream, cudaStreamNonBlocking));
  TL_CU_SETUP(cudaEventCreate(&g.t0));
  TL_CU_SETUP(cudaEventCreate(&g.t1));
  cublasStatus_t s = cublasCreate(&g.blas);
  if (s != CUBLAS_STATUS_SUCCESS) return setup_error("cublasCreate", __LINE__,
                                                     cublasGetStatusString(s));
  s = cublasSetStream(g.blas, g.stream);
  if (s != CUBLAS_STATUS_SUCCESS) return setup_error("cublasSetStream", __LINE__,
                                                     cublasGetStatusString(s));
  TL_CU_SETUP(cudaMalloc((void **)&g.bad_index, sizeof(int64_t)));
  TL_CU_SETUP(cudaMemset(g.bad_index, 0xff, sizeof(int64_t))); // -1
  g.ordinal = ordinal;
  return 0;
}

extern "C" void tl_cuda_shutdown(void) {
  if (g.ordinal < 0) return;
  TL_CU(cudaStreamSynchronize(g.stream));
  TL_CUBLAS(cublasDestroy(g.blas));
  TL_CU(cudaFree(g.scratch));
  TL_CU(cudaFree(g.bad_index));
  TL_CU(cudaEventDestroy(g.t0));
  TL_CU(cudaEventDestroy(g.t1));
  TL_CU(cudaStreamDestroy(g.stream));
  memset(&g, 0, sizeof g);
  g.ordinal = -1;
}

// Lazily initialises device 0, so kernels work without an explicit init.
static void ensure_init(void) {
  if (g.ordinal >= 0) return;
  if (tl_cuda_init(0) != 0) {
    fprintf(stderr, "tl: CUDA initialisation failed: %s\n", g.error);
    abort();
  }
}

cudaStream_t tl_stream(void) {
  ensure_init();
  return g.stream;
}

extern "C" void *tl_cuda_stream(void) { return (void *)tl_stream(); }

int64_t *tl_cuda_bad_index_slot(void) {
  ensure_init();
  return g.bad_index;
}

void *tl_cuda_scratch(size_t bytes) {
  ensure_init();
  if (bytes <= g.scratch_bytes) return g.scratch;
  // Grow by at least half again so a slowly rising demand reallocates rarely.
  size_t want = bytes > g.scratch_bytes * 3 / 2 ? bytes : g.scratch_bytes * 3 / 2;
  TL_CU(cudaStreamSynchronize(g.stream));
  TL_CU(cudaFree(g.scratch));
  TL_CU(cudaMalloc(&g.scratch, want));
  g.scratch_bytes = want;
  return g.scratch;
}

extern "C" void tl_cuda_device_info(char *name, size_t name_len, size_t *mem_bytes,
                                    int *sm_count) {
  ensure_init();
  cudaDeviceProp p;
  TL_CU(cudaGetDeviceProperties(&p, g.ordinal));
  if (name && name_len) snprintf(name, name_len, "%s", p.name);
  if (mem_bytes) *mem_bytes = p.totalGlobalMem;
  if (sm_count) *sm_count = p.multiProcessorCount;
}

// --- memory and copies ------------------------------------------------------

extern "C" void *tl_cuda_malloc(size_t bytes) {
  ensure_init();
  void *p = NULL;
  cudaError_t e = cudaMalloc(&p, bytes ? bytes : 1);
  if (e != cudaSuccess) {
    cudaGetLastError();
    char why[160];
    snprintf(why, sizeof why, "%s (asked %zu bytes)", cudaGetErrorString(e), bytes);
    setup_error("cudaMalloc", __LINE__, why);
    return NULL;
  }
  return p;
}

extern "C" void tl_cuda_free(void *p) {
  if (p) TL_CU(cudaFree(p));
}

extern "C" void tl_cuda_memcpy_h2d(void *dst, const void *src, size_t bytes) {
  if (bytes) TL_CU(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, tl_stream()));
}

extern "C" void tl_cuda_memcpy_d2h(void *dst, const void *src, size_t bytes) {
  if (!bytes) return;
  TL_CU(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, tl_stream()));
  TL_CU(cudaStreamSynchronize(g.stream));
}

extern "C" void tl_cuda_memcpy_d2d(void *dst, const void *src, size_t bytes) {
  if (bytes) TL_CU(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, tl_stream()));
}

extern "C" void tl_cuda_memset0(void *dst, size_t bytes) {
  if (bytes) TL_CU(cudaMemsetAsync(dst, 0, bytes, tl_stream()));
}

extern "C" void tl_cuda_sync(void) { TL_CU(cudaStreamSynchronize(tl_stream())); }

extern "C" void tl_cuda_timer_begin(void) { TL_CU(cudaEventRecord(g.t0, tl_stream())); }

extern "C" float tl_cuda_timer_end_ms(void) {
  float ms = 0;
  TL_CU(cudaEventRecord(g.t1, tl_stream()));
  TL_CU(cudaEventSynchronize(g.t1));
  TL_CU(cudaEventElapsedTime(&ms, g.t0, g.t1));
  return ms;
}

extern "C" int64_t tl_cuda_take_bad_index(void) {
  int64_t bad = -1;
  tl_cuda_memcpy_d2h(&bad, tl_cuda_bad_index_slot(), sizeof bad);
  if (bad != -1) TL_CU(cudaMemsetAsync(g.bad_index, 0xff, sizeof(int64_t), g.stream));
  return bad;
}

// --- GEMM -------------------------------------------------------------------
// cuBLAS is column-major. A row-major [M, N] matrix is the column-major [N, M]
// matrix of its transpose, so C = op(A) op(B) (row-major) is computed as
// C^T = op(B)^T op(A)^T (column-major): swap the operands and M with N, keep
// each operand's transpose flag and leading dimension.

static cudaDataType_t blas_type(tl_cuda_dtype dt) {
  return dt == TL_CUDA_F32 ? CUDA_R_32F : CUDA_R_16BF;
}

extern "C" void tl_cuda_gemm(tl_cuda_dtype ab, tl_cuda_dtype c, bool trans_a, bool trans_b,
                             int M, int N, int K, float alpha, const void *A, int lda,
                             const void *B, int ldb, float beta, void *C, int ldc) {
  tl_cuda_gemm_batched(ab, c, trans_a, trans_b, M, N, K, alpha, A, lda, 0, B, ldb, 0, beta, C,
                       ldc, 0, 1);
}

extern "C" void tl_cuda_gemm_batched(tl_cuda_dtype ab, tl_cuda_dtype c, bool trans_a,
                                     bool trans_b, int M, int N, int K, float alpha,
                                     const void *A, int lda, int64_t stride_a, const void *B,
                                     int ldb, int64_t stride_b, float beta, void *C, int ldc,
                                     int64_t stride_c, int batch) {
  ensure_init();
  if (M == 0 || N == 0 || batch == 0) return;
  cublasOperation_t opa = trans_a ? CUBLAS_OP_T : CUBLAS_OP_N;
  cublasOperation_t opb = trans_b ? CUBLAS_OP_T : CUBLAS_OP_N;

  // True f32: cuBLAS's default math mode does not use TF32 for Sgemm.
  if (ab == TL_CUDA_F32 && c == TL_CUDA_F32) {
    if (batch == 1)
      TL_CUBLAS(cublasSgemm(g.blas, opb, opa, N, M, K, &alpha, (const float *)B, ldb,
                            (const float *)A, lda, &beta, (float *)C, ldc));
    else
      TL_CUBLAS(cublasSgemmStridedBatched(g.blas, opb, opa, N, M, K, &alpha, (const float *)B,
                                          ldb, stride_b, (const float *)A, lda, stride_a, &beta,
                                          (float *)C, ldc, stride_c, batch));
    return;
  }

  // bf16 inputs (or a bf16 output): tensor cores with f32 accumulation.
  if (batch == 1)
    TL_CUBLAS(cublasGemmEx(g.blas, opb, opa, N, M, K, &alpha, B, blas_type(ab), ldb, A,
                           blas_type(ab), lda, &beta, C, blas_type(c), ldc, CUBLAS_COMPUTE_32F,
                           CUBLAS_GEMM_DEFAULT));
  else
    TL_CUBLAS(cublasGemmStridedBatchedEx(g.blas, opb, opa, N, M, K, &alpha, B, blas_type(ab),
                                         ldb, stride_b, A, blas_type(ab), lda, stride_a, &beta,
                                         C, blas_type(c), ldc, stride_c, batch,
                                         CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
}
