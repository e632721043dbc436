// norm.h: CPU kernels for layernorm and RMSNorm over the last dim. Rows are
// contiguous [N, C]. Backward kernels accumulate (+=) into every gradient they
// are given; pass NULL for a gradient that is not wanted.
#pragma once
#include <stdint.h>

// y = (x - mean) * rstd * gamma + beta (beta may be NULL), biased variance.
// Saves mean[N] and rstd[N] for backward.
void tl_cpu_layernorm_fwd(const float *x, const float *gamma, const float *beta, float *y,
                          float *mean, float *rstd, int64_t N, int64_t C, float eps);
// dx += rstd * (g - mean(g) - xhat * mean(g * xhat)) with g = dy * gamma;
// dgamma += sum_n dy * xhat; dbeta += sum_n dy. partial is scratch of
// 2 * C * nthreads floats (per-thread sums, so threads never share a row of
// dgamma); nthreads bounds the threads used.
void tl_cpu_layernorm_bwd(const float *x, const float *gamma, const float *mean,
                          const float *rstd, const float *dy, float *dx, float *dgamma,
                          float *dbeta, int64_t N, int64_t C, float *partial, int nthreads);

// y = x * rstd * gamma with rstd = 1 / sqrt(mean(x^2) + eps). Saves rstd[N].
void tl_cpu_rmsnorm_fwd(const float *x, const float *gamma, float *y, float *rstd, int64_t N,
                        int64_t C, float eps);
// dx += rstd * (g - xhat * mean(g * xhat)) with g = dy * gamma, xhat = x * rstd;
// dgamma += sum_n dy * xhat. partial: C * nthreads floats of scratch.
void tl_cpu_rmsnorm_bwd(const float *x, const float *gamma, const float *rstd, const float *dy,
                        float *dx, float *dgamma, int64_t N, int64_t C, float *partial,
                        int nthreads);
