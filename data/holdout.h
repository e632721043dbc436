// holdout.h: keeping pre-training away from the flows a classifier is scored on.
//
// ET-BERT pre-trains on bursts of the same captures its fine-tuning sets come
// from, so the encoder may have seen the bytes of test flows. `tl-prep --task
// pretrain --holdout-of DIR[,DIR2]` reads the captures DIR (a packet or flow shard set)
// was made from, in the same order, so flow ids line up, and leaves out every
// burst of a flow in DIR's valid or test split: no held-out byte is pre-trained on.
#pragma once
#include <stdbool.h>
#include <stdint.h>

#include "core/log.h"

typedef struct {
  int64_t *ids;      // sorted flow ids of DIR's valid and test rows
  int32_t *files;    // file index of each id (same order), to check ids line up
  int64_t n;
  char **files_in;   // DIR's source_files, the captures to read, in order
  int n_files;
} tl_holdout;

// Loads DIR/manifest.json's source files and the flow ids of its valid and test
// splits; dirs may name several sets, comma-separated (e.g. the packet and the
// flow set), which must come from the same captures. Returns TL_ERR with
// tl_last_error() naming the set on any problem.
tl_status tl_holdout_load(tl_holdout *h, const char *dirs);
// True when flow id belongs to a held-out flow. Sets *mismatch when the id is
// held out but was recorded for another file than file_index: the flow ids of
// the two runs do not line up (different flow options), and nothing is safe.
bool tl_holdout_has(const tl_holdout *h, int64_t id, int file_index, bool *mismatch);
void tl_holdout_free(tl_holdout *h); // accepts a zeroed or half-loaded struct
