// finetune.h: ET-BERT fine-tuning (tl-finetune) and evaluation (tl-eval).
//
// Fine-tuning trains the encoder plus a classification head ([CLS], pooler
// linear + tanh, dropout, linear to the K classes) on a packet or flow shard set
// (tl-prep --task packet|flow), with tl-pretrain's optimizer, schedule, config,
// run-folder and checkpoint conventions. The model starts from model.init (a
// tl-pretrain checkpoint, or a tl-pretrain run folder meaning its newest one;
// the model sizes are taken from the config stored in it) or, when model.init
// is empty, from random init (the no-pre-training baseline; a warning says so).
// Training runs train.epochs epochs over the train split (train.steps when
// epochs is 0), evaluates macro F1 on the valid split after every epoch and keeps the
// best weights; then the test split is scored once with tl-eval's code, header-only
// shortcut audit included.
//
// A fine-tuning run folder holds:
//   config.yaml        the resolved config
//   labels.json        the class names, task and shard set (tl-eval checks them)
//   metrics.jsonl      train lines every log.every steps, a valid line per epoch
//   checkpoints/       step-%08d.safetensors at every epoch end (for --resume)
//   best.safetensors   the weights with the best valid macro F1 (no moments)
//   eval.json, predictions.csv, confusion.csv, confusion.svg   (train/report.h)
#pragma once
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>

#include "train/config.h"

typedef struct tl_finetune_opts {
  const char *resume_dir;      // continue the run there from its newest checkpoint
  bool progress;               // progress line with ETA on stderr
  bool print_table;            // the F1 table on stdout after the test evaluation
  volatile sig_atomic_t *stop; // non-zero: checkpoint at the end of the step and return
  // Called after each epoch's validation (tests); may be NULL.
  void (*on_epoch)(void *ctx, int epoch, double valid_macro_f1);
  void *ctx;
} tl_finetune_opts;

// Fine-tunes as cfg (resolved) says, in cfg->run.dir (created; a new run refuses
// a folder that already has checkpoints). Returns TL_OK when done or stopped as
// asked, TL_ERR with tl_last_error() set on bad input or a non-finite loss.
tl_status tl_finetune_run(const tl_config *cfg, const tl_finetune_opts *opts);

// For --resume: the config saved in run_dir's newest checkpoint, over defaults.
tl_status tl_finetune_resume_config(const char *run_dir, tl_config *cfg);

typedef struct tl_eval_opts {
  const char *checkpoint; // a fine-tuned checkpoint (best.safetensors or step-*.safetensors)
  const char *data_dir;   // shard set to score
  const char *split;      // "test" (default when NULL)
  const char *out_dir;    // where the report files go (created)
  int batch_size;         // 0: the checkpoint config's data.batch_size
  int threads;            // 0: the runtime's default
  bool shortcut;          // run the header-only shortcut audit (fits on data_dir's train split)
  bool print_table;       // the table on stdout
} tl_eval_opts;

// What an evaluation measured (for callers and tests).
typedef struct tl_eval_summary {
  int n_classes;
  int64_t n;
  double accuracy, macro_f1, weighted_f1;
  double shortcut_macro_f1; // NAN when the audit did not run
  double majority_macro_f1; // NAN when the train split is missing
} tl_eval_summary;

// Scores the checkpoint on one split: builds the model from the config and
// classifier shape stored in the checkpoint, predicts every row, computes the
// metrics, the shortcut audit and the majority-class baseline, and writes the
// report files into out_dir. summary may be NULL. TL_ERR names what is wrong
// (checkpoint without a classifier, class count or names that differ from the
// shard set's, unreadable shards, unwritable folder).
tl_status tl_eval_run(const tl_eval_opts *o, tl_eval_summary *summary);

// --- shared by fine-tuning and evaluation ------------------------------------------

struct tl_bert;
struct tl_loader;
struct tl_arena;

// Predictions of a classifier over one whole split, rows in stored order.
typedef struct tl_predictions {
  int64_t n;
  int K;
  int32_t *y_true, *y_pred; // [n]
  int64_t *flow_id;         // [n]
  float *probs;             // [n, K] softmax of the logits
  double loss;              // mean cross entropy
} tl_predictions;

// Runs the model (no dropout, no tape) over every row of the loader's split
// (opened with shuffle off; its position is reset) using the arena for
// activations. Fills p (free with tl_predictions_free). TL_ERR when reading
// fails or a label is outside [0, K).
tl_status tl_classifier_predict(struct tl_bert *m, struct tl_loader *ld, struct tl_arena *arena,
                                tl_predictions *p);
void tl_predictions_free(tl_predictions *p); // accepts a zeroed struct

// The shard set's manifest facts the report and the shortcut audit need.
typedef struct tl_shard_info {
  char task[16];           // "packet" | "flow" | "pretrain"
  char split_policy[16];   // "flow" | "file" | "packet"
  char header_policy[16];
  int packet_bytes;        // 0: packets were not cut
  int flow_packets;
} tl_shard_info;

// Reads dir/manifest.json (data/FORMAT.md). TL_ERR names the file.
tl_status tl_shard_info_read(const char *dir, tl_shard_info *info);

// Writes dir/labels.json: class names, task and shard set of a fine-tuning run.
tl_status tl_labels_write(const char *dir, struct tl_loader *ld, const char *data_dir);
