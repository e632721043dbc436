// test_spool.c: the builder's temporary rows. Records give back exactly the
// rows encoded (chained bigrams, specials, large ids, rows longer than one
// block), a cut or damaged record is an error, and the bucket shuffle hands
// out every row once, in a seeded order that moves every row anywhere, also
// when buckets must be scattered a second time.
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "data/row_shuffle.h"
#include "data/spool.h"

enum { MAX_LEN = 700, N_ROWS = 40 };

static uint64_t g_state = 88172645463325252u;
static uint32_t next_random(void) {
  g_state ^= g_state << 13;
  g_state ^= g_state >> 7;
  g_state ^= g_state << 17;
  return (uint32_t)g_state;
}

// A row like the tokenizer's: [CLS], runs of chained bigrams from random bytes,
// a [SEP] or an arbitrary id now and then.
static int make_row(int32_t *t) {
  int len = (int)(next_random() % MAX_LEN);
  uint8_t prev = (uint8_t)next_random();
  for (int i = 0; i < len; i++) {
    uint32_t r = next_random();
    if (i == 0) t[i] = 2;
    else if (r % 29 == 0) t[i] = 1;
    else if (r % 31 == 0) t[i] = (int32_t)(next_random() % 65541);
    else {
      uint8_t b = (uint8_t)(r >> 8);
      t[i] = 5 + (prev << 8 | b);
      prev = b;
    }
  }
  return len;
}

Test(spool, rows_come_back_exactly) {
  static int32_t want[N_ROWS][MAX_LEN], got[MAX_LEN];
  static uint8_t buf[N_ROWS * (TL_SPOOL_HEAD + 4 * MAX_LEN)];
  tl_spool_row h[N_ROWS];
  size_t used = 0;
  for (int r = 0; r < N_ROWS; r++) {
    int len = make_row(want[r]);
    h[r] = (tl_spool_row){.flow_id = next_random(), .index_in_flow = r * 1000003LL,
                          .file_index = r, .label = r % 3, .length = len, .a_end = len / 2};
    size_t n = tl_spool_encode(&h[r], want[r], buf + used);
    cr_assert(n <= tl_spool_bound(len) && n == tl_spool_record_size(buf + used));
    used += n;
  }
  size_t at = 0;
  tl_spool_row back;
  for (int r = 0; r < N_ROWS; r++) {
    size_t n = tl_spool_decode(buf + at, used - at, &back, got, MAX_LEN, "tmp");
    cr_assert(n > 0, "row %d: %s", r, tl_last_error());
    cr_assert(memcmp(&back, &h[r], sizeof back) == 0, "row %d header", r);
    cr_assert(memcmp(got, want[r], (size_t)h[r].length * sizeof *got) == 0, "row %d", r);
    at += n;
  }
  cr_assert(at == used);
}

Test(spool, chained_bigrams_take_about_a_byte) {
  static int32_t t[MAX_LEN];
  static uint8_t buf[TL_SPOOL_HEAD + 4 * MAX_LEN];
  t[0] = 2;
  for (int i = 1; i < 600; i++) t[i] = 5 + ((i - 1) % 256 << 8 | i % 256);
  tl_spool_row h = {.length = 600, .a_end = 600};
  size_t size = tl_spool_encode(&h, t, buf);
  // Head, two runs ([CLS]; the first bigram and the 598 chained from it):
  // about a byte per token, where int32 tokens would take 2,400 bytes.
  cr_assert(size < TL_SPOOL_HEAD + 10 + 600, "%zu bytes", size);
}

Test(spool, cut_or_damaged_records_are_errors) {
  static int32_t t[MAX_LEN];
  static uint8_t buf[TL_SPOOL_HEAD + 4 * MAX_LEN];
  int len = 0;
  while (len < 300) len = make_row(t);
  tl_spool_row h = {.length = len, .a_end = len}, back;
  size_t size = tl_spool_encode(&h, t, buf);
  cr_assert(tl_spool_decode(buf, size - 3, &back, t, MAX_LEN, "rows.bucket") == 0);
  cr_assert(strstr(tl_last_error(), "rows.bucket"), "%s", tl_last_error());
  cr_assert(tl_spool_decode(buf, size, &back, t, len - 1, "x") == 0, "longer than max_len");
  buf[TL_SPOOL_HEAD] ^= 0x7f; // the first run's length: the runs no longer add up
  cr_assert(tl_spool_decode(buf, size, &back, t, MAX_LEN, "x") == 0, "run length damaged");
}

// --- the bucket shuffle

typedef struct {
  int64_t n, order[4000];
} drained;

static tl_status collect(const tl_spool_row *h, const int32_t *tokens, void *ctx) {
  drained *d = ctx;
  // Each row carries its number as flow id and as its single token.
  cr_assert(h->length == 1 && tokens[0] == (int32_t)h->flow_id);
  d->order[d->n++] = (int64_t)h->flow_id;
  return TL_OK;
}

static void shuffle_rows(int n, uint64_t seed, int64_t bucket_bytes, drained *out) {
  char dir[] = "/tmp/tl_test_shuffle_XXXXXX";
  cr_assert(mkdtemp(dir));
  tl_row_shuffle *s = tl_row_shuffle_open(dir, seed, 7);
  cr_assert(s, "%s", tl_last_error());
  if (bucket_bytes) tl_row_shuffle_set_bucket_bytes(s, bucket_bytes);
  for (int i = 0; i < n; i++) {
    int32_t tok = i;
    tl_spool_row h = {.flow_id = (uint64_t)i, .length = 1, .a_end = 1};
    cr_assert(tl_row_shuffle_add(s, &h, &tok) == TL_OK);
  }
  out->n = 0;
  cr_assert(tl_row_shuffle_drain(s, 4, collect, out) == TL_OK, "%s", tl_last_error());
  tl_row_shuffle_free(s);
  cr_assert(rmdir(dir) == 0, "bucket files left behind");
}

static void assert_permutation(const drained *d, int n) {
  cr_assert_eq(d->n, n);
  static char seen[4000];
  memset(seen, 0, sizeof seen);
  for (int i = 0; i < n; i++) {
    cr_assert(d->order[i] >= 0 && d->order[i] < n && !seen[d->order[i]]);
    seen[d->order[i]] = 1;
  }
}

Test(row_shuffle, every_row_once_in_a_seeded_order) {
  static drained a, b, c, deep, tiny;
  shuffle_rows(3000, 1, 0, &a);
  shuffle_rows(3000, 1, 0, &b);
  shuffle_rows(3000, 2, 0, &c);
  // Buckets of at most 200 bytes (about 4 rows) are all scattered again.
  shuffle_rows(3000, 1, 200, &deep);
  // A bound below one record: buckets split until each holds one, then stop.
  shuffle_rows(3000, 1, 1, &tiny);
  assert_permutation(&tiny, 3000);
  assert_permutation(&a, 3000);
  assert_permutation(&c, 3000);
  assert_permutation(&deep, 3000);
  cr_assert(memcmp(a.order, b.order, sizeof a.order) == 0, "same seed, same order");
  int same = 0, same_deep = 0;
  for (int i = 0; i < 3000; i++) {
    same += a.order[i] == c.order[i];
    same_deep += a.order[i] == deep.order[i];
  }
  cr_assert(same < 30, "%d rows in the same place under another seed", same);
  // Same first-level buckets (same seed): about one row in a bucket's size
  // (47) keeps its place by chance; the second scatter moves the rest.
  cr_assert(same_deep < 200, "%d rows in the same place after a second scatter", same_deep);
}

Test(row_shuffle, a_row_can_land_anywhere) {
  // Where row 0 ends up over 400 seeds: spread over all four quarters.
  int quarter[4] = {0};
  static drained d;
  for (uint64_t seed = 0; seed < 400; seed++) {
    shuffle_rows(200, seed, seed % 2 ? 100 : 0, &d);
    for (int i = 0; i < 200; i++)
      if (d.order[i] == 0) quarter[i / 50]++;
  }
  // 100 expected in each; 5 standard deviations is about 43.
  for (int q = 0; q < 4; q++)
    cr_assert(quarter[q] > 57 && quarter[q] < 143, "quarter %d: %d", q, quarter[q]);
}
