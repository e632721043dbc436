// select.h: CPU loops for row lookups and concatenation (core/ops_select.c).
// Row indices are validated by the caller; arrays are contiguous.
#pragma once
#include <stdint.h>

// y[i, :] = x[ids[i], :] for i < n; rows of C floats.
void tl_cpu_gather_rows(float *y, const float *x, const int32_t *ids, int64_t n, int64_t C);
// dx[ids[i], :] += dy[i, :] for i < n. Deterministic: each thread owns a band of
// columns and visits i in order, so repeated ids add in the same order every run.
void tl_cpu_scatter_add_rows(float *dx, const float *dy, const int32_t *ids, int64_t n,
                             int64_t C);
// Concatenation seen as outer rows: y[o, off_k : off_k + inner[k]] = xs[k][o, :],
// with row length total = sum inner[k].
void tl_cpu_concat(float *y, const float *const *xs, const int64_t *inner, int n,
                   int64_t outer);
// The backward of one piece: dx[o, :] += dy[o, off : off + inner] (row length total).
void tl_cpu_split_add(float *dx, const float *dy, int64_t outer, int64_t inner, int64_t total,
                      int64_t off);
