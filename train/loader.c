// loader.c: shuffled batches from a shard split, with a resumable position,
// and Philox-keyed dynamic masking.
#include "train/loader.h"

#include <string.h>

#include "core/rng.h"
#include "data/shards.h"

struct tl_loader {
  tl_shards *shards;
  tl_loader_opts opts;
  char split[16];
  int S, T;            // the shards' row length, and the rows' length handed out
  int64_t rows;
  int64_t *order;      // [rows] this epoch's row order
  int64_t order_epoch; // the epoch order holds (-1: none yet)
  tl_loader_pos pos;
  // Batch buffers (tokens and segments hold S per row before cutting to T).
  int32_t *tokens, *segments, *key_mask, *lengths, *labels, *mask_pos, *mask_target;
  int64_t *flow_ids;
};

tl_loader *tl_loader_open(const tl_loader_opts *opts) {
  TL_ASSERT(opts->batch_size > 0 && opts->seq_len >= 0);
  tl_shards *s = tl_shards_open(opts->dir, opts->split);
  if (!s) return NULL;

  // The split must give at least one batch, and rows can only be cut, not grown.
  int64_t rows = tl_shards_rows(s);
  int S = tl_shards_seq_len(s);
  int T = opts->seq_len ? opts->seq_len : S;
  const char *why = NULL;
  if (rows == 0) why = "has no rows";
  else if (opts->drop_last && rows < opts->batch_size) why = "has fewer rows than one batch";
  else if (T > S) why = "has rows shorter than data.seq_len";
  if (why) {
    tl_set_error("%s: split '%s' %s (%lld rows of %d tokens; batch %d, seq_len %d)", opts->dir,
                 opts->split, why, (long long)rows, S, opts->batch_size, T);
    tl_shards_close(s);
    return NULL;
  }

  tl_loader *l = tl_xcalloc(1, sizeof *l);
  l->shards = s;
  l->opts = *opts;
  snprintf(l->split, sizeof l->split, "%s", opts->split);
  l->opts.split = l->split;
  l->opts.dir = NULL; // not kept: the caller's string
  l->S = S;
  l->T = T;
  l->rows = rows;
  l->order = tl_xmalloc((size_t)rows * sizeof *l->order);
  l->order_epoch = -1;
  size_t B = (size_t)opts->batch_size;
  l->tokens = tl_xmalloc(B * S * sizeof(int32_t));
  l->segments = tl_xmalloc(B * S * sizeof(int32_t));
  l->key_mask = tl_xmalloc(B * T * sizeof(int32_t));
  l->mask_pos = tl_xmalloc(B * T * sizeof(int32_t));
  l->mask_target = tl_xmalloc(B * T * sizeof(int32_t));
  l->lengths = tl_xmalloc(B * sizeof(int32_t));
  l->labels = tl_xmalloc(B * sizeof(int32_t));
  l->flow_ids = tl_xmalloc(B * sizeof(int64_t));
  return l;
}

void tl_loader_close(tl_loader *l) {
  if (!l) return;
  tl_shards_close(l->shards);
  free(l->order);
  free(l->tokens);
  free(l->segments);
  free(l->key_mask);
  free(l->mask_pos);
  free(l->mask_target);
  free(l->lengths);
  free(l->labels);
  free(l->flow_ids);
  free(l);
}

// Makes l->order the order of epoch (a pure function of seed and epoch).
static void ensure_order(tl_loader *l, int64_t epoch) {
  if (l->order_epoch == epoch) return;
  if (l->opts.shuffle) {
    tl_shards_order(l->rows, tl_shards_chunk_rows(l->shards), l->opts.seed, (uint64_t)epoch,
                    l->order);
  } else {
    for (int64_t i = 0; i < l->rows; i++) l->order[i] = i;
  }
  l->order_epoch = epoch;
}

// Rows were read S tokens apart; keep the first T of each, in place.
static void cut_rows(int32_t *x, int n, int S, int T) {
  if (T == S) return;
  for (int b = 1; b < n; b++) memmove(x + (size_t)b * T, x + (size_t)b * S, T * sizeof *x);
}

tl_status tl_loader_next(tl_loader *l, tl_batch *b) {
  int B = l->opts.batch_size, T = l->T;

  // End of the epoch: the whole split handed out, or (drop_last) less than a batch left.
  int64_t left = l->rows - l->pos.cursor;
  if (left <= 0 || (l->opts.drop_last && left < B)) {
    l->pos.epoch++;
    l->pos.cursor = 0;
    left = l->rows;
  }
  ensure_order(l, l->pos.epoch);
  int n = left < B ? (int)left : B;

  // Read the rows of this batch in the epoch's order.
  tl_shard_rows out = {.tokens = l->tokens, .segments = l->segments, .lengths = l->lengths,
                       .labels = l->labels, .flow_ids = l->flow_ids};
  if (tl_shards_read_rows(l->shards, l->order + l->pos.cursor, n, &out) != TL_OK)
    return TL_ERR;
  l->pos.cursor += n;

  // Cut to T tokens and mark the real positions for attention.
  cut_rows(l->tokens, n, l->S, T);
  cut_rows(l->segments, n, l->S, T);
  for (int r = 0; r < n; r++) {
    if (l->lengths[r] > T) l->lengths[r] = T;
    for (int t = 0; t < T; t++) l->key_mask[(size_t)r * T + t] = t < l->lengths[r];
  }

  *b = (tl_batch){.B = n, .T = T, .tokens = l->tokens, .segments = l->segments,
                  .key_mask = l->key_mask, .lengths = l->lengths, .labels = l->labels,
                  .flow_ids = l->flow_ids, .n_masked = 0, .mask_pos = l->mask_pos,
                  .mask_target = l->mask_target};
  return TL_OK;
}

tl_loader_pos tl_loader_tell(const tl_loader *l) { return l->pos; }

void tl_loader_seek(tl_loader *l, tl_loader_pos pos) {
  TL_ASSERT(pos.epoch >= 0 && pos.cursor >= 0 && pos.cursor <= l->rows);
  l->pos = pos;
}

int64_t tl_loader_rows(const tl_loader *l) { return l->rows; }
int tl_loader_seq_len(const tl_loader *l) { return l->T; }
int64_t tl_loader_batches_per_epoch(const tl_loader *l) {
  int64_t B = l->opts.batch_size;
  return l->opts.drop_last ? l->rows / B : (l->rows + B - 1) / B;
}
int32_t tl_loader_vocab_size(const tl_loader *l) { return tl_shards_vocab_size(l->shards); }
const char *tl_loader_task(const tl_loader *l) { return tl_shards_task(l->shards); }
int tl_loader_n_labels(const tl_loader *l) { return tl_shards_n_labels(l->shards); }
const char *tl_loader_label_name(const tl_loader *l, int label) {
  return tl_shards_label_name(l->shards, label);
}

// ---------------------------------------------------------------------------
// Seeds and masking.

// splitmix64's finaliser: a bijection that spreads every input bit.
static uint64_t mix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ULL;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ULL;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBULL;
  return x ^ (x >> 31);
}

uint64_t tl_seed_derive(uint64_t seed, const char *purpose) {
  // FNV-1a of the purpose, mixed with the seed.
  uint64_t h = 0xCBF29CE484222325ULL;
  for (const char *c = purpose; *c; c++) h = (h ^ (uint8_t)*c) * 0x100000001B3ULL;
  return mix64(seed ^ mix64(h));
}

int tl_mbm_mask(tl_batch *b, double prob, int32_t vocab, uint64_t seed, uint64_t draw) {
  TL_ASSERT(vocab > TL_TOKEN_FIRST && prob >= 0 && prob <= 1);
  const uint32_t key[2] = {(uint32_t)seed, (uint32_t)(seed >> 32)};
  const float p = (float)prob;
  const int32_t n_ordinary = vocab - TL_TOKEN_FIRST;
  int n = 0;
  for (int r = 0; r < b->B; r++) {
    for (int t = 0; t < b->lengths[r]; t++) {
      int32_t pos = r * b->T + t;
      int32_t id = b->tokens[pos];
      if (id < TL_TOKEN_FIRST) continue; // specials are never masked

      // One Philox block per position: lane 0 chooses, 1 picks the kind, 2 the id.
      uint64_t block = (draw << 32) + (uint64_t)pos;
      const uint32_t ctr[4] = {(uint32_t)block, (uint32_t)(block >> 32), 0, 0};
      uint32_t bits[4];
      tl_philox4x32_10(ctr, key, bits);
      if (tl_rng_bits_to_uniform(bits[0]) >= p) continue;

      b->mask_pos[n] = pos;
      b->mask_target[n++] = id;
      float kind = tl_rng_bits_to_uniform(bits[1]);
      if (kind < 0.8f) {
        b->tokens[pos] = TL_TOKEN_MASK;
      } else if (kind < 0.9f) {
        int32_t k = (int32_t)(tl_rng_bits_to_uniform(bits[2]) * (float)n_ordinary);
        b->tokens[pos] = TL_TOKEN_FIRST + (k < n_ordinary ? k : n_ordinary - 1);
      } // else: kept as it is, but still predicted
    }
  }
  b->n_masked = n;
  return n;
}
