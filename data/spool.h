// spool.h: the dataset builder's temporary row records. Rows are written as
// they arrive (variable length: only the used tokens) and read back at finish.
#pragma once
#include <stdint.h>
#include <stdio.h>

#include "core/log.h"

typedef struct {
  uint64_t flow_id;
  int32_t file_index;
  int32_t label;  // class label, or the same-origin label for pre-training
  int32_t length; // tokens used, specials included; the rest of the row is [PAD]
  int32_t a_end;  // tokens [0, a_end) have segment 1, [a_end, length) segment 2
} tl_spool_row;

// Segment id of position i: 1 in part A, 2 in part B, 0 on padding.
static inline int tl_spool_segment(const tl_spool_row *h, int i) {
  return i < h->a_end ? 1 : (i < h->length ? 2 : 0);
}

// Appends one row (header and tokens[h->length]). TL_ERR names path on failure.
tl_status tl_spool_write(FILE *f, const char *path, const tl_spool_row *h, const int32_t *tokens);

// Reads the next row into h and tokens[max_len]. Returns 1 for a row, 0 at the
// end of the file, -1 on a read error or a corrupt record (tl_last_error set).
int tl_spool_read(FILE *f, const char *path, tl_spool_row *h, int32_t *tokens, int max_len);
