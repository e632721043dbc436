// rng.c: Philox draws by (seed, counter); see rng.h for the mapping.
#include "core/rng.h"

// The four uniforms of Philox block `block`: lanes 0..3 are counters 4*block+0..3.
static inline void rng_block(uint64_t seed, uint64_t block, float u[4]) {
  const uint32_t key[2] = {(uint32_t)seed, (uint32_t)(seed >> 32)};
  const uint32_t ctr[4] = {(uint32_t)block, (uint32_t)(block >> 32), 0, 0};
  uint32_t bits[4];
  tl_philox4x32_10(ctr, key, bits);
  for (int l = 0; l < 4; l++) u[l] = tl_rng_bits_to_uniform(bits[l]);
}

float tl_rng_uniform(uint64_t seed, uint64_t counter) {
  float u[4];
  rng_block(seed, counter >> 2, u);
  return u[counter & 3];
}

void tl_rng_fill_uniform(float *out, int64_t n, uint64_t seed, uint64_t offset) {
  if (n <= 0) return;
  // Blocks covering counters [offset, offset + n); the first and last may be partial.
  uint64_t first = offset >> 2, last = (offset + (uint64_t)n - 1) >> 2;
  int64_t nblocks = (int64_t)(last - first + 1);
#pragma omp parallel for schedule(static)
  for (int64_t b = 0; b < nblocks; b++) {
    float u[4];
    uint64_t block = first + (uint64_t)b;
    rng_block(seed, block, u);
    for (int l = 0; l < 4; l++) {
      uint64_t c = block * 4 + (uint64_t)l;
      if (c < offset) continue;
      uint64_t i = c - offset;
      if (i < (uint64_t)n) out[i] = u[l];
    }
  }
}
