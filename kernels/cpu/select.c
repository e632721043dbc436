// select.c: gathers, deterministic scatter-adds and concatenation copies.
#include "kernels/cpu/select.h"

#include <string.h>

#define PAR(n) if ((n) >= 16384)
// Columns per band in the scatter-add: 1 KiB of each touched row per thread.
#define BAND 256

void tl_cpu_gather_rows(float *y, const float *x, const int32_t *ids, int64_t n, int64_t C) {
#pragma omp parallel for schedule(static) PAR(n * C)
  for (int64_t i = 0; i < n; i++)
    memcpy(y + i * C, x + (int64_t)ids[i] * C, (size_t)C * sizeof(float));
}

void tl_cpu_scatter_add_rows(float *dx, const float *dy, const int32_t *ids, int64_t n,
                             int64_t C) {
  // Rows may repeat (the same token twice), so threads split columns, not rows.
  int64_t bands = (C + BAND - 1) / BAND;
#pragma omp parallel for schedule(static) PAR(n * C)
  for (int64_t b = 0; b < bands; b++) {
    int64_t c0 = b * BAND, nc = C - c0 < BAND ? C - c0 : BAND;
    for (int64_t i = 0; i < n; i++) {
      float *d = dx + (int64_t)ids[i] * C + c0;
      const float *s = dy + i * C + c0;
      for (int64_t c = 0; c < nc; c++) d[c] += s[c];
    }
  }
}

void tl_cpu_concat(float *y, const float *const *xs, const int64_t *inner, int n,
                   int64_t outer) {
  int64_t total = 0;
  for (int k = 0; k < n; k++) total += inner[k];
#pragma omp parallel for schedule(static) PAR(outer * total)
  for (int64_t o = 0; o < outer; o++) {
    float *row = y + o * total;
    for (int k = 0; k < n; k++) {
      memcpy(row, xs[k] + o * inner[k], (size_t)inner[k] * sizeof(float));
      row += inner[k];
    }
  }
}

void tl_cpu_split_add(float *dx, const float *dy, int64_t outer, int64_t inner, int64_t total,
                      int64_t off) {
#pragma omp parallel for schedule(static) PAR(outer * inner)
  for (int64_t o = 0; o < outer; o++) {
    const float *s = dy + o * total + off;
    float *d = dx + o * inner;
    for (int64_t i = 0; i < inner; i++) d[i] += s[i];
  }
}
