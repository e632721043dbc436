// config.h: a run's configuration, read from YAML, overridden on the command
// line, resolved (presets expanded) and written back beside the run.
//
// Layout of a config file (every key optional; defaults from tl_config_defaults):
//
//   model: {preset: tiny, hidden: 0, layers: 0, heads: 0, ffn: 0, ...}
//   data:  {dir: shards/pretrain, batch_size: 32, seq_len: 128, mask_prob: 0.15}
//   optim: {lr: 1e-4, betas: [0.9, 0.999], eps: 1e-8, weight_decay: 0.01,
//           bias_correction: true, warmup: 0.1, schedule: linear, clip_norm: 1.0}
//   loss:  {w_mbm: 1, w_sbp: 1}
//   train: {steps: 1000, seed: 42, accum_steps: 1, eval_every: 200, ...}
//   ckpt:  {every: 500, keep_last: 3}
//   log:   {every: 10}
//   run:   {dir: runs/pretrain}
//
// Loading is in two stages: libcyaml reads the document against a schema made
// from the key table in config.c (every leaf read as text, so libcyaml rejects
// unknown keys and structural mistakes), then each value is converted strictly
// by its type ("1.5" is not an integer, "1e-3x" is not a number: libcyaml's own
// number parsing accepts both). Errors are one line naming file, line and key.
#pragma once
#include <stdbool.h>
#include <stdint.h>

#include "core/log.h"

#define TL_CONFIG_PATH_MAX 1024
#define TL_CONFIG_WORD_MAX 32

typedef struct tl_config {
  struct {
    char preset[TL_CONFIG_WORD_MAX]; // tiny|mini|small|medium|base|large
    int hidden, layers, heads, ffn;  // 0: from the preset (ffn: 4 * hidden)
    int vocab, max_pos, type_vocab;  // 65541 ids, 512 positions, 3 segment rows
    double dropout, attn_dropout;    // 0.1, 0.1
    double ln_eps;                   // layernorm epsilon, 1e-12
    char init[TL_CONFIG_PATH_MAX];   // checkpoint to start from; "" = random init
  } model;
  struct {
    char dir[TL_CONFIG_PATH_MAX]; // shard folder (manifest inside), required
    int batch_size;               // rows per micro-batch
    int seq_len;                  // 0: the shards' row length
    double mask_prob;             // MBM masking rate, 0.15
    bool shuffle;                 // reshuffle the training rows every epoch
  } data;
  struct {
    double lr;
    double betas[2];
    double eps;
    double weight_decay;
    bool bias_correction;          // off in the ET-BERT compat preset
    double warmup;                 // < 1: fraction of train.steps; >= 1: steps
    char schedule[TL_CONFIG_WORD_MAX]; // linear|cosine|constant (after warmup)
    double min_lr;                 // the decay's floor
    double clip_norm;              // global gradient norm limit; 0 = no clipping
  } optim;
  struct {
    double w_mbm, w_sbp; // loss = w_mbm * MBM + w_sbp * SBP
  } loss;
  struct {
    int64_t steps;       // optimizer steps
    int epochs;          // fine-tuning: epochs instead of steps when > 0
    uint64_t seed;       // init, shuffling, masking, dropout
    int accum_steps;     // micro-batches per optimizer step
    int eval_every;      // steps between evaluations; 0 = only at the end
    int eval_batches;    // validation batches per evaluation; 0 = the whole split
    int arena_mb;        // activation arena size
    int threads;         // OpenMP threads; 0 = the runtime's default
    char device[TL_CONFIG_WORD_MAX]; // cpu|cuda
  } train;
  struct {
    int every;     // steps between checkpoints; 0 = only at the end
    int keep_last; // checkpoints kept (older ones deleted); 0 = keep all
  } ckpt;
  struct {
    int every; // steps between metrics.jsonl lines
  } log;
  struct {
    char dir[TL_CONFIG_PATH_MAX]; // run folder (config.yaml, metrics, checkpoints)
  } run;
} tl_config;

// Fills tl's defaults (the defaults; configs/ hold the presets).
void tl_config_defaults(tl_config *cfg);

// Reads the YAML file at path over cfg (keys absent from the file keep their
// current values). Returns TL_OK, or TL_ERR with tl_last_error() set to one line
// such as "configs/x.yaml:12: unknown key 'lerning_rate' in section 'optim'".
tl_status tl_config_load(tl_config *cfg, const char *path);
// The same from a YAML text held in memory; name stands for the file in errors.
tl_status tl_config_load_string(tl_config *cfg, const char *yaml, const char *name);

// Applies one "section.key=value" override (value in the key's type; betas as
// "0.9,0.98" or "[0.9, 0.98]"). TL_ERR names the key: "--set optim.lr=abc: ...".
tl_status tl_config_set(tl_config *cfg, const char *assignment);

// Expands the model preset into explicit sizes (keeping explicit overrides) and
// checks cross-key constraints (heads divide hidden, required keys present...).
// After it, every size is explicit, so the written config reproduces the run.
tl_status tl_config_resolve(tl_config *cfg);

// The whole config as YAML text (every key). Returns a malloc'd string the
// caller frees, or NULL with tl_last_error() set.
char *tl_config_to_yaml(const tl_config *cfg);
// Writes tl_config_to_yaml(cfg) to path (temp file + rename).
tl_status tl_config_save(const tl_config *cfg, const char *path);

// Warmup in steps after resolving "fraction or steps" against total.
int64_t tl_config_warmup_steps(const tl_config *cfg);
