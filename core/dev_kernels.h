// dev_kernels.h: device-neutral kernel calls for the ops (core/ops_*.c).
//
// Each function takes the device of the tensors first, then exactly the
// arguments of the kernels/cpu function of the same name (tl_dev_X <->
// tl_cpu_X), and runs the CPU loop or the CUDA kernel (kernels/cuda/tl_cuda.h,
// f32) on the pointers. So an op is made device-neutral by renaming its kernel
// calls and allocating with tl_empty_on (device.h); its shape checks, tape
// glue and backward stay as they are. Built without CUDA, TL_CUDA aborts.
// CPU-only scratch arguments (partial sums, thread counts) are ignored on CUDA.
#pragma once
#include "core/tensor.h"
#include "kernels/cpu/elementwise.h"
#include "kernels/cpu/linalg.h"

void tl_dev_binary(tl_device dev, tl_cpu_binop op, const float *a, const float *b, float *y,
                   int64_t n, int64_t nb);
void tl_dev_axpy(tl_device dev, float *y, const float *x, float s, int64_t n);
void tl_dev_mul_acc(tl_device dev, float *y, const float *x, const float *b, int64_t n,
                    int64_t nb);
void tl_dev_colsum_acc(tl_device dev, float *db, const float *x, const float *w, float s,
                       int64_t n, int64_t nb);
void tl_dev_scale(tl_device dev, float *y, const float *x, float s, int64_t n);
void tl_dev_gelu(tl_device dev, float *y, const float *x, int64_t n);
void tl_dev_gelu_bwd(tl_device dev, float *dx, const float *dy, const float *x, int64_t n);
void tl_dev_tanh(tl_device dev, float *y, const float *x, int64_t n);
void tl_dev_tanh_bwd(tl_device dev, float *dx, const float *dy, const float *y, int64_t n);
void tl_dev_silu(tl_device dev, float *y, const float *x, int64_t n);
void tl_dev_silu_bwd(tl_device dev, float *dx, const float *dy, const float *x, int64_t n);
void tl_dev_swiglu(tl_device dev, float *y, const float *gate, const float *up, int64_t n);
void tl_dev_swiglu_bwd(tl_device dev, float *dgate, float *dup, const float *dy,
                       const float *gate, const float *up, int64_t n);
void tl_dev_strided_copy(tl_device dev, float *dst, const int64_t *dst_stride, const float *src,
                         const int64_t *src_stride, const int64_t *shape, int rank);
void tl_dev_strided_add(tl_device dev, float *dst, const int64_t *dst_stride, const float *src,
                        const int64_t *src_stride, const int64_t *shape, int rank);
void tl_dev_dropout(tl_device dev, float *y, const float *x, int64_t n, float p, uint64_t seed,
                    uint64_t offset, bool accumulate);

// y[i] += c (c a host value).
void tl_dev_add_const(tl_device dev, float *y, float c, int64_t n);
// y[i] += mul * s[0], where s points at a one-float tensor on dev (a gradient).
void tl_dev_add_scalar_from(tl_device dev, float *y, const float *s, float mul, int64_t n);

// Row lookups (select.h): ids on dev. On CUDA an id outside [0, rows) aborts
// (checked after the kernel, which waits for the device).
void tl_dev_gather_rows(tl_device dev, float *y, const float *x, const int32_t *ids, int64_t n,
                        int64_t C, int64_t rows);
void tl_dev_scatter_add_rows(tl_device dev, float *dx, const float *dy, const int32_t *ids,
                             int64_t n, int64_t C, int64_t rows);
// Concatenation pieces (select.h), as strided copies on CUDA.
void tl_dev_concat(tl_device dev, float *y, const float *const *xs, const int64_t *inner, int n,
                   int64_t outer);
void tl_dev_split_add(tl_device dev, float *dx, const float *dy, int64_t outer, int64_t inner,
                      int64_t total, int64_t off);

// Softmax and norms (softmax.h, norm.h).
void tl_dev_softmax_fwd(tl_device dev, const float *x, float *y, int64_t N, int64_t C);
void tl_dev_log_softmax_fwd(tl_device dev, const float *x, float *y, int64_t N, int64_t C);
void tl_dev_softmax_bwd(tl_device dev, const float *y, const float *dy, float *dx, int64_t N,
                        int64_t C);
void tl_dev_log_softmax_bwd(tl_device dev, const float *y, const float *dy, float *dx,
                            int64_t N, int64_t C);
void tl_dev_layernorm_fwd(tl_device dev, const float *x, const float *gamma, const float *beta,
                          float *y, float *mean, float *rstd, int64_t N, int64_t C, float eps);
void tl_dev_layernorm_bwd(tl_device dev, const float *x, const float *gamma, const float *mean,
                          const float *rstd, const float *dy, float *dx, float *dgamma,
                          float *dbeta, int64_t N, int64_t C, float *partial, int nthreads);
void tl_dev_rmsnorm_fwd(tl_device dev, const float *x, const float *gamma, float *y, float *rstd,
                        int64_t N, int64_t C, float eps);
void tl_dev_rmsnorm_bwd(tl_device dev, const float *x, const float *gamma, const float *rstd,
                        const float *dy, float *dx, float *dgamma, int64_t N, int64_t C,
                        float *partial, int nthreads);

// GEMM on tl_cpu_mat operands (linalg.h). On CUDA: cuBLAS f32; a batched call
// whose C batch strides are all 0 (one shared accumulator) runs its products
// one after another, so the sum keeps its order.
void tl_dev_gemm(tl_device dev, int64_t M, int64_t N, int64_t K, tl_cpu_mat A, tl_cpu_mat B,
                 float beta, float *C, int64_t ldc);
void tl_dev_gemm_batched(tl_device dev, const int64_t nbatch[2], int64_t M, int64_t N,
                         int64_t K, tl_cpu_mat A, tl_cpu_mat B, float beta, float *C,
                         int64_t ldc, const int64_t cstride[2]);
void tl_dev_fill_rows(tl_device dev, float *y, const float *row, int64_t rows, int64_t cols);
