// rng.h: the counter-based random generator behind dropout, masking and init.
//
// Philox4x32-10 (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3",
// SC'11; the Random123 reference). A draw is a pure function of (seed, counter):
// no state to carry, so any element of any step can be drawn in any order, on
// any thread or device, and a resumed run repeats the uninterrupted one.
//
// Mapping used everywhere in tl (the CUDA kernels MUST use the same one, so the
// CPU and the GPU draw the same dropout masks):
//   key     = { lo32(seed), hi32(seed) }
//   block   = counter >> 2, lane = counter & 3
//   ctr     = { lo32(block), hi32(block), 0, 0 }
//   bits    = philox4x32_10(ctr, key)[lane]
//   uniform = (bits >> 8) * 2^-24            in [0, 1), exactly representable
// So one Philox block serves four consecutive counters. Ops pass
// counter = offset + element index, with offset chosen by the caller (e.g.
// step * stride) so different calls do not reuse numbers.
#pragma once
#include <stdint.h>

#define TL_PHILOX_M0 0xD2511F53u
#define TL_PHILOX_M1 0xCD9E8D57u
#define TL_PHILOX_W0 0x9E3779B9u
#define TL_PHILOX_W1 0xBB67AE85u

// One Philox4x32-10 block: out = bijection of ctr under key. Inline so the
// kernels' loops can vectorise it.
static inline void tl_philox4x32_10(const uint32_t ctr[4], const uint32_t key[2],
                                    uint32_t out[4]) {
  uint32_t c0 = ctr[0], c1 = ctr[1], c2 = ctr[2], c3 = ctr[3];
  uint32_t k0 = key[0], k1 = key[1];
  for (int r = 0; r < 10; r++) {
    // The round: two 32x32->64 products, their halves mixed with the key.
    uint64_t p0 = (uint64_t)TL_PHILOX_M0 * c0;
    uint64_t p1 = (uint64_t)TL_PHILOX_M1 * c2;
    uint32_t n0 = (uint32_t)(p1 >> 32) ^ c1 ^ k0;
    uint32_t n2 = (uint32_t)(p0 >> 32) ^ c3 ^ k1;
    c1 = (uint32_t)p1;
    c3 = (uint32_t)p0;
    c0 = n0;
    c2 = n2;
    // Weyl key schedule between rounds (the bump after the last one is unused).
    k0 += TL_PHILOX_W0;
    k1 += TL_PHILOX_W1;
  }
  out[0] = c0;
  out[1] = c1;
  out[2] = c2;
  out[3] = c3;
}

// 32 random bits to a float in [0, 1): the top 24 bits, so no rounding to 1.
static inline float tl_rng_bits_to_uniform(uint32_t bits) {
  return (float)(bits >> 8) * (1.0f / 16777216.0f);
}

// The uniform float in [0, 1) for (seed, counter), by the mapping above.
float tl_rng_uniform(uint64_t seed, uint64_t counter);

// Fills out[i] = tl_rng_uniform(seed, offset + i) for i < n (OpenMP, one Philox
// block per four counters). out is caller memory.
void tl_rng_fill_uniform(float *out, int64_t n, uint64_t seed, uint64_t offset);
