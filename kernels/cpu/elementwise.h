// elementwise.h: CPU loops for the elementwise ops (core/ops_elementwise.c).
// All pointers are contiguous f32 arrays; n counts elements. "Row broadcast":
// b has nb elements, n is a multiple of nb, and element i of a pairs with
// b[i % nb]. Accumulating kernels (_acc) add into their output.
#pragma once
#include <stdbool.h>
#include <stdint.h>

// Loops shorter than this run on one thread (OpenMP start-up costs ~1-5 us).
#define TL_CPU_PAR_MIN 16384

typedef enum { TL_BIN_ADD, TL_BIN_SUB, TL_BIN_MUL } tl_cpu_binop;

// y[i] = a[i] op b[i % nb].
void tl_cpu_binary(tl_cpu_binop op, const float *a, const float *b, float *y, int64_t n,
                   int64_t nb);
// y[i] += s * x[i].
void tl_cpu_axpy(float *y, const float *x, float s, int64_t n);
// y[i] += x[i] * b[i % nb].
void tl_cpu_mul_acc(float *y, const float *x, const float *b, int64_t n, int64_t nb);
// Column sum over rows = n / nb rows of nb columns:
//   db[j] += s * sum_r x[r*nb + j] * (w ? w[r*nb + j] : 1).
// Deterministic (fixed order, double accumulators, independent of thread count).
void tl_cpu_colsum_acc(float *db, const float *x, const float *w, float s, int64_t n,
                       int64_t nb);
// y[i] = s * x[i].
void tl_cpu_scale(float *y, const float *x, float s, int64_t n);

// Activations: forward writes y; backward adds into dx (and dup for swiglu).
void tl_cpu_gelu(float *y, const float *x, int64_t n);
void tl_cpu_gelu_bwd(float *dx, const float *dy, const float *x, int64_t n);
void tl_cpu_tanh(float *y, const float *x, int64_t n);
void tl_cpu_tanh_bwd(float *dx, const float *dy, const float *y, int64_t n); // y = tanh(x)
void tl_cpu_silu(float *y, const float *x, int64_t n);
void tl_cpu_silu_bwd(float *dx, const float *dy, const float *x, int64_t n);
void tl_cpu_swiglu(float *y, const float *gate, const float *up, int64_t n);
// dgate or dup may be NULL (that input needs no gradient).
void tl_cpu_swiglu_bwd(float *dgate, float *dup, const float *dy, const float *gate,
                       const float *up, int64_t n);

// Strided copy / accumulate for views, rank <= 4 (shape and both stride lists
// in elements): dst[idx] = src[idx] or dst[idx] += src[idx] for every index.
void tl_cpu_strided_copy(float *dst, const int64_t *dst_stride, const float *src,
                         const int64_t *src_stride, const int64_t *shape, int rank);
void tl_cpu_strided_add(float *dst, const int64_t *dst_stride, const float *src,
                        const int64_t *src_stride, const int64_t *shape, int rank);

// Sum of x in double: 64 fixed chunks summed in parallel, then in order, so the
// result does not depend on the thread count.
double tl_cpu_sum(const float *x, int64_t n);
// y[i] += s.
void tl_cpu_add_scalar(float *y, float s, int64_t n);

// Dropout by counter-based Philox (core/rng.h): element i is kept iff
// tl_rng_uniform(seed, offset + i) >= p, and kept values are scaled by
// 1 / (1 - p). Forward: y = x * mask * scale. With accumulate, adds instead
// (the backward: dx += dy * mask * scale, the mask recomputed, never stored).
void tl_cpu_dropout(float *y, const float *x, int64_t n, float p, uint64_t seed,
                    uint64_t offset, bool accumulate);
