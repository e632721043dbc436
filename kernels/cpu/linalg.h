// linalg.h: GEMM on the CPU through OpenBLAS (core/ops_linalg.c).
//
// A tl_cpu_mat describes a logical matrix without copying: the row-major matrix S
// at p with leading dimension ld, transposed when t (logical = S^T). Batched
// calls add up to two batch dims with their own strides (0 = shared matrix).
#pragma once
#include <stdbool.h>
#include <stdint.h>

typedef struct tl_cpu_mat {
  const float *p;
  int64_t ld;
  bool t;
  int64_t bstride[2]; // elements between consecutive matrices of batch dim 0, 1
} tl_cpu_mat;

// The same matrix, transposed (no data moves).
static inline tl_cpu_mat tl_cpu_mat_t(tl_cpu_mat m) {
  m.t = !m.t;
  return m;
}

// C (M x N, row-major, ldc) = A (M x K) * B (K x N) + beta * C. Threads: BLAS's own.
void tl_cpu_gemm(int64_t M, int64_t N, int64_t K, tl_cpu_mat A, tl_cpu_mat B, float beta,
                 float *C, int64_t ldc);
// For every batch index (i, j) < nbatch: C[i,j] = A[i,j] B[i,j] + beta C[i,j], where
// X[i,j] starts at X.p + i X.bstride[0] + j X.bstride[1] (C likewise with cstride).
// Small products run batches in parallel (one BLAS thread each); when C's batch
// strides are all 0 (a shared accumulator) batches run in order, so the sum is
// deterministic.
void tl_cpu_gemm_batched(const int64_t nbatch[2], int64_t M, int64_t N, int64_t K,
                         tl_cpu_mat A, tl_cpu_mat B, float beta, float *C, int64_t ldc,
                         const int64_t cstride[2]);
// y[r, :] = row for r < rows (the bias broadcast before a beta = 1 GEMM).
void tl_cpu_fill_rows(float *y, const float *row, int64_t rows, int64_t cols);
