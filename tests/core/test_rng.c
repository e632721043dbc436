// Philox4x32-10 and tl's (seed, counter) -> uniform mapping.
#include <criterion/criterion.h>
#include <math.h>

#include "core/rng.h"

// Known-answer vectors for Philox4x32 with 10 rounds, from the Random123
// distribution (tests/kat_vectors): counter[4], key[2] -> output[4].
Test(rng, philox4x32_10_known_answers) {
  static const uint32_t kat[3][10] = {
      {0, 0, 0, 0, 0, 0, 0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8},
      {0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff, 0x408f276d,
       0x41c83b0e, 0xa20bc7c6, 0x6d5451fd},
      {0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344, 0xa4093822, 0x299f31d0, 0xd16cfe09,
       0x94fdcceb, 0x5001e420, 0x24126ea1},
  };
  for (int v = 0; v < 3; v++) {
    uint32_t out[4];
    tl_philox4x32_10(&kat[v][0], &kat[v][4], out);
    for (int l = 0; l < 4; l++)
      cr_assert_eq(out[l], kat[v][6 + l], "vector %d word %d: %08x, expected %08x", v, l,
                   out[l], kat[v][6 + l]);
  }
}

// tl's mapping (rng.h): key = seed, block = counter / 4, lane = counter % 4.
// Expected bits computed independently with the randomgen Python package:
//   Philox(number=4, width=32, key=seed, counter=block - 1).random_raw(4)[lane]
// (randomgen increments its counter before each block, hence block - 1).
Test(rng, seed_counter_mapping) {
  static const struct { uint64_t seed, counter; uint32_t bits; } v[] = {
      {0x0ull, 0x0ull, 0x6627e8d5u},
      {0x0ull, 0x1ull, 0xe169c58du},
      {0x0ull, 0x3ull, 0x9b00dbd8u},
      {0x0ull, 0x4ull, 0xf8e4cca4u},
      {0x123456789abcdefull, 0x7ull, 0xb299da3fu},
      {0x123456789abcdefull, 0x400000005ull, 0x5fe720cbu},
      {0x2aull, 0xf4243ull, 0x9973827cu},
      {0xffffffffffffffffull, 0xfffffffffffffffeull, 0xff3b8f4bu},
  };
  for (size_t k = 0; k < sizeof v / sizeof *v; k++) {
    // The top 24 bits scaled by 2^-24: exact in f32, so compare exactly.
    float expected = (float)(v[k].bits >> 8) / 16777216.0f;
    float got = tl_rng_uniform(v[k].seed, v[k].counter);
    cr_assert_eq(got, expected, "case %zu: %.9g, expected %.9g", k, got, expected);
  }
}

// The bulk fill equals the scalar function at every element, for offsets that
// start and end mid-block, and stays in [0, 1).
Test(rng, fill_matches_scalar) {
  static const int64_t sizes[] = {1, 2, 7, 13, 31, 1001, 40000};
  static const uint64_t offsets[] = {0, 1, 3, 5, 1ull << 40};
  float *buf = malloc(40000 * sizeof(float));
  for (size_t s = 0; s < sizeof sizes / sizeof *sizes; s++)
    for (size_t o = 0; o < sizeof offsets / sizeof *offsets; o++) {
      tl_rng_fill_uniform(buf, sizes[s], 99, offsets[o]);
      for (int64_t i = 0; i < sizes[s]; i++) {
        cr_assert_eq(buf[i], tl_rng_uniform(99, offsets[o] + (uint64_t)i),
                     "n %ld offset %lu element %ld", (long)sizes[s],
                     (unsigned long)offsets[o], (long)i);
        cr_assert(buf[i] >= 0.0f && buf[i] < 1.0f);
      }
    }
  free(buf);
}

// Sanity of the distribution: mean 1/2 and variance 1/12 over 2^18 draws. The
// standard error of the mean is 0.289/512 = 5.6e-4, so 3e-3 is over 5 sigma.
Test(rng, moments) {
  const int64_t n = 1 << 18;
  float *buf = malloc((size_t)n * sizeof(float));
  tl_rng_fill_uniform(buf, n, 2026, 12345);
  double s = 0, s2 = 0;
  for (int64_t i = 0; i < n; i++) s += buf[i], s2 += (double)buf[i] * buf[i];
  double mean = s / n, var = s2 / n - mean * mean;
  cr_assert(fabs(mean - 0.5) < 3e-3, "mean %g", mean);
  cr_assert(fabs(var - 1.0 / 12) < 3e-3, "variance %g", var);
  // Different seeds give different streams.
  cr_assert_neq(tl_rng_uniform(1, 0), tl_rng_uniform(2, 0));
  free(buf);
}
