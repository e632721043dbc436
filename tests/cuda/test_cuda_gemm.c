// cuBLAS GEMM wrappers (row-major contract of tl_cuda.h) against a double
// triple loop: every transpose combination, alpha/beta, padded leading
// dimensions, strided batches with a shared operand, f32 and bf16 (f32
// accumulation, f32 or bf16 output). Tolerances: cuda_check.h.
#include "tests/cuda/cuda_check.h"

#ifndef TL_HAVE_CUDA
Test(cuda_gemm, skipped) {
  fprintf(stderr, "skipped: no GPU (built without CUDA)\n");
  cr_skip_test("skipped: no GPU (built without CUDA)");
}
#else
#include "kernels/cuda/tl_cuda.h"

// C[b] = alpha op(A[b]) op(B[b]) + beta C[b], row-major, in double.
static void ref_gemm(bool ta, bool tb, int M, int N, int K, float alpha, const float *A, int lda,
                     int64_t sa, const float *B, int ldb, int64_t sb, float beta, float *C,
                     int ldc, int64_t sc, int batch) {
  for (int z = 0; z < batch; z++)
    for (int i = 0; i < M; i++)
      for (int j = 0; j < N; j++) {
        double acc = 0;
        for (int p = 0; p < K; p++) {
          double a = ta ? A[z * sa + p * lda + i] : A[z * sa + i * lda + p];
          double b = tb ? B[z * sb + j * ldb + p] : B[z * sb + p * ldb + j];
          acc += a * b;
        }
        float *c = &C[z * sc + i * ldc + j];
        *c = (float)(alpha * acc + beta * (double)*c);
      }
}

static void run(tl_dtype ab, tl_dtype cd, bool ta, bool tb, int M, int N, int K, int batch,
                bool share_b, int seed) {
  // Leading dimensions padded by 3 to catch any lda/ldb/ldc mix-up.
  int lda = (ta ? M : K) + 3, ldb = (tb ? K : N) + 3, ldc = N + 3;
  int64_t sa = (int64_t)(ta ? K : M) * lda, sb = share_b ? 0 : (int64_t)(tb ? N : K) * ldb;
  int64_t sc = (int64_t)M * ldc;
  int64_t na = sa * batch, nb = share_b ? (int64_t)(tb ? N : K) * ldb : sb * batch;
  int64_t nc = sc * batch;
  float *A = tc_randn(na, 1.0f, seed), *B = tc_randn(nb, 1.0f, seed + 1);
  float *C = tc_randn(nc, 1.0f, seed + 2);
  tc_round(A, na, ab), tc_round(B, nb, ab), tc_round(C, nc, cd);
  float alpha = 0.75f, beta = 0.5f;

  void *dA = tc_up(A, na, ab), *dB = tc_up(B, nb, ab), *dC = tc_up(C, nc, cd);
  if (batch == 1)
    tl_cuda_gemm((tl_cuda_dtype)ab, (tl_cuda_dtype)cd, ta, tb, M, N, K, alpha, dA, lda, dB, ldb,
                 beta, dC, ldc);
  else
    tl_cuda_gemm_batched((tl_cuda_dtype)ab, (tl_cuda_dtype)cd, ta, tb, M, N, K, alpha, dA, lda,
                         sa, dB, ldb, sb, beta, dC, ldc, sc, batch);
  float *got = tc_down(dC, nc, cd);
  ref_gemm(ta, tb, M, N, K, alpha, A, lda, sa, B, ldb, sb, beta, C, ldc, sc, batch);
  // Padding columns of C (beyond N) must be untouched: the reference leaves them.
  tc_check(tl_fmt("gemm %s->%s ta%d tb%d M%d N%d K%d batch%d%s", ab == TL_F32 ? "f32" : "bf16",
                  cd == TL_F32 ? "f32" : "bf16", ta, tb, M, N, K, batch, share_b ? " shared" : ""),
           got, C, nc, ab == TL_F32 && cd == TL_F32 ? TOL_F32 : TOL_BF16);
  free(A), free(B), free(C), free(got);
  tl_device_free(dA), tl_device_free(dB), tl_device_free(dC);
}

static const int SIZES[][3] = {{1, 1, 1}, {7, 13, 5}, {129, 67, 257}, {64, 96, 768}};

Test(cuda_gemm, f32_all_transposes) {
  REQUIRE_GPU();
  for (int s = 0; s < 4; s++)
    for (int t = 0; t < 4; t++)
      run(TL_F32, TL_F32, t & 1, t >> 1, SIZES[s][0], SIZES[s][1], SIZES[s][2], 1, false, s);
}

Test(cuda_gemm, bf16_to_f32_and_bf16) {
  REQUIRE_GPU();
  for (int s = 0; s < 4; s++)
    for (int t = 0; t < 4; t++)
      for (int c = 0; c < 2; c++)
        run(TL_BF16, c ? TL_BF16 : TL_F32, t & 1, t >> 1, SIZES[s][0], SIZES[s][1], SIZES[s][2],
            1, false, 10 + s);
}

Test(cuda_gemm, strided_batches) {
  REQUIRE_GPU();
  for (int s = 0; s < 3; s++)
    for (int t = 0; t < 4; t++)
      for (int share = 0; share < 2; share++) {
        run(TL_F32, TL_F32, t & 1, t >> 1, SIZES[s][0], SIZES[s][1], SIZES[s][2], 3, share, s);
        run(TL_BF16, TL_BF16, t & 1, t >> 1, SIZES[s][0], SIZES[s][1], SIZES[s][2], 5, share,
            20 + s);
      }
}
#endif
