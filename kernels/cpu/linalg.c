// linalg.c: cblas_sgemm wrappers. Contracts in linalg.h.
#include "kernels/cpu/linalg.h"

#include <cblas.h>
#include <limits.h>
#include <string.h>

#include "core/log.h"

// Products below this many multiply-adds are too small for BLAS to thread well;
// batches of them run in parallel instead (~128^3) ...
#define BATCH_PAR_MAX_FLOP ((int64_t)1 << 21)
// ... unless all of them together are too small to pay for waking threads.
#define BATCH_PAR_MIN_FLOP ((int64_t)1 << 16)

static void check_dims(int64_t M, int64_t N, int64_t K, int64_t lda, int64_t ldb,
                       int64_t ldc) {
  // cblas takes int: products past 2^31 rows or columns must be split by the caller.
  TL_ASSERTF(M <= INT_MAX && N <= INT_MAX && K <= INT_MAX && lda <= INT_MAX &&
                 ldb <= INT_MAX && ldc <= INT_MAX,
             "gemm: dimension beyond int (M %ld N %ld K %ld)", (long)M, (long)N, (long)K);
}

void tl_cpu_gemm(int64_t M, int64_t N, int64_t K, tl_cpu_mat A, tl_cpu_mat B, float beta,
                 float *C, int64_t ldc) {
  if (M == 0 || N == 0) return;
  // K = 0: the product is empty, C = beta C (BLAS does this too, but ld rules bite).
  if (K == 0) {
    for (int64_t i = 0; i < M; i++)
      for (int64_t j = 0; j < N; j++) C[i * ldc + j] = beta == 0 ? 0 : beta * C[i * ldc + j];
    return;
  }
  check_dims(M, N, K, A.ld, B.ld, ldc);
  cblas_sgemm(CblasRowMajor, A.t ? CblasTrans : CblasNoTrans, B.t ? CblasTrans : CblasNoTrans,
              (int)M, (int)N, (int)K, 1.0f, A.p, (int)A.ld, B.p, (int)B.ld, beta, C, (int)ldc);
}

void tl_cpu_gemm_batched(const int64_t nbatch[2], int64_t M, int64_t N, int64_t K,
                         tl_cpu_mat A, tl_cpu_mat B, float beta, float *C, int64_t ldc,
                         const int64_t cstride[2]) {
  int64_t n = nbatch[0] * nbatch[1];
  bool shared_c = cstride[0] == 0 && cstride[1] == 0;
  int64_t flop = M * N * K;
  bool par = n > 1 && !shared_c && flop <= BATCH_PAR_MAX_FLOP && n * flop >= BATCH_PAR_MIN_FLOP;

  // One product per batch index; inside the parallel loop BLAS runs single-threaded
  // (OpenMP OpenBLAS checks omp_in_parallel). A shared C accumulates in order.
#pragma omp parallel for schedule(static) if (par)
  for (int64_t b = 0; b < n; b++) {
    int64_t i = b / nbatch[1], j = b % nbatch[1];
    tl_cpu_mat a = A, bb = B;
    a.p += i * A.bstride[0] + j * A.bstride[1];
    bb.p += i * B.bstride[0] + j * B.bstride[1];
    float *c = C + i * cstride[0] + j * cstride[1];
    // After the first product a shared accumulator keeps what it has.
    float be = shared_c && b > 0 ? 1.0f : beta;
    tl_cpu_gemm(M, N, K, a, bb, be, c, ldc);
  }
}

void tl_cpu_fill_rows(float *y, const float *row, int64_t rows, int64_t cols) {
#pragma omp parallel for schedule(static) if (rows * cols >= 16384)
  for (int64_t r = 0; r < rows; r++) memcpy(y + r * cols, row, (size_t)cols * sizeof(float));
}
