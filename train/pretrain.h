// pretrain.h: the ET-BERT pre-training run (MBM + SBP), shared by tl-pretrain
// and the tests, so a test can run, interrupt and resume training in-process.
//
// A run folder holds:
//   config.yaml       the resolved config (every key, presets expanded)
//   metrics.jsonl     one JSON object per log.every steps ("split": "train") and
//                     per evaluation ("split": "valid")
//   checkpoints/      step-%08d.safetensors (train/checkpoint.h), newest keep_last
//
// Exact resume: every random draw is keyed by (train.seed, step) (init, masking,
// dropout; core/rng.h), the loader's position and AdamW's state are in the
// checkpoint, and reductions run in a fixed order. So on CPU, with the same
// thread count, N steps straight and k + resume + (N - k) give the same bits.
#pragma once
#include <signal.h>
#include <stddef.h>
#include <stdint.h>

#include "train/config.h"

// What one optimizer step measured (means over its micro-batches).
typedef struct tl_step_metrics {
  int64_t step;        // 1-based: steps done after this one
  double loss;         // w_mbm * mbm_loss + w_sbp * sbp_loss
  double mbm_loss, mbm_acc, sbp_loss, sbp_acc;
  double lr;           // the lr this step used
  double grad_norm;    // before clipping
} tl_step_metrics;

typedef struct tl_pretrain_opts {
  const char *resume_dir;        // continue from the newest checkpoint there; NULL: new run
  int64_t stop_after;            // return (with a checkpoint) once this many steps are done;
                                 // 0: run to train.steps
  bool progress;                 // a progress line with ETA on stderr
  volatile sig_atomic_t *stop;   // when it becomes non-zero: checkpoint and return (SIGINT)
  // Called after every optimizer step (tests); may be NULL.
  void (*on_step)(void *ctx, const tl_step_metrics *m);
  void *ctx;
} tl_pretrain_opts;

// Trains as cfg (resolved) says, in cfg->run.dir, which is created. A new run
// refuses a run folder that already has checkpoints (resume it, or pick
// another). Returns TL_OK when it stopped as asked, TL_ERR with tl_last_error()
// set on bad input (shards, sizes, checkpoint) or a non-finite loss.
tl_status tl_pretrain_run(const tl_config *cfg, const tl_pretrain_opts *opts);

// For --resume: reads the config stored in run_dir's newest checkpoint over
// defaults into cfg (the caller then applies --set overrides and resolves), and
// the checkpoint's path into ckpt_path (cap bytes; may be NULL).
tl_status tl_pretrain_resume_config(const char *run_dir, tl_config *cfg, char *ckpt_path,
                                    size_t cap);

// Maps the model section of a resolved config to the BERT's config.
struct tl_bert_config;
void tl_bert_config_from(const tl_config *cfg, struct tl_bert_config *out);
