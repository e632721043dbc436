// test_split.c: the builder's seeded choices on their own: shuffles, split
// assignment by rows, caps and evenly spread partial flows.
#include <criterion/criterion.h>
#include <string.h>

#include "data/split.h"

static const double k811[3] = {0.8, 0.1, 0.1};

Test(split, rng_below_is_uniform_and_seeded) {
  tl_split_rng a, b, c;
  tl_split_rng_seed(&a, 1, 0);
  tl_split_rng_seed(&b, 1, 0);
  tl_split_rng_seed(&c, 1, 1);
  int count[7] = {0}, same = 1, differ = 0;
  for (int i = 0; i < 70000; i++) {
    uint64_t x = tl_split_rng_below(&a, 7), y = tl_split_rng_below(&b, 7);
    same &= x == y;
    differ += x != tl_split_rng_below(&c, 7);
    count[x]++;
  }
  cr_assert(same, "same seed and stream, same draws");
  cr_assert(differ > 50000, "another stream draws differently");
  // 10,000 expected per value; 5 standard deviations is about 480.
  for (int v = 0; v < 7; v++) cr_assert(count[v] > 9500 && count[v] < 10500, "value %d", v);
}

Test(split, shuffle_is_a_permutation) {
  int64_t a[1000];
  for (int i = 0; i < 1000; i++) a[i] = i;
  tl_split_rng r;
  tl_split_rng_seed(&r, 5, 0);
  tl_split_shuffle(a, 1000, &r);
  char seen[1000] = {0};
  int moved = 0;
  for (int i = 0; i < 1000; i++) {
    cr_assert(a[i] >= 0 && a[i] < 1000 && !seen[a[i]]);
    seen[a[i]] = 1;
    moved += a[i] != i;
  }
  cr_assert(moved > 900);
}

Test(split, assign_follows_row_shares) {
  // 20 units of one row: 16 / 2 / 2 exactly.
  int64_t rows[20], order[20];
  uint8_t s[20];
  for (int i = 0; i < 20; i++) rows[i] = 1, order[i] = 19 - i;
  tl_split_assign(rows, order, 20, k811, s);
  int n[3] = {0};
  for (int i = 0; i < 20; i++) n[s[i]]++;
  cr_assert(n[0] == 16 && n[1] == 2 && n[2] == 2);
  // Visiting order decides: the first 16 units visited are train.
  for (int i = 0; i < 16; i++) cr_assert_eq(s[order[i]], 0);

  // Weighted: one big unit of 80 rows then 20 of one row: the big one is
  // train, and the small ones share valid and test.
  int64_t w[21], o[21];
  uint8_t t[21];
  w[0] = 80, o[0] = 0;
  for (int i = 1; i < 21; i++) w[i] = 1, o[i] = i;
  tl_split_assign(w, o, 21, k811, t);
  int rows_in[3] = {0};
  for (int i = 0; i < 21; i++) rows_in[t[i]] += (int)w[i];
  cr_assert(rows_in[0] == 80 && rows_in[1] == 10 && rows_in[2] == 10, "%d %d %d", rows_in[0],
            rows_in[1], rows_in[2]);
}

Test(split, assign_gives_small_classes_every_split) {
  int64_t rows[3] = {5, 5, 5}, order[3] = {0, 1, 2};
  uint8_t s[3];
  tl_split_assign(rows, order, 3, k811, s);
  int n[3] = {0};
  for (int i = 0; i < 3; i++) n[s[i]]++;
  cr_assert(n[0] == 1 && n[1] == 1 && n[2] == 1);
  // Two units cannot fill three splits: no unit moves to a zero-ratio split either.
  const double two[3] = {0.5, 0.5, 0.0};
  tl_split_assign(rows, order, 2, two, s);
  cr_assert(s[0] == 0 && s[1] == 1);
}

Test(split, zero_ratio_split_gets_nothing) {
  const double r[3] = {0.9, 0.1, 0.0};
  int64_t rows[1000], order[1000];
  uint8_t s[1000];
  for (int i = 0; i < 1000; i++) rows[i] = 1 + i % 3, order[i] = i;
  tl_split_assign(rows, order, 1000, r, s);
  for (int i = 0; i < 1000; i++) cr_assert(s[i] < 2);
  int hashed[3] = {0};
  for (uint64_t i = 0; i < 10000; i++) hashed[tl_split_of_hash(tl_split_hash(3, i), r)]++;
  cr_assert_eq(hashed[2], 0);
  cr_assert(hashed[1] > 850 && hashed[1] < 1150, "about a tenth: %d", hashed[1]);
}

Test(split, cap_spreads_rows_over_units) {
  int64_t rows[5] = {10, 30, 10, 10, 10}, order[5] = {1, 0, 2, 3, 4}, keep[5];
  // Cap 45: a limit of 9 rows per unit keeps 45, so every unit stays.
  int64_t kept = tl_split_cap(rows, order, 5, 45, keep);
  cr_assert_eq(kept, 45);
  for (int u = 0; u < 5; u++) cr_assert_eq(keep[u], 9, "unit %d", u);
  // Cap 47: limit 9 (45), then one more from units 1 and 0, the first in order.
  cr_assert_eq(tl_split_cap(rows, order, 5, 47, keep), 47);
  cr_assert(keep[1] == 10 && keep[0] == 10 && keep[2] == 9 && keep[3] == 9 && keep[4] == 9);
  // Cap 60: limit 10 takes the short units whole (40); the long one gives 20.
  cr_assert_eq(tl_split_cap(rows, order, 5, 60, keep), 60);
  cr_assert(keep[1] == 20 && keep[0] == 10 && keep[4] == 10);
  cr_assert_eq(tl_split_cap(rows, order, 5, 0, keep), 70, "cap 0 keeps all");
  cr_assert_eq(tl_split_cap(rows, order, 5, 1000, keep), 70);
}

Test(split, keep_row_spreads_evenly) {
  for (int64_t n = 1; n < 60; n++) {
    for (int64_t keep = 0; keep <= n; keep++) {
      int64_t count = 0, last = -1, max_gap = 0;
      for (int64_t j = 0; j < n; j++) {
        if (!tl_split_keep_row(j, n, keep)) continue;
        count++;
        if (j - last > max_gap) max_gap = j - last;
        last = j;
      }
      cr_assert_eq(count, keep, "n %lld keep %lld", (long long)n, (long long)keep);
      // Kept rows are spread: no gap much wider than n / keep.
      if (keep > 0) cr_assert(max_gap <= n / keep + 1, "n %lld keep %lld", (long long)n,
                              (long long)keep);
    }
  }
}
