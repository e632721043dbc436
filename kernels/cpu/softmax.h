// softmax.h: CPU kernels for softmax and log-softmax over the last dim, plus the
// row helpers that attention and cross entropy share. Rows are contiguous
// [N, C]; backward kernels accumulate (+=) into dx, as the tape expects.
#pragma once
#include <stdint.h>

// y[n, :] = softmax(x[n, :]). x and y may alias.
void tl_cpu_softmax_fwd(const float *x, float *y, int64_t N, int64_t C);
// y[n, :] = x[n, :] - logsumexp(x[n, :]). x and y may alias.
void tl_cpu_log_softmax_fwd(const float *x, float *y, int64_t N, int64_t C);
// dx += y * (dy - sum(dy * y)), y the softmax output.
void tl_cpu_softmax_bwd(const float *y, const float *dy, float *dx, int64_t N, int64_t C);
// dx += dy - exp(y) * sum(dy), y the log-softmax output.
void tl_cpu_log_softmax_bwd(const float *y, const float *dy, float *dx, int64_t N, int64_t C);

// Largest element of x[0..n) (-INFINITY when n == 0).
float tl_cpu_row_max(const float *x, int64_t n);
// log(sum(exp(x))) over one row, stable (subtracts the max first). A row that is
// all -INFINITY gives -INFINITY.
float tl_cpu_row_logsumexp(const float *x, int64_t n);
// e[i] = exp(x[i] - shift) (e may be NULL: sum only); returns the sum. x and e may
// alias. Vectorised on AVX2 CPUs: ~1 ulp, exactly 0 below exp(-87), NaN kept.
double tl_cpu_row_exp_sum(const float *x, float *e, int64_t n, float shift);
// y[i] += scale * exp(x[i] - shift), same exp as above.
void tl_cpu_row_exp_add(const float *x, float shift, float scale, float *y, int64_t n);
