// dataset.h: the contract between tl-prep's capture reader (capture, packet and
// flow code) and the dataset builders that tokenize, split and write HDF5 shards.
//
// The reader streams captures once. For every sample it hands the builder the
// header-policy-applied bytes of one or more packets (IP header onward), the
// class label, a flow id unique across the whole run and the source file index.
// The builder tokenizes (ET-BERT byte bigrams, per packet), spools rows to disk,
// and at finish() splits by flow (or by file), applies per-class caps and
// minimums, and writes train/valid/test shards plus a manifest (data/FORMAT.md).
#pragma once
#include <signal.h>
#include <stddef.h>
#include <stdint.h>

#include "core/log.h"

typedef enum { TL_TASK_PRETRAIN, TL_TASK_PACKET, TL_TASK_FLOW } tl_task;
typedef enum { TL_SPLIT_BY_FLOW, TL_SPLIT_BY_FILE, TL_SPLIT_BY_PACKET } tl_split_policy;
enum { TL_SPLIT_TRAIN, TL_SPLIT_VALID, TL_SPLIT_TEST, TL_NUM_SPLITS };

typedef struct {
  tl_task task;
  const char *out_dir;        // created if missing
  int seq_len;                // tokens per row, specials included (128 packet/pretrain, 512 flow)
  int packet_bytes;           // bytes kept per packet before tokenizing (64 pretrain)
  int flow_packets;           // first K packets of a flow for TL_TASK_FLOW (5)
  uint64_t seed;              // split and pairing seed
  tl_split_policy split;
  double split_ratio[TL_NUM_SPLITS]; // 0.8 0.1 0.1
  int max_per_class;          // 0: no cap
  int min_per_class;          // classes with fewer samples are dropped, with a warning
  const char *header_policy;  // "anonymous" (default), "keep", "compat": stored as attribute
  int rows_per_shard;         // rows per HDF5 file
  int compress;               // deflate level of the shards, 0 (none, default) to 9
  const char *flow_identity;  // JSON object: the manifest's "flow_identity" (NULL: none)
  // Set (by a signal handler) to stop: tl-prep's reading and finish() end early
  // with an error, and out_dir keeps its previous set. NULL: never.
  const volatile sig_atomic_t *stop;
} tl_dataset_options;

// Fills the defaults above for a task.
void tl_dataset_options_default(tl_dataset_options *opt, tl_task task);

typedef struct tl_dataset_builder tl_dataset_builder;

// Opens a builder. label_names[n_labels] (empty for pretrain) and
// source_files[n_files] are copied and stored as attributes. Returns NULL with
// tl_last_error() set when out_dir cannot be made.
tl_dataset_builder *tl_dataset_builder_open(const tl_dataset_options *opt,
                                            const char *const *label_names, int n_labels,
                                            const char *const *source_files, int n_files);

// One classification sample: n_pkts packets (1 for TL_TASK_PACKET), each pkts[i]
// of lens[i] bytes starting at the IP header, header policy already applied.
tl_status tl_dataset_add_sample(tl_dataset_builder *b, int label, uint64_t flow_id,
                                int file_index, const uint8_t *const *pkts,
                                const size_t *lens, int n_pkts);

// One burst for pre-training: a maximal run of packets in one direction of one
// flow. The builder cuts it into halves A and B and makes 50/50 same-origin pairs.
tl_status tl_dataset_add_burst(tl_dataset_builder *b, uint64_t flow_id, int file_index,
                               const uint8_t *const *pkts, const size_t *lens, int n_pkts);

typedef struct {
  int n_labels;
  int64_t (*rows)[TL_NUM_SPLITS]; // rows[label][split]; one row for pretrain
  int64_t total_rows;
  int n_dropped_labels;
} tl_dataset_summary;

// Splits, writes shards and the manifest. The summary stays valid until free().
tl_status tl_dataset_builder_finish(tl_dataset_builder *b, const tl_dataset_summary **summary);
void tl_dataset_builder_free(tl_dataset_builder *b); // accepts NULL and half-built builders

// Finishes, under the folder's lock, what a run killed while publishing left in
// out_dir (data/publish.h); the builder does it too when it opens. Nothing
// happens when out_dir holds no temporary folder or another run holds the lock.
void tl_dataset_recover(const char *out_dir);
