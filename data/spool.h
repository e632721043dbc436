// spool.h: the dataset builder's temporary row records. A row is encoded when
// it arrives (only the used tokens, about a byte each) and decoded when the
// shards are written; records never leave the run that made them.
#pragma once
#include <stddef.h>
#include <stdint.h>

#include "core/log.h"

typedef struct {
  uint64_t flow_id;
  int64_t index_in_flow; // the flow's rows before this one (which rows a cap keeps)
  int32_t file_index;
  int32_t label;  // class label, or the same-origin label for pre-training
  int32_t length; // tokens used, specials included; the rest of the row is [PAD]
  int32_t a_end;  // tokens [0, a_end) have segment 1, [a_end, length) segment 2
} tl_spool_row;

// Segment id of position i: 1 in part A, 2 in part B, 0 on padding.
static inline int tl_spool_segment(const tl_spool_row *h, int i) {
  return i < h->a_end ? 1 : (i < h->length ? 2 : 0);
}

// Bytes of the fixed part of a record; tl_spool_record_size needs this many.
enum { TL_SPOOL_HEAD = 4 + (int)sizeof(tl_spool_row) };

// The most bytes a record of `length` tokens takes.
size_t tl_spool_bound(int length);

// Encodes h and tokens[h->length] into out (tl_spool_bound(h->length) bytes);
// returns the record's size.
size_t tl_spool_encode(const tl_spool_row *h, const int32_t *tokens, uint8_t *out);

// Size of the record starting at rec, from its first TL_SPOOL_HEAD bytes.
size_t tl_spool_record_size(const uint8_t *rec);

// Decodes the record at rec (avail bytes there) into h and tokens[max_len].
// Returns its size, or 0 when it is cut short or corrupt (tl_last_error()
// names `path`).
size_t tl_spool_decode(const uint8_t *rec, size_t avail, tl_spool_row *h, int32_t *tokens,
                       int max_len, const char *path);
