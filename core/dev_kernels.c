// dev_kernels.c: the CPU loop or the CUDA kernel, by device (dev_kernels.h).
#include "core/dev_kernels.h"

#include "kernels/cpu/norm.h"
#include "kernels/cpu/select.h"
#include "kernels/cpu/softmax.h"

#ifdef TL_HAVE_CUDA
#include "kernels/cuda/tl_cuda.h"
#define F32 TL_CUDA_F32
// Runs the CUDA statement for device tensors, else the CPU one.
#define ON(dev, cuda_stmt, cpu_stmt) \
  do {                               \
    if ((dev) == TL_CUDA) {          \
      cuda_stmt;                     \
    } else {                         \
      cpu_stmt;                      \
    }                                \
  } while (0)
#else
#define ON(dev, cuda_stmt, cpu_stmt)                                              \
  do {                                                                            \
    TL_ASSERTF((dev) == TL_CPU, "%s: tl was built without CUDA", __func__);       \
    cpu_stmt;                                                                     \
  } while (0)
#endif

// --- elementwise ------------------------------------------------------------------------

void tl_dev_binary(tl_device dev, tl_cpu_binop op, const float *a, const float *b, float *y,
                   int64_t n, int64_t nb) {
  // The two enums list add, sub, mul in the same order.
  ON(dev, tl_cuda_binary(F32, (tl_cuda_binop)op, a, b, y, n, nb),
     tl_cpu_binary(op, a, b, y, n, nb));
}

void tl_dev_axpy(tl_device dev, float *y, const float *x, float s, int64_t n) {
  ON(dev, tl_cuda_axpy(F32, y, x, s, n), tl_cpu_axpy(y, x, s, n));
}

void tl_dev_mul_acc(tl_device dev, float *y, const float *x, const float *b, int64_t n,
                    int64_t nb) {
  ON(dev, tl_cuda_mul_acc(F32, y, x, b, n, nb), tl_cpu_mul_acc(y, x, b, n, nb));
}

void tl_dev_colsum_acc(tl_device dev, float *db, const float *x, const float *w, float s,
                       int64_t n, int64_t nb) {
  ON(dev, tl_cuda_colsum_acc(F32, db, x, w, s, n, nb), tl_cpu_colsum_acc(db, x, w, s, n, nb));
}

void tl_dev_scale(tl_device dev, float *y, const float *x, float s, int64_t n) {
  ON(dev, tl_cuda_scale(F32, y, x, s, n), tl_cpu_scale(y, x, s, n));
}

void tl_dev_gelu(tl_device dev, float *y, const float *x, int64_t n) {
  ON(dev, tl_cuda_gelu(F32, y, x, n), tl_cpu_gelu(y, x, n));
}
void tl_dev_gelu_bwd(tl_device dev, float *dx, const float *dy, const float *x, int64_t n) {
  ON(dev, tl_cuda_gelu_bwd(F32, dx, dy, x, n), tl_cpu_gelu_bwd(dx, dy, x, n));
}
void tl_dev_tanh(tl_device dev, float *y, const float *x, int64_t n) {
  ON(dev, tl_cuda_tanh(F32, y, x, n), tl_cpu_tanh(y, x, n));
}
void tl_dev_tanh_bwd(tl_device dev, float *dx, const float *dy, const float *y, int64_t n) {
  ON(dev, tl_cuda_tanh_bwd(F32, dx, dy, y, n), tl_cpu_tanh_bwd(dx, dy, y, n));
}
void tl_dev_silu(tl_device dev, float *y, const float *x, int64_t n) {
  ON(dev, tl_cuda_silu(F32, y, x, n), tl_cpu_silu(y, x, n));
}
void tl_dev_silu_bwd(tl_device dev, float *dx, const float *dy, const float *x, int64_t n) {
  ON(dev, tl_cuda_silu_bwd(F32, dx, dy, x, n), tl_cpu_silu_bwd(dx, dy, x, n));
}
void tl_dev_swiglu(tl_device dev, float *y, const float *gate, const float *up, int64_t n) {
  ON(dev, tl_cuda_swiglu(F32, y, gate, up, n), tl_cpu_swiglu(y, gate, up, n));
}
void tl_dev_swiglu_bwd(tl_device dev, float *dgate, float *dup, const float *dy,
                       const float *gate, const float *up, int64_t n) {
  ON(dev, tl_cuda_swiglu_bwd(F32, dgate, dup, dy, gate, up, n),
     tl_cpu_swiglu_bwd(dgate, dup, dy, gate, up, n));
}

void tl_dev_strided_copy(tl_device dev, float *dst, const int64_t *dst_stride, const float *src,
                         const int64_t *src_stride, const int64_t *shape, int rank) {
  ON(dev, tl_cuda_strided_copy(F32, dst, dst_stride, src, src_stride, shape, rank, false),
     tl_cpu_strided_copy(dst, dst_stride, src, src_stride, shape, rank));
}

void tl_dev_strided_add(tl_device dev, float *dst, const int64_t *dst_stride, const float *src,
                        const int64_t *src_stride, const int64_t *shape, int rank) {
  ON(dev, tl_cuda_strided_copy(F32, dst, dst_stride, src, src_stride, shape, rank, true),
     tl_cpu_strided_add(dst, dst_stride, src, src_stride, shape, rank));
}

void tl_dev_dropout(tl_device dev, float *y, const float *x, int64_t n, float p, uint64_t seed,
                    uint64_t offset, bool accumulate) {
  ON(dev,
     if (accumulate) tl_cuda_dropout_bwd(F32, y, x, n, p, seed, offset);
     else tl_cuda_dropout(F32, y, x, n, p, seed, offset),
     tl_cpu_dropout(y, x, n, p, seed, offset, accumulate));
}

void tl_dev_add_const(tl_device dev, float *y, float c, int64_t n) {
  ON(dev, tl_cuda_add_scalar(F32, y, NULL, c, n), tl_cpu_add_scalar(y, c, n));
}

void tl_dev_add_scalar_from(tl_device dev, float *y, const float *s, float mul, int64_t n) {
  ON(dev, tl_cuda_add_scalar(F32, y, s, mul, n), tl_cpu_add_scalar(y, mul * s[0], n));
}

// --- lookups and concatenation ------------------------------------------------------------

#ifdef TL_HAVE_CUDA
// Device ids are checked after the kernel (which zeroes a bad row and notes it).
static void check_device_ids(const char *op, int64_t rows) {
  int64_t bad = tl_cuda_take_bad_index();
  TL_ASSERTF(bad < 0, "%s: id %ld is outside [0, %ld)", op, (long)bad, (long)rows);
}
#endif

void tl_dev_gather_rows(tl_device dev, float *y, const float *x, const int32_t *ids, int64_t n,
                        int64_t C, int64_t rows) {
  ON(dev,
     tl_cuda_embedding(F32, x, F32, y, ids, n, C, rows);
     check_device_ids("gather_rows", rows),
     tl_cpu_gather_rows(y, x, ids, n, C));
}

void tl_dev_scatter_add_rows(tl_device dev, float *dx, const float *dy, const int32_t *ids,
                             int64_t n, int64_t C, int64_t rows) {
  // Deterministic on both devices (the CPU loop visits ids in order too).
  ON(dev, tl_cuda_embedding_bwd(F32, dx, F32, dy, ids, n, C, rows, true),
     tl_cpu_scatter_add_rows(dx, dy, ids, n, C));
}

void tl_dev_concat(tl_device dev, float *y, const float *const *xs, const int64_t *inner, int n,
                   int64_t outer) {
#ifdef TL_HAVE_CUDA
  if (dev == TL_CUDA) {
    // Piece k fills columns [off, off + inner[k]) of every one of the outer rows.
    int64_t total = 0, off = 0;
    for (int k = 0; k < n; k++) total += inner[k];
    for (int k = 0; k < n; k++) {
      int64_t shape[2] = {outer, inner[k]}, ys[2] = {total, 1}, xs_[2] = {inner[k], 1};
      tl_cuda_strided_copy(F32, y + off, ys, xs[k], xs_, shape, 2, false);
      off += inner[k];
    }
    return;
  }
#endif
  ON(dev, (void)0, tl_cpu_concat(y, xs, inner, n, outer));
}

void tl_dev_split_add(tl_device dev, float *dx, const float *dy, int64_t outer, int64_t inner,
                      int64_t total, int64_t off) {
#ifdef TL_HAVE_CUDA
  if (dev == TL_CUDA) {
    int64_t shape[2] = {outer, inner}, xs[2] = {inner, 1}, ys[2] = {total, 1};
    tl_cuda_strided_copy(F32, dx, xs, dy + off, ys, shape, 2, true);
    return;
  }
#endif
  ON(dev, (void)0, tl_cpu_split_add(dx, dy, outer, inner, total, off));
}

// --- softmax and norms ----------------------------------------------------------------------

void tl_dev_softmax_fwd(tl_device dev, const float *x, float *y, int64_t N, int64_t C) {
  ON(dev, tl_cuda_softmax(F32, y, x, N, C), tl_cpu_softmax_fwd(x, y, N, C));
}
void tl_dev_log_softmax_fwd(tl_device dev, const float *x, float *y, int64_t N, int64_t C) {
  ON(dev, tl_cuda_log_softmax(F32, y, x, N, C), tl_cpu_log_softmax_fwd(x, y, N, C));
}
void tl_dev_softmax_bwd(tl_device dev, const float *y, const float *dy, float *dx, int64_t N,
                        int64_t C) {
  ON(dev, tl_cuda_softmax_bwd(F32, dx, dy, y, N, C), tl_cpu_softmax_bwd(y, dy, dx, N, C));
}
void tl_dev_log_softmax_bwd(tl_device dev, const float *y, const float *dy, float *dx,
                            int64_t N, int64_t C) {
  ON(dev, tl_cuda_log_softmax_bwd(F32, dx, dy, y, N, C),
     tl_cpu_log_softmax_bwd(y, dy, dx, N, C));
}

void tl_dev_layernorm_fwd(tl_device dev, const float *x, const float *gamma, const float *beta,
                          float *y, float *mean, float *rstd, int64_t N, int64_t C, float eps) {
  ON(dev, tl_cuda_layernorm(F32, y, mean, rstd, x, gamma, beta, N, C, eps),
     tl_cpu_layernorm_fwd(x, gamma, beta, y, mean, rstd, N, C, eps));
}

void tl_dev_layernorm_bwd(tl_device dev, const float *x, const float *gamma, const float *mean,
                          const float *rstd, const float *dy, float *dx, float *dgamma,
                          float *dbeta, int64_t N, int64_t C, float *partial, int nthreads) {
  ON(dev, tl_cuda_layernorm_bwd(F32, dx, dgamma, dbeta, dy, x, gamma, mean, rstd, N, C),
     tl_cpu_layernorm_bwd(x, gamma, mean, rstd, dy, dx, dgamma, dbeta, N, C, partial,
                          nthreads));
}

void tl_dev_rmsnorm_fwd(tl_device dev, const float *x, const float *gamma, float *y, float *rstd,
                        int64_t N, int64_t C, float eps) {
  ON(dev, tl_cuda_rmsnorm(F32, y, rstd, x, gamma, N, C, eps),
     tl_cpu_rmsnorm_fwd(x, gamma, y, rstd, N, C, eps));
}

void tl_dev_rmsnorm_bwd(tl_device dev, const float *x, const float *gamma, const float *rstd,
                        const float *dy, float *dx, float *dgamma, int64_t N, int64_t C,
                        float *partial, int nthreads) {
  ON(dev, tl_cuda_rmsnorm_bwd(F32, dx, dgamma, dy, x, gamma, rstd, N, C),
     tl_cpu_rmsnorm_bwd(x, gamma, rstd, dy, dx, dgamma, N, C, partial, nthreads));
}

// --- GEMM ---------------------------------------------------------------------------------
// A tl_cpu_mat (row-major S at p, ld, logical S^T when t) is exactly the row-major
// operand of tl_cuda_gemm with trans = t.

#ifdef TL_HAVE_CUDA
static void cuda_gemm(int64_t M, int64_t N, int64_t K, tl_cpu_mat A, tl_cpu_mat B, float beta,
                      float *C, int64_t ldc, int64_t batch, int64_t sa, int64_t sb, int64_t sc) {
  TL_ASSERTF(M < INT32_MAX && N < INT32_MAX && K < INT32_MAX && batch < INT32_MAX,
             "gemm: %ld x %ld x %ld exceeds cuBLAS's int dims", (long)M, (long)N, (long)K);
  tl_cuda_gemm_batched(F32, F32, A.t, B.t, (int)M, (int)N, (int)K, 1.0f, A.p, (int)A.ld, sa,
                       B.p, (int)B.ld, sb, beta, C, (int)ldc, sc, (int)batch);
}
#endif

void tl_dev_gemm(tl_device dev, int64_t M, int64_t N, int64_t K, tl_cpu_mat A, tl_cpu_mat B,
                 float beta, float *C, int64_t ldc) {
  ON(dev, cuda_gemm(M, N, K, A, B, beta, C, ldc, 1, 0, 0, 0),
     tl_cpu_gemm(M, N, K, A, B, beta, C, ldc));
}

void tl_dev_gemm_batched(tl_device dev, const int64_t nbatch[2], int64_t M, int64_t N,
                         int64_t K, tl_cpu_mat A, tl_cpu_mat B, float beta, float *C,
                         int64_t ldc, const int64_t cstride[2]) {
#ifdef TL_HAVE_CUDA
  if (dev == TL_CUDA) {
    bool shared_c = cstride[0] == 0 && cstride[1] == 0;
    for (int64_t i = 0; i < nbatch[0]; i++) {
      tl_cpu_mat a = A, b = B;
      a.p += i * A.bstride[0], b.p += i * B.bstride[0];
      float *c = C + i * cstride[0];
      if (!shared_c) {
        // One strided-batched call over the inner batch dim.
        cuda_gemm(M, N, K, a, b, beta, c, ldc, nbatch[1], A.bstride[1], B.bstride[1],
                  cstride[1]);
        continue;
      }
      // A shared accumulator: products in order, each adding into C.
      for (int64_t j = 0; j < nbatch[1]; j++) {
        tl_cpu_mat aj = a, bj = b;
        aj.p += j * A.bstride[1], bj.p += j * B.bstride[1];
        cuda_gemm(M, N, K, aj, bj, beta, c, ldc, 1, 0, 0, 0);
      }
    }
    return;
  }
#endif
  ON(dev, (void)0, tl_cpu_gemm_batched(nbatch, M, N, K, A, B, beta, C, ldc, cstride));
}

void tl_dev_fill_rows(tl_device dev, float *y, const float *row, int64_t rows, int64_t cols) {
#ifdef TL_HAVE_CUDA
  if (dev == TL_CUDA) {
    // A stride-0 source repeats the row.
    int64_t shape[2] = {rows, cols}, ys[2] = {cols, 1}, rs[2] = {0, 1};
    tl_cuda_strided_copy(F32, y, ys, row, rs, shape, 2, false);
    return;
  }
#endif
  ON(dev, (void)0, tl_cpu_fill_rows(y, row, rows, cols));
}
