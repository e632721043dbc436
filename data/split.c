// split.c: seeded shuffles, split assignment and caps (see split.h).
#include "data/split.h"

#include "core/log.h"

static uint64_t splitmix(uint64_t *s) {
  uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

void tl_split_rng_seed(tl_split_rng *r, uint64_t seed, uint64_t stream) {
  // Two rounds so that nearby (seed, stream) pairs start far apart.
  uint64_t s = seed;
  r->s = splitmix(&s) ^ (stream * 0xd1b54a32d192ed03ULL);
  splitmix(&r->s);
}

uint64_t tl_split_rng_next(tl_split_rng *r) { return splitmix(&r->s); }

uint64_t tl_split_rng_below(tl_split_rng *r, uint64_t n) {
  TL_ASSERT(n > 0);
  // Reject the top sliver that a plain modulo would favour.
  uint64_t limit = UINT64_MAX - UINT64_MAX % n;
  uint64_t x;
  do x = tl_split_rng_next(r);
  while (x >= limit);
  return x % n;
}

uint64_t tl_split_hash(uint64_t seed, uint64_t x) {
  tl_split_rng r;
  tl_split_rng_seed(&r, seed, x);
  return tl_split_rng_next(&r);
}

void tl_split_shuffle(int64_t *a, int64_t n, tl_split_rng *r) {
  for (int64_t i = n - 1; i > 0; i--) {
    int64_t j = (int64_t)tl_split_rng_below(r, (uint64_t)i + 1);
    int64_t t = a[i];
    a[i] = a[j];
    a[j] = t;
  }
}

// Cumulative bounds of the normalised ratios: bound[s] is where split s ends.
static void ratio_bounds(const double ratio[3], double bound[3]) {
  double sum = ratio[0] + ratio[1] + ratio[2];
  TL_ASSERTF(sum > 0, "split ratios must not all be zero");
  bound[0] = ratio[0] / sum;
  bound[1] = (ratio[0] + ratio[1]) / sum;
  bound[2] = 1.0;
  // Rounding must not leave a sliver for a split whose ratio is zero.
  if (ratio[2] <= 0) bound[1] = 1.0;
  if (ratio[1] <= 0 && ratio[2] <= 0) bound[0] = 1.0;
}

int tl_split_of_hash(uint64_t hash, const double ratio[3]) {
  double bound[3];
  ratio_bounds(ratio, bound);
  double u = (double)(hash >> 11) * 0x1.0p-53;
  for (int s = 0; s < 2; s++)
    if (u < bound[s] && ratio[s] > 0) return s;
  return ratio[2] > 0 ? 2 : (ratio[1] > 0 ? 1 : 0);
}

// Moves one unit into each positive-ratio split that got none, taking it from
// the split with the most units, when there are units enough to go round.
static void fill_empty_splits(const int64_t *order, int64_t n, const double ratio[3],
                              uint8_t *split_of) {
  int64_t count[3] = {0, 0, 0};
  int wanted = 0;
  for (int64_t i = 0; i < n; i++) count[split_of[i]]++;
  for (int s = 0; s < 3; s++) wanted += ratio[s] > 0;
  if (n < wanted) return;
  for (int s = 2; s >= 0; s--) {
    if (ratio[s] <= 0 || count[s] > 0) continue;
    int big = 0;
    for (int d = 1; d < 3; d++)
      if (count[d] > count[big]) big = d;
    // The donor's last unit in visiting order: the one nearest the boundary.
    for (int64_t i = n - 1; i >= 0; i--) {
      if (split_of[order[i]] != big) continue;
      split_of[order[i]] = (uint8_t)s;
      count[big]--;
      count[s]++;
      break;
    }
  }
}

void tl_split_assign(const int64_t *rows, const int64_t *order, int64_t n, const double ratio[3],
                     uint8_t *split_of) {
  double bound[3];
  ratio_bounds(ratio, bound);
  int64_t total = 0;
  for (int64_t i = 0; i < n; i++) total += rows[i];

  // A unit belongs where the middle of its rows falls on the [0, 1) line.
  int64_t before = 0;
  for (int64_t i = 0; i < n; i++) {
    int64_t u = order[i];
    double mid = total > 0 ? (before + 0.5 * rows[u]) / (double)total : (i + 0.5) / n;
    int s = 0;
    while (s < 2 && (mid >= bound[s] || ratio[s] <= 0)) s++;
    split_of[u] = (uint8_t)s;
    before += rows[u];
  }
  fill_empty_splits(order, n, ratio, split_of);
}

// Rows kept when every unit gives at most limit rows.
static int64_t kept_under(const int64_t *rows, int64_t n, int64_t limit) {
  int64_t kept = 0;
  for (int64_t i = 0; i < n; i++) kept += rows[i] < limit ? rows[i] : limit;
  return kept;
}

int64_t tl_split_cap(const int64_t *rows, const int64_t *order, int64_t n, int64_t cap,
                     int64_t *keep) {
  int64_t total = 0, longest = 0;
  for (int64_t i = 0; i < n; i++) {
    total += rows[i];
    if (rows[i] > longest) longest = rows[i];
  }
  if (cap <= 0 || total <= cap) {
    for (int64_t i = 0; i < n; i++) keep[i] = rows[i];
    return total;
  }
  // Water-filling: the largest per-unit limit that fits under the cap, so that
  // as many flows as possible are represented (a few long flows taken whole
  // would leave too few flows to split by flow).
  int64_t lo = 0, hi = longest;
  while (lo < hi) {
    int64_t mid = lo + (hi - lo + 1) / 2;
    if (kept_under(rows, n, mid) <= cap) lo = mid;
    else hi = mid - 1;
  }
  int64_t kept = 0;
  for (int64_t i = 0; i < n; i++) kept += keep[i] = rows[i] < lo ? rows[i] : lo;
  // The remainder, one more row each from the units that have more, in order.
  for (int64_t i = 0; i < n && kept < cap; i++) {
    int64_t u = order[i];
    if (keep[u] < rows[u]) keep[u]++, kept++;
  }
  return kept;
}
