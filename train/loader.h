// loader.h: batches of rows from a shard set, and dynamic masking for the
// masked-burst model (MBM).
//
// The loader walks one split of a shard set (data/shards.h) in a seeded order
// that changes every epoch (tl_shards_order: chunk-sized blocks shuffled, rows
// shuffled inside), B rows per batch. Its position (epoch, cursor = rows of
// the epoch already handed out) is all its state, so a checkpoint saves it and
// a resumed run reads exactly the batches the uninterrupted one would have.
//
// Masking is separate and stateless: tl_mbm_mask draws every decision from
// Philox keyed by (seed, draw index), so it depends only on the batch and the
// step, never on what was drawn before (core/rng.h).
#pragma once
#include <stdbool.h>
#include <stdint.h>

#include "core/log.h"

// ET-BERT's special token ids; ordinary tokens are [TL_TOKEN_FIRST, vocab).
enum {
  TL_TOKEN_PAD = 0,
  TL_TOKEN_SEP = 1,
  TL_TOKEN_CLS = 2,
  TL_TOKEN_UNK = 3,
  TL_TOKEN_MASK = 4,
  TL_TOKEN_FIRST = 5,
};

// One batch, in loader-owned memory valid until the next tl_loader_next call.
typedef struct tl_batch {
  int B, T;               // rows (the last batch of a split may be short) and tokens per row
  int32_t *tokens;        // [B, T] input ids (after tl_mbm_mask: with masks applied)
  int32_t *segments;      // [B, T] 0 padding, 1 first part, 2 second part
  int32_t *key_mask;      // [B, T] 1 for positions < length, 0 for padding
  int32_t *lengths;       // [B]
  int32_t *labels;        // [B] class or same-origin label
  int64_t *flow_ids;      // [B]
  // Filled by tl_mbm_mask:
  int n_masked;
  int32_t *mask_pos;      // [n_masked] flat positions b * T + t, ascending
  int32_t *mask_target;   // [n_masked] the original ids there
} tl_batch;

typedef struct tl_loader tl_loader;

typedef struct tl_loader_opts {
  const char *dir;   // shard set folder (manifest.json inside)
  const char *split; // "train", "valid" or "test"
  int batch_size;
  int seq_len;       // 0: the shards' row length; smaller: rows are cut (lengths too)
  uint64_t seed;     // shuffling seed
  bool shuffle;      // false: rows in stored order every epoch
  bool drop_last;    // true: an epoch's final short batch is skipped (training)
} tl_loader_opts;

typedef struct tl_loader_pos {
  int64_t epoch;
  int64_t cursor; // rows of this epoch already handed out
} tl_loader_pos;

// Opens the split and allocates the batch buffers. Returns NULL with
// tl_last_error() set when the shards cannot be opened, the split is empty (or
// smaller than one batch with drop_last), or seq_len exceeds the shards'.
tl_loader *tl_loader_open(const tl_loader_opts *opts);
void tl_loader_close(tl_loader *l); // accepts NULL

// Fills b with the next batch, moving to the next epoch (new order) at the end
// of one. TL_ERR (message set) only when reading the shards fails.
tl_status tl_loader_next(tl_loader *l, tl_batch *b);

tl_loader_pos tl_loader_tell(const tl_loader *l);
// Moves to pos (as returned by tl_loader_tell, or {0, 0}); the epoch's order is
// recomputed from (seed, epoch).
void tl_loader_seek(tl_loader *l, tl_loader_pos pos);

int64_t tl_loader_rows(const tl_loader *l);
int tl_loader_seq_len(const tl_loader *l);
// Batches in one epoch (counting a short final one unless drop_last).
int64_t tl_loader_batches_per_epoch(const tl_loader *l);
// The shard set's vocabulary size, task ("pretrain", ...) and labels.
int32_t tl_loader_vocab_size(const tl_loader *l);
const char *tl_loader_task(const tl_loader *l);
int tl_loader_n_labels(const tl_loader *l);
const char *tl_loader_label_name(const tl_loader *l, int label);

// A seed for one purpose ("mask", "dropout", "eval-mask"...) derived from the
// run's seed, so the streams never share Philox keys.
uint64_t tl_seed_derive(uint64_t seed, const char *purpose);

// Dynamic masking of b in place. Each position t < length whose id is not a
// special token (ids >= TL_TOKEN_FIRST) is chosen with probability prob; a
// chosen position becomes [MASK] with probability 0.8, a random ordinary id in
// [TL_TOKEN_FIRST, vocab) with 0.1, and keeps its id with 0.1. Specials and
// padding are never chosen. Decisions come from Philox with key seed and
// block (draw << 32) + flat position (lanes: choose, kind, random id), so
// (seed, draw) fixes the mask whatever the batch size.
// Writes b->mask_pos, b->mask_target, b->n_masked; returns n_masked.
int tl_mbm_mask(tl_batch *b, double prob, int32_t vocab, uint64_t seed, uint64_t draw);
