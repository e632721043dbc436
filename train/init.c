// init.c: seeded normal and constant fills for parameter initialisation.
#include "train/init.h"

#include <math.h>

#include "core/rng.h"

void tl_fill_normal(tl_tensor *t, float std, uint64_t seed, uint64_t base) {
  TL_ASSERT(t->dtype == TL_F32 && tl_is_contiguous(t));
  float *x = t->data;
  int64_t n = tl_numel(t);
  for (int64_t i = 0; i < n; i++) {
    // 1 - u keeps the logarithm's argument in (0, 1].
    uint64_t c = 2 * (base + (uint64_t)i);
    double u1 = 1.0 - tl_rng_uniform(seed, c), u2 = tl_rng_uniform(seed, c + 1);
    x[i] = (float)(std * sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
  }
}

void tl_fill_const(tl_tensor *t, float value) {
  TL_ASSERT(t->dtype == TL_F32 && tl_is_contiguous(t));
  float *x = t->data;
  for (int64_t i = 0; i < tl_numel(t); i++) x[i] = value;
}
