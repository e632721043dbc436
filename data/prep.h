// prep.h: the tl-prep pipeline as a library: options (from YAML and flags),
// input discovery (class folders or a label CSV), the streaming pass over the
// captures into the dataset builder (data/dataset.h), and the summary.
#pragma once
#include <stdint.h>
#include <stdio.h>

#include "core/log.h"
#include "data/dataset.h"
#include "data/defrag.h"
#include "data/flow.h"
#include "data/packet.h"

// Upper bounds of the size options. Each sizes a buffer or the work per row:
// an IP packet holds at most 65,535 bytes, encoder contexts are far below 65,536
// tokens, and the reorder window is held in memory as window x packet_bytes.
enum {
  TL_PREP_MAX_SEQ_LEN = 65536,
  TL_PREP_MAX_PACKET_BYTES = 65535,
  TL_PREP_MAX_PACKETS = 1024, // flow_packets, burst_packets
  TL_PREP_MAX_REORDER_WINDOW = 65536,
};

typedef struct {
  // inputs
  char **in;               // folders (class folders below them) or files; owned
  int n_in;
  char *labels_csv;        // CSV/TSV with path and label columns (NULL: class folders)
  char *holdout_of;        // pretrain: a packet/flow shard set whose valid and test
                           // flows are left out (its captures are read; data/holdout.h)
  // dataset builder options (task defaults filled by tl_dataset_options_default)
  tl_dataset_options ds;   // its out_dir and header_policy point into this struct's strings
  char *out_dir;
  tl_header_policy policy;
  // flow options
  tl_flow_options flow;
  // behaviour
  int strict;              // stop with non-zero exit at the first bad file
  int progress;            // -1: on a terminal only, 0: never, 1: always
  int burst_packets;       // packets per burst for pre-training
  int reassemble;          // IP fragments reassembled (default 1; 0: counted and skipped)
} tl_prep_options;

// Defaults for a task. Free the strings with tl_prep_options_free().
void tl_prep_options_default(tl_prep_options *o, tl_task task);
void tl_prep_options_free(tl_prep_options *o);

// Reads a YAML config into o (keys absent from the file keep o's values).
// Unknown keys and wrong types fail with tl_last_error() naming the file, the
// line and the key. The task key, if present, resets o to that task's defaults
// first, so config values always win over defaults.
tl_status tl_prep_config_load(const char *path, tl_prep_options *o);

// Sets one option by its config key from text ("seq_len", "128"); flags use the
// same keys (--seq-len). Errors name `at` (a "file:line" or the flag).
tl_status tl_prep_set_option(tl_prep_options *o, const char *key, const char *val,
                             const char *at);

// The range a numeric option accepts, from the config key table: whole-number
// keys their own, other numbers >= 0; *hi is 1e9 where no bound is set.
void tl_prep_key_range(const char *key, double *lo, double *hi);

// Sets the split ratio from three numbers (normalised to sum 1).
tl_status tl_prep_set_ratio(tl_prep_options *o, char *const *v, int n, const char *at);

// The task a config names (-1 when it names none), so that a caller can fill
// that task's defaults before loading the config on top of them.
tl_status tl_prep_config_task(const char *path, int *task);

// "anonymous", "keep", "compat".
const char *tl_header_policy_name(tl_header_policy p);

// Counters of one run; filled by tl_prep_run.
typedef struct {
  int files_total, files_read, files_refused, files_stopped;
  int64_t packets_read, packets_used, packets_cut;
  int64_t skipped[TL_SKIP_NUM_REASONS];
  int64_t bad_timestamps, tunnelled, outer_tunnels;
  int64_t bytes_read;
  tl_flow_stats flow;
  double seconds;
  int64_t total_rows;
  int64_t held_out_bursts; // pretrain bursts of --holdout-of's valid/test flows, left out
  tl_defrag_stats defrag;  // fragments (reassemble on; else under skipped)
} tl_prep_counts;

// Runs the whole pass and writes the shards. Prints warnings (one line per bad
// file) and, when o->progress says so, a progress line on stderr. The summary
// goes to `report` (NULL: none). Returns TL_ERR with tl_last_error() set when
// nothing usable remains, on a builder error, or with strict at the first bad
// file. counts may be NULL.
tl_status tl_prep_run(const tl_prep_options *o, FILE *report, tl_prep_counts *counts);
