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

// How a set's flow ids were made: the options that decide where a flow ends and
// which packets share one. Recorded in the manifest as "flow_identity"; a
// pre-training run that holds a set out must cut flows the same way.
typedef struct {
  double idle_timeout_s, close_linger_s;
  int max_flows, key_vlan, reorder_window, reassemble;
} tl_flow_identity;

// The fields as numbers, in one order, and each field's manifest key
// ("idle_timeout", ...): what is compared, written and named in messages.
enum { TL_FLOW_IDENTITY_FIELDS = 6 };
void tl_flow_identity_values(const tl_flow_identity *id, double v[TL_FLOW_IDENTITY_FIELDS]);
const char *tl_flow_identity_key(int i);

// The manifest's "flow_identity" object as JSON text. Caller frees.
char *tl_flow_identity_json(const tl_flow_identity *id);
bool tl_flow_identity_equal(const tl_flow_identity *a, const tl_flow_identity *b);

typedef struct {
  tl_flow_identity identity; // the sets' flow identity (all sets agree)
  int64_t *ids;      // sorted flow ids of DIR's valid and test rows
  int32_t *files;    // file index of each id (same order), to check ids line up
  int64_t n;
  char **files_in;   // DIR's source_files, the captures to read, in order
  int n_files;
} tl_holdout;

// Loads DIR/manifest.json's source files and the flow ids of its valid and test
// splits; dirs may name several sets, comma-separated (e.g. the packet and the
// flow set), which must come from the same captures with the same flow identity.
// Returns TL_ERR with
// tl_last_error() naming the set on any problem.
tl_status tl_holdout_load(tl_holdout *h, const char *dirs);
// True when flow id belongs to a held-out flow. Sets *mismatch when the id is
// held out but was recorded for another file than file_index: the flow ids of
// the two runs do not line up (different flow options), and nothing is safe.
bool tl_holdout_has(const tl_holdout *h, int64_t id, int file_index, bool *mismatch);
void tl_holdout_free(tl_holdout *h); // accepts a zeroed or half-loaded struct
