// loss.h: CPU kernels for the fused softmax cross entropy.
#pragma once
#include <stdint.h>

// logits [N, V] contiguous, targets [N] (each in [0, V) or == ignore_index).
// Writes lse[n] = logsumexp(logits[n, :]) for every row (ignored rows too) and
// returns the sum over non-ignored rows of lse[n] - logits[n, target[n]], in
// double. *count receives the number of non-ignored rows.
double tl_cpu_cross_entropy_fwd(const float *logits, const int32_t *targets, float *lse,
                                int64_t N, int64_t V, int ignore_index, int64_t *count);
// dlogits[n, :] += scale * (softmax(logits[n, :]) - onehot(target[n])) for
// non-ignored rows, with softmax recomputed from the saved lse. scale is the
// upstream gradient divided by the count of non-ignored rows.
void tl_cpu_cross_entropy_bwd(const float *logits, const int32_t *targets, const float *lse,
                              int64_t N, int64_t V, int ignore_index, float scale,
                              float *dlogits);
