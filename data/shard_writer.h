// shard_writer.h: writes one HDF5 shard file of fixed-length rows with the
// attributes data/FORMAT.md lists. The row count is known before the file is
// opened (the builder counts first), so every dataset has a fixed shape.
#pragma once
#include <stdint.h>

#include "core/log.h"
#include "data/spool.h"

#define TL_SHARDS_FORMAT_VERSION "tl-shards/1"

// Attributes of a shard file; strings are copied into the file, not kept.
typedef struct {
  const char *tokenizer; // "etbert-bigram"
  int32_t vocab_size;
  const char *header_policy;
  const char *task;         // "pretrain", "packet", "flow"
  const char *split_policy; // "flow", "file", "packet"
  const char *split;        // "train", "valid", "test"
  uint64_t split_seed;
  int32_t seq_len, packet_bytes, flow_packets;
  int32_t shard_index;
  int deflate_level; // 0: chunks stored as they are; 1..9: byte shuffle + deflate
  const char *const *label_names;
  int n_labels;
  const char *const *source_files;
  int n_files;
} tl_shard_meta;

typedef struct tl_shard_writer tl_shard_writer;

// Creates path (replacing it) for exactly n_rows > 0 rows. Returns NULL with
// tl_last_error() set when HDF5 cannot create it.
tl_shard_writer *tl_shard_writer_open(const char *path, const tl_shard_meta *meta, int64_t n_rows);

// Appends one row: tokens[h->length] then [PAD] up to seq_len, the segments
// derived from h, and h's label, flow id and file index. Rows are buffered and
// written a chunk at a time. Appending more than n_rows rows is a programmer error.
tl_status tl_shard_writer_append(tl_shard_writer *w, const tl_spool_row *h,
                                 const int32_t *tokens);

// Writes what is buffered, checks that n_rows rows came, closes and frees the
// writer (also on error). Accepts NULL.
tl_status tl_shard_writer_close(tl_shard_writer *w);
