// Loader and masking tests: masking rates and exclusions against binomial
// bounds, determinism by (seed, draw); per-epoch shuffles that cover every row
// once; exact replay after tell/seek (what resume relies on); row cutting.
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "tests/train/synth_shards.h"
#include "train/loader.h"

// A batch shaped like pre-training rows: [CLS] a.. [SEP] b.. [SEP] then padding,
// with an occasional [UNK] inside.
typedef struct {
  int B, T;
  int32_t tokens[64 * 128], segments[64 * 128], key_mask[64 * 128];
  int32_t lengths[64], labels[64], mask_pos[64 * 128], mask_target[64 * 128];
  int64_t flow_ids[64];
} fake_batch;

static void fake_rows(fake_batch *f, tl_batch *b, uint64_t seed, int32_t vocab) {
  f->B = 64, f->T = 128;
  uint64_t s = seed * 0x9E3779B97F4A7C15ULL + 3;
  for (int r = 0; r < f->B; r++) {
    s = s * 6364136223846793005ULL + 1;
    int len = 10 + (int)((s >> 33) % 119); // 10 .. 128
    f->lengths[r] = len;
    for (int t = 0; t < f->T; t++) {
      s = s * 6364136223846793005ULL + 1;
      int32_t id = TL_TOKEN_FIRST + (int32_t)((s >> 33) % (uint64_t)(vocab - TL_TOKEN_FIRST));
      if ((s >> 20) % 50 == 0) id = TL_TOKEN_UNK;
      if (t == 0) id = TL_TOKEN_CLS;
      if (t == len / 2 || t == len - 1) id = TL_TOKEN_SEP;
      if (t >= len) id = TL_TOKEN_PAD;
      f->tokens[r * f->T + t] = id;
    }
  }
  *b = (tl_batch){.B = f->B, .T = f->T, .tokens = f->tokens, .segments = f->segments,
                  .key_mask = f->key_mask, .lengths = f->lengths, .labels = f->labels,
                  .flow_ids = f->flow_ids, .mask_pos = f->mask_pos,
                  .mask_target = f->mask_target};
}

// |observed - n p| within 5 standard deviations of a binomial(n, p).
static void assert_binomial(long observed, long n, double p, const char *what) {
  double mean = n * p, sd = sqrt(n * p * (1 - p));
  cr_assert(fabs(observed - mean) <= 5 * sd, "%s: %ld of %ld, expected %.1f +- %.1f", what,
            observed, n, mean, 5 * sd);
}

Test(mask, rates_and_exclusions) {
  const int32_t vocab = 1000;
  static fake_batch f, orig;
  long eligible = 0, chosen = 0, as_mask = 0, as_random = 0, as_kept = 0;
  for (int draw = 0; draw < 20; draw++) {
    tl_batch b;
    fake_rows(&f, &b, (uint64_t)draw, vocab);
    orig = f;
    int n = tl_mbm_mask(&b, 0.15, vocab, 1234, (uint64_t)draw);
    cr_assert_eq(n, b.n_masked);

    // Which positions may be masked: real (t < length) ordinary tokens.
    static bool is_masked[64 * 128];
    memset(is_masked, 0, sizeof is_masked);
    for (int i = 0; i < n; i++) {
      int pos = b.mask_pos[i], r = pos / b.T, t = pos % b.T;
      cr_assert(i == 0 || pos > b.mask_pos[i - 1], "positions ascending");
      cr_assert_lt(t, orig.lengths[r], "padding masked at %d", pos);
      cr_assert_geq(orig.tokens[pos], TL_TOKEN_FIRST, "special %d masked", orig.tokens[pos]);
      cr_assert_eq(b.mask_target[i], orig.tokens[pos], "target is the original id");
      is_masked[pos] = true;
      int32_t now = b.tokens[pos];
      if (now == TL_TOKEN_MASK) as_mask++;
      else if (now == orig.tokens[pos]) as_kept++;
      else as_random++;
      cr_assert(now == TL_TOKEN_MASK || (now >= TL_TOKEN_FIRST && now < vocab), "id %d", now);
    }
    for (int pos = 0; pos < b.B * b.T; pos++) {
      int r = pos / b.T, t = pos % b.T;
      if (t < orig.lengths[r] && orig.tokens[pos] >= TL_TOKEN_FIRST) eligible++;
      if (!is_masked[pos]) cr_assert_eq(b.tokens[pos], orig.tokens[pos], "unmasked changed");
    }
    chosen += n;
  }
  // A random id equal to the original (1 in 995) counts as kept: fold it in.
  double p_same = 1.0 / (vocab - TL_TOKEN_FIRST);
  assert_binomial(chosen, eligible, 0.15, "chosen");
  assert_binomial(as_mask, chosen, 0.8, "[MASK]");
  assert_binomial(as_random, chosen, 0.1 * (1 - p_same), "random");
  assert_binomial(as_kept, chosen, 0.1 + 0.1 * p_same, "kept");
}

Test(mask, deterministic_by_seed_and_draw) {
  static fake_batch f1, f2, f3;
  tl_batch a, b, c;
  fake_rows(&f1, &a, 5, 65541);
  fake_rows(&f2, &b, 5, 65541);
  fake_rows(&f3, &c, 5, 65541);
  tl_mbm_mask(&a, 0.15, 65541, 99, 7);
  tl_mbm_mask(&b, 0.15, 65541, 99, 7);
  tl_mbm_mask(&c, 0.15, 65541, 99, 8);
  cr_assert_eq(a.n_masked, b.n_masked);
  cr_assert_arr_eq(f1.tokens, f2.tokens, sizeof f1.tokens);
  cr_assert_arr_eq(f1.mask_pos, f2.mask_pos, a.n_masked * sizeof(int32_t));
  cr_assert(a.n_masked != c.n_masked || memcmp(f1.mask_pos, f3.mask_pos, a.n_masked * 4),
            "another draw masks other positions");
  // Derived seeds differ by purpose and by seed.
  cr_assert_neq(tl_seed_derive(1, "mask"), tl_seed_derive(1, "dropout"));
  cr_assert_neq(tl_seed_derive(1, "mask"), tl_seed_derive(2, "mask"));
  cr_assert_eq(tl_seed_derive(1, "mask"), tl_seed_derive(1, "mask"));
}

// --- loader over a real (synthetic) shard set

static char g_dir[64];

static void make_set(void) {
  snprintf(g_dir, sizeof g_dir, "/tmp/tl_test_loader_XXXXXX");
  cr_assert_not_null(mkdtemp(g_dir));
  cr_assert_eq(tl_test_make_pretrain_shards(g_dir, 40, 6, 64, 50, 11), TL_OK, "%s",
               tl_last_error());
}

static void remove_set(void) {
  char cmd[128];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
  if (system(cmd) != 0) fprintf(stderr, "cannot remove %s\n", g_dir);
}

TestSuite(loader, .init = make_set, .fini = remove_set);

// A row's identity: hash of its tokens and flow id.
static uint64_t row_hash(const tl_batch *b, int r) {
  uint64_t h = 1469598103934665603ULL ^ (uint64_t)b->flow_ids[r];
  for (int t = 0; t < b->T; t++) h = (h ^ (uint32_t)b->tokens[r * b->T + t]) * 1099511628211ULL;
  return h;
}

static int cmp_u64(const void *a, const void *b) {
  uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
  return (x > y) - (x < y);
}

// Reads one epoch's row hashes (n rows) in the order handed out.
static uint64_t *epoch_hashes(tl_loader *l, int64_t n) {
  uint64_t *h = malloc((size_t)n * sizeof *h);
  int64_t got = 0;
  while (got < n) {
    tl_batch b;
    cr_assert_eq(tl_loader_next(l, &b), TL_OK, "%s", tl_last_error());
    for (int r = 0; r < b.B; r++) h[got++] = row_hash(&b, r);
  }
  cr_assert_eq(got, n);
  return h;
}

Test(loader, epochs_cover_every_row_in_new_orders) {
  tl_loader_opts o = {.dir = g_dir, .split = "train", .batch_size = 7, .seed = 3,
                      .shuffle = true, .drop_last = false};
  tl_loader *l = tl_loader_open(&o);
  cr_assert_not_null(l, "%s", tl_last_error());
  int64_t n = tl_loader_rows(l);
  cr_assert_gt(n, 100, "the set has %lld train rows", (long long)n);
  cr_assert_str_eq(tl_loader_task(l), "pretrain");

  // The stored order, for reference.
  tl_loader_opts plain = o;
  plain.shuffle = false;
  tl_loader *ref = tl_loader_open(&plain);
  uint64_t *stored = epoch_hashes(ref, n);
  tl_loader_close(ref);

  uint64_t *e0 = epoch_hashes(l, n), *e1 = epoch_hashes(l, n);
  cr_assert_eq(tl_loader_tell(l).epoch, 1);
  cr_assert_neq(memcmp(e0, e1, (size_t)n * 8), 0, "epochs are shuffled differently");
  cr_assert_neq(memcmp(e0, stored, (size_t)n * 8), 0, "shuffled at all");
  qsort(e0, (size_t)n, 8, cmp_u64);
  qsort(e1, (size_t)n, 8, cmp_u64);
  qsort(stored, (size_t)n, 8, cmp_u64);
  cr_assert_arr_eq(e0, stored, (size_t)n * 8, "epoch 0 is a permutation of the split");
  cr_assert_arr_eq(e1, stored, (size_t)n * 8, "epoch 1 is a permutation of the split");
  free(e0), free(e1), free(stored);
  tl_loader_close(l);
}

Test(loader, tell_seek_replays_exactly) {
  tl_loader_opts o = {.dir = g_dir, .split = "train", .batch_size = 16, .seed = 5,
                      .shuffle = true, .drop_last = true};
  tl_loader *l = tl_loader_open(&o);
  cr_assert_not_null(l, "%s", tl_last_error());
  int64_t per_epoch = tl_loader_batches_per_epoch(l);
  cr_assert_eq(per_epoch, tl_loader_rows(l) / 16);

  // Stop just before an epoch boundary, so the replay crosses it.
  tl_batch b;
  for (int64_t i = 0; i < per_epoch - 1; i++) tl_loader_next(l, &b);
  tl_loader_pos pos = tl_loader_tell(l);
  uint64_t first[4][16];
  for (int k = 0; k < 4; k++) {
    cr_assert_eq(tl_loader_next(l, &b), TL_OK);
    cr_assert_eq(b.B, 16, "drop_last: full batches only");
    for (int r = 0; r < 16; r++) first[k][r] = row_hash(&b, r);
  }
  cr_assert_eq(tl_loader_tell(l).epoch, 1);

  // A fresh loader seeked to the saved position hands out the same batches.
  tl_loader *l2 = tl_loader_open(&o);
  tl_loader_seek(l2, pos);
  for (int k = 0; k < 4; k++) {
    cr_assert_eq(tl_loader_next(l2, &b), TL_OK);
    for (int r = 0; r < 16; r++) cr_assert_eq(row_hash(&b, r), first[k][r], "batch %d", k);
  }
  tl_loader_close(l2);
  tl_loader_close(l);
}

Test(loader, rows_cut_to_seq_len_and_key_mask) {
  tl_loader_opts o = {.dir = g_dir, .split = "valid", .batch_size = 5, .seq_len = 16,
                      .seed = 1, .shuffle = false};
  tl_loader *l = tl_loader_open(&o);
  cr_assert_not_null(l, "%s", tl_last_error());
  tl_loader_opts full = o;
  full.seq_len = 0;
  tl_loader *lf = tl_loader_open(&full);
  cr_assert_eq(tl_loader_seq_len(lf), 64);
  tl_batch b, bf;
  cr_assert_eq(tl_loader_next(l, &b), TL_OK);
  cr_assert_eq(tl_loader_next(lf, &bf), TL_OK);
  cr_assert_eq(b.T, 16);
  for (int r = 0; r < b.B; r++) {
    cr_assert_eq(b.lengths[r], bf.lengths[r] < 16 ? bf.lengths[r] : 16);
    cr_assert_arr_eq(b.tokens + r * 16, bf.tokens + r * 64, 16 * sizeof(int32_t));
    cr_assert_arr_eq(b.segments + r * 16, bf.segments + r * 64, 16 * sizeof(int32_t));
    for (int t = 0; t < 16; t++) cr_assert_eq(b.key_mask[r * 16 + t], t < b.lengths[r]);
    cr_assert_eq(bf.tokens[r * 64], TL_TOKEN_CLS);
  }
  tl_loader_close(l);
  tl_loader_close(lf);

  // Asking for longer rows than the shards hold is an error with a reason.
  o.seq_len = 65;
  cr_assert_null(tl_loader_open(&o));
  cr_assert(strstr(tl_last_error(), "seq_len"), "%s", tl_last_error());
}
