// split.h: the dataset builder's seeded choices, kept apart so tests can check
// them alone: a small generator, shuffles, assignment of shuffled units (flows,
// files or rows) to train/valid/test by their row counts, and per-class caps.
#pragma once
#include <stdint.h>

// splitmix64: tiny, fast, and good enough for shuffles; a (seed, stream) pair
// gives an independent sequence per purpose (class, split, pairing).
typedef struct {
  uint64_t s;
} tl_split_rng;

void tl_split_rng_seed(tl_split_rng *r, uint64_t seed, uint64_t stream);
uint64_t tl_split_rng_next(tl_split_rng *r);
// Uniform in [0, n), n > 0, without modulo bias.
uint64_t tl_split_rng_below(tl_split_rng *r, uint64_t n);
// A 64-bit hash of (seed, x): the same inputs give the same value on every run.
uint64_t tl_split_hash(uint64_t seed, uint64_t x);
// Fisher-Yates shuffle of a[n].
void tl_split_shuffle(int64_t *a, int64_t n, tl_split_rng *r);

// The split a hash value falls in for the ratios (normalised): the first split
// whose cumulative share exceeds hash / 2^64. Used where units must get their
// split when first seen (pre-training pairs), so it is exact only on average.
int tl_split_of_hash(uint64_t hash, const double ratio[3]);

// Assigns n units, visited in order[] (a permutation of 0..n-1), to splits:
// a unit goes to the split whose share of the ratios contains the midpoint of
// its cumulative row interval, so row proportions follow the ratios. Then, when
// n is at least the number of splits with a positive ratio, every such split
// that got nothing takes one unit from the largest split. Writes split_of[unit].
void tl_split_assign(const int64_t *rows, const int64_t *order, int64_t n, const double ratio[3],
                     uint8_t *split_of);

// Per-class cap: every unit (flow or file) gives at most the same number of rows,
// the largest limit that fits under cap; the rows still free go one each to
// units with more, in order[]. So a capped class keeps as many flows as it can.
// Writes keep[unit] (rows kept) and returns the total kept. cap <= 0 keeps all.
int64_t tl_split_cap(const int64_t *rows, const int64_t *order, int64_t n, int64_t cap,
                     int64_t *keep);

// Whether row j (from 0) of a unit with n rows is one of the keep rows kept:
// they are spread evenly over the unit (all of them when keep == n).
static inline int tl_split_keep_row(int64_t j, int64_t n, int64_t keep) {
  return (j + 1) * keep / n > j * keep / n;
}
