// checkpoint.h: training checkpoints as safetensors files.
//
// One file holds everything a run needs to continue exactly:
//   <name>           every parameter's values (F32, the Hugging Face name)
//   optim.m.<name>   AdamW first moment      (only when written with moments)
//   optim.v.<name>   AdamW second moment
//   __metadata__     format "tl-checkpoint/1", step, adam_t, seed, the loader's
//                    position (epoch, cursor), best (a metric for best-keeping),
//                    and the resolved config as YAML text ("config").
// Randomness in tl is a pure function of (seed, step, counter) (core/rng.h), so
// seed and step are the whole RNG state.
//
// Files are written by tl_safetensors_write (temp file, fsync, rename), then the
// folder is fsync'd; a crash mid-write leaves the previous checkpoint intact and
// at worst a "*.tmp.PID" file, which the lookups here ignore.
//
// In a run folder, periodic checkpoints are RUN/checkpoints/step-00001000.safetensors;
// tl_checkpoint_save_step prunes all but the newest keep_last of them.
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/tensor.h"

#define TL_CHECKPOINT_FORMAT "tl-checkpoint/1"

typedef struct tl_ckpt_state {
  int64_t step;          // optimizer steps done
  int64_t adam_t;        // AdamW's update count (bias correction)
  uint64_t seed;         // train.seed the run draws from
  int64_t loader_epoch;  // the loader's position: epoch ...
  int64_t loader_cursor; // ... and rows of that epoch already handed out
  double best;           // best validation metric so far (fine-tuning); NAN if none
} tl_ckpt_state;

// Writes p's values (and, when with_moments, its AdamW moments), state and
// config_yaml (may be NULL) to path atomically. Returns TL_OK, or TL_ERR with
// tl_last_error() set; the previous file at path is then untouched.
tl_status tl_checkpoint_save(const char *path, const tl_params *p, const tl_ckpt_state *state,
                             const char *config_yaml, bool with_moments);

// Loads a checkpoint into p (allocated, same parameter names and shapes: every
// parameter must be in the file). Moments are loaded when with_moments (and must
// then be present). state and config_yaml may be NULL; *config_yaml is a
// malloc'd copy the caller frees (NULL when the file has none). TL_ERR names the
// file and what is wrong.
tl_status tl_checkpoint_load(const char *path, tl_params *p, tl_ckpt_state *state,
                             char **config_yaml, bool with_moments);

// Reads only the metadata: state and config (either may be NULL), e.g. to
// rebuild the model from the config before loading the weights.
tl_status tl_checkpoint_peek(const char *path, tl_ckpt_state *state, char **config_yaml);

// Saves RUN_DIR/checkpoints/step-%08lld.safetensors for state->step (with the
// moments), then deletes the oldest periodic checkpoints so at most keep_last
// remain (keep_last 0: keep all). The path written goes to out_path (may be NULL,
// cap bytes).
tl_status tl_checkpoint_save_step(const char *run_dir, const tl_params *p,
                                  const tl_ckpt_state *state, const char *config_yaml,
                                  int keep_last, char *out_path, size_t cap);

// The newest periodic checkpoint of run_dir (highest step) into path. TL_ERR when
// there is none.
tl_status tl_checkpoint_latest(const char *run_dir, char *path, size_t cap);

// On resume: drops the lines of RUN/metrics.jsonl (path) whose "step" is after
// the checkpoint's step (written before a crash, about to be trained again), so
// the file holds each step once. A missing file is fine.
tl_status tl_metrics_trim_after(const char *path, int64_t step);

// Where a run starts. With resume_dir: its newest checkpoint into path and
// *resume = path. Without: *resume = NULL, and TL_ERR when run_dir already holds
// checkpoints (a new run must not overwrite another's).
tl_status tl_checkpoint_for_run(const char *run_dir, const char *resume_dir, char *path,
                                size_t cap, const char **resume);
