// loss.c: fused softmax cross entropy. Forward keeps only one float per row (its
// logsumexp); backward recomputes the probabilities from it, so the [N, V]
// probability matrix is never stored.
#include "kernels/cpu/loss.h"

#include <math.h>

#include "kernels/cpu/softmax.h"

double tl_cpu_cross_entropy_fwd(const float *logits, const int32_t *targets, float *lse,
                                int64_t N, int64_t V, int ignore_index, int64_t *count) {
  double total = 0;
  int64_t kept = 0;
#pragma omp parallel for schedule(dynamic, 1) reduction(+ : total, kept) if (N * V >= 65536)
  for (int64_t n = 0; n < N; n++) {
    const float *row = logits + n * V;
    lse[n] = tl_cpu_row_logsumexp(row, V);
    if (targets[n] == ignore_index) continue;
    total += (double)lse[n] - row[targets[n]];
    kept++;
  }
  *count = kept;
  return total;
}

void tl_cpu_cross_entropy_bwd(const float *logits, const int32_t *targets, const float *lse,
                              int64_t N, int64_t V, int ignore_index, float scale,
                              float *dlogits) {
#pragma omp parallel for schedule(dynamic, 1) if (N * V >= 65536)
  for (int64_t n = 0; n < N; n++) {
    if (targets[n] == ignore_index) continue;
    const float *row = logits + n * V;
    float *drow = dlogits + n * V;
    tl_cpu_row_exp_add(row, lse[n], scale, drow, V);
    drow[targets[n]] -= scale;
  }
}
