// shards.h: reading a shard set written by tl-prep (layout: data/FORMAT.md).
//
// A shard set is a folder with manifest.json and HDF5 files train-00000.h5,
// valid-00000.h5, ... One split of it is opened as a single table of rows
// 0 .. rows-1 (the shard files of the split, in manifest order, end to end).
// Every row has seq_len token ids, seq_len segment ids (0 padding, 1 first
// part, 2 second part of a pre-training pair), its length (tokens before the
// padding), a label (class, or same-origin label 0/1 for pre-training), the id
// of the flow it came from and the index of its source file.
//
// Rows inside a split are already in a seeded random order (the writer
// shuffles them), so contiguous reads give mixed batches. For a new order per
// epoch, tl_shards_order() shuffles blocks of rows that match the files'
// compression chunks, so reading in that order decompresses each chunk once.
//
//   tl_shards *s = tl_shards_open("shards", "train");
//   int64_t *order = malloc(tl_shards_rows(s) * sizeof *order);
//   tl_shards_order(tl_shards_rows(s), tl_shards_chunk_rows(s), seed, epoch, order);
//   for each batch of B row numbers in order:
//     tl_shards_read_rows(s, order + i, B, &(tl_shard_rows){.tokens = tok, .labels = lab});
//   tl_shards_close(s);
//
// A handle is not thread-safe (HDF5 serial): give each thread its own.
#pragma once
#include <stdint.h>

#include "core/log.h"

typedef struct tl_shards tl_shards;

// Opens one split ("train", "valid" or "test") of the shard set in dir: reads
// dir/manifest.json and opens the split's HDF5 files. A split with no rows
// opens fine and has 0 rows. Returns NULL with tl_last_error() set (naming the
// file) when the manifest or a shard is missing, of another format version, or
// disagrees with the manifest. Close with tl_shards_close().
tl_shards *tl_shards_open(const char *dir, const char *split);
void tl_shards_close(tl_shards *s); // accepts NULL

int64_t tl_shards_rows(const tl_shards *s);
int tl_shards_seq_len(const tl_shards *s);
// Rows per HDF5 chunk: the block size that makes shuffled reads cheap.
int64_t tl_shards_chunk_rows(const tl_shards *s);
// Label names, index = label id. Pre-training sets name the same-origin labels
// ("same-origin", "other-origin").
int tl_shards_n_labels(const tl_shards *s);
const char *tl_shards_label_name(const tl_shards *s, int label);
// "pretrain", "packet" or "flow"; the tokenizer name and its vocabulary size.
const char *tl_shards_task(const tl_shards *s);
const char *tl_shards_tokenizer(const tl_shards *s);
int32_t tl_shards_vocab_size(const tl_shards *s);

// Caller buffers for rows; any pointer may be NULL to skip that field.
typedef struct {
  int32_t *tokens;     // [n, seq_len]
  int32_t *segments;   // [n, seq_len] (int8 on disk, widened)
  int32_t *lengths;    // [n]
  int32_t *labels;     // [n]
  int64_t *flow_ids;   // [n]
  int32_t *file_index; // [n]
} tl_shard_rows;

// Reads rows [start, start + n) into out. Returns TL_ERR with tl_last_error()
// set when the range is outside [0, rows) or HDF5 fails.
tl_status tl_shards_read(tl_shards *s, int64_t start, int64_t n, const tl_shard_rows *out);

// Reads the rows rows[0..n) in that order into out (row i of out is rows[i]).
// The handle keeps the last chunk-aligned block of rows decoded, so reading in
// tl_shards_order() order costs about as much as reading contiguously.
tl_status tl_shards_read_rows(tl_shards *s, const int64_t *rows, int64_t n,
                              const tl_shard_rows *out);

// Writes to order[n_rows] a permutation of 0..n_rows-1 for one epoch: blocks of
// block_rows consecutive rows (the last one may be short) in a random order,
// rows shuffled inside each block. The same (seed, epoch) gives the same
// order; block_rows = 1 gives a uniform permutation.
void tl_shards_order(int64_t n_rows, int64_t block_rows, uint64_t seed, uint64_t epoch,
                     int64_t *order);
