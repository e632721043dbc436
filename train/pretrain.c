// pretrain.c: the pre-training loop: set up a run (folder, loaders, model,
// optimizer, resume), then steps of accumulated micro-batches, clipping, AdamW,
// metrics, evaluation and checkpoints.
#include "train/pretrain.h"

#include <errno.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "train/bert.h"
#include "train/checkpoint.h"
#include "train/loader.h"
#include "train/optim.h"
#include "train/safetensors.h"

typedef struct {
  double loss, mbm_loss, mbm_acc, sbp_loss, sbp_acc, grad_norm;
  int steps;
  int64_t tokens;
  double since; // wall time at the previous log line
} log_sums;

typedef struct {
  const tl_config *cfg;
  const tl_pretrain_opts *opts;
  tl_params params;
  tl_bert model;
  bool model_declared;
  tl_adamw opt;
  tl_lr_schedule sched;
  tl_loader *train, *valid;
  tl_arena arena;
  FILE *metrics;
  char *config_yaml;
  uint64_t mask_seed, dropout_seed, eval_seed;
  int32_t mask_vocab;  // random replacement ids are drawn below this
  int64_t step;        // optimizer steps done
  int64_t last_ckpt;   // step of the newest checkpoint written (-1: none)
  int64_t last_eval;   // step of the latest evaluation (-1: none)
  double t_start;      // wall time when this process started training
  int64_t step_start;
  log_sums sums;
  bool line_open;      // a progress line waits for its newline
} run_ctx;

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

void tl_bert_config_from(const tl_config *cfg, tl_bert_config *out) {
  *out = (tl_bert_config){.vocab = cfg->model.vocab,
                          .hidden = cfg->model.hidden,
                          .layers = cfg->model.layers,
                          .heads = cfg->model.heads,
                          .ffn = cfg->model.ffn,
                          .max_pos = cfg->model.max_pos,
                          .type_vocab = cfg->model.type_vocab,
                          .hidden_dropout = (float)cfg->model.dropout,
                          .attn_dropout = (float)cfg->model.attn_dropout,
                          .ln_eps = (float)cfg->model.ln_eps,
                          .pretrain_heads = true,
                          .classes = 0};
}

tl_status tl_pretrain_resume_config(const char *run_dir, tl_config *cfg, char *ckpt_path,
                                    size_t cap) {
  char path[1200];
  if (tl_checkpoint_latest(run_dir, path, sizeof path) != TL_OK) return TL_ERR;
  char *yaml = NULL;
  if (tl_checkpoint_peek(path, NULL, &yaml) != TL_OK) return TL_ERR;
  if (!yaml) {
    tl_set_error("%s: checkpoint holds no config to resume with", path);
    return TL_ERR;
  }
  tl_config_defaults(cfg);
  tl_status st = tl_config_load_string(cfg, yaml, path);
  free(yaml);
  if (st == TL_OK && ckpt_path) snprintf(ckpt_path, cap, "%s", path);
  return st;
}

// ---------------------------------------------------------------------------
// Setup.

static tl_status make_dir(const char *dir) {
  char buf[TL_CONFIG_PATH_MAX];
  snprintf(buf, sizeof buf, "%s", dir);
  for (char *s = buf + 1; *s; s++) {
    if (*s != '/') continue;
    *s = 0;
    mkdir(buf, 0777);
    *s = '/';
  }
  if (mkdir(buf, 0777) != 0 && errno != EEXIST) {
    tl_set_error("%s: cannot create run folder: %s", dir, strerror(errno));
    return TL_ERR;
  }
  return TL_OK;
}

// Training and validation loaders; a missing or empty valid split only
// disables evaluation.
static tl_status open_loaders(run_ctx *r) {
  const tl_config *c = r->cfg;
  tl_loader_opts o = {.dir = c->data.dir, .split = "train", .batch_size = c->data.batch_size,
                      .seq_len = c->data.seq_len,
                      .seed = tl_seed_derive(c->train.seed, "shuffle"),
                      .shuffle = c->data.shuffle, .drop_last = true};
  r->train = tl_loader_open(&o);
  if (!r->train) return TL_ERR;
  if (strcmp(tl_loader_task(r->train), "pretrain")) {
    tl_set_error("%s: shards are for task '%s'; tl-pretrain needs 'tl-prep --task pretrain'",
                 c->data.dir, tl_loader_task(r->train));
    return TL_ERR;
  }
  int T = tl_loader_seq_len(r->train);
  if (T > c->model.max_pos) {
    tl_set_error("%s: rows of %d tokens exceed model.max_pos %d (set data.seq_len)",
                 c->data.dir, T, c->model.max_pos);
    return TL_ERR;
  }
  int32_t shard_vocab = tl_loader_vocab_size(r->train);
  if (shard_vocab > c->model.vocab) {
    tl_set_error("%s: shards use %d token ids but model.vocab is %d", c->data.dir,
                 shard_vocab, c->model.vocab);
    return TL_ERR;
  }
  r->mask_vocab = shard_vocab;

  o.split = "valid";
  o.shuffle = false;
  o.drop_last = false;
  r->valid = tl_loader_open(&o);
  if (!r->valid) tl_warn("no evaluation: %s", tl_last_error());
  return TL_OK;
}

// Declares and allocates the model, then initialises it, loads model.init, or
// (resume) loads the checkpoint with moments and the run state.
static tl_status build_model(run_ctx *r, const char *resume_ckpt) {
  const tl_config *c = r->cfg;
  tl_bert_config bc;
  tl_bert_config_from(c, &bc);
  tl_params_init(&r->params);
  tl_bert_declare(&r->params, &bc, &r->model);
  r->model_declared = true;
  tl_params_alloc(&r->params);
  tl_bert_init_weights(&r->model, tl_seed_derive(c->train.seed, "init"));
  tl_adamw_init(&r->opt, c->optim.betas[0], c->optim.betas[1], c->optim.eps,
                c->optim.weight_decay, c->optim.bias_correction);
  r->step = 0;

  if (resume_ckpt) {
    tl_ckpt_state s;
    if (tl_checkpoint_load(resume_ckpt, &r->params, &s, NULL, true) != TL_OK) return TL_ERR;
    if (s.seed != c->train.seed)
      tl_warn("resuming with train.seed %llu, checkpoint has %llu: not an exact continuation",
              (unsigned long long)c->train.seed, (unsigned long long)s.seed);
    r->step = s.step;
    r->opt.t = s.adam_t;
    tl_loader_seek(r->train, (tl_loader_pos){s.loader_epoch, s.loader_cursor});
    tl_info("resumed from %s at step %lld", resume_ckpt, (long long)s.step);
  } else if (c->model.init[0]) {
    tl_safetensors sf;
    int n = 0;
    if (tl_safetensors_open(&sf, c->model.init) != TL_OK) return TL_ERR;
    tl_status st = tl_safetensors_load_params(&sf, &r->params, false, &n);
    tl_safetensors_close(&sf);
    if (st != TL_OK) return TL_ERR;
    tl_info("model.init: %d of %d tensors loaded from %s", n, r->params.count, c->model.init);
  }
  return TL_OK;
}

static tl_status open_run(run_ctx *r, const tl_config *cfg, const tl_pretrain_opts *opts) {
  r->cfg = cfg;
  r->opts = opts;
  r->last_ckpt = -1;
  r->last_eval = -1;
  if (strcmp(cfg->train.device, "cpu")) {
    tl_set_error("train.device '%s': tl-pretrain runs on the CPU only so far",
                 cfg->train.device);
    return TL_ERR;
  }
  if (cfg->train.threads > 0) omp_set_num_threads(cfg->train.threads);

  // The run folder: a new run must not overwrite another's checkpoints.
  char ckpt[1200];
  const char *resume_ckpt;
  if (tl_checkpoint_for_run(cfg->run.dir, opts->resume_dir, ckpt, sizeof ckpt, &resume_ckpt) !=
      TL_OK)
    return TL_ERR;

  // Data and model first: bad shards or a bad checkpoint leave no run folder behind.
  if (open_loaders(r) != TL_OK) return TL_ERR;
  if (build_model(r, resume_ckpt) != TL_OK) return TL_ERR;
  if (make_dir(cfg->run.dir) != TL_OK) return TL_ERR;
  char path[TL_CONFIG_PATH_MAX + 32];
  snprintf(path, sizeof path, "%s/config.yaml", cfg->run.dir);
  if (tl_config_save(cfg, path) != TL_OK) return TL_ERR;
  r->config_yaml = tl_config_to_yaml(cfg);

  // Schedule, streams of randomness, memory, metrics file.
  tl_lr_kind kind;
  if (tl_lr_kind_parse(cfg->optim.schedule, &kind) != TL_OK) return TL_ERR;
  r->sched = (tl_lr_schedule){.kind = kind, .peak = cfg->optim.lr, .min_lr = cfg->optim.min_lr,
                              .warmup = tl_config_warmup_steps(cfg), .total = cfg->train.steps};
  r->mask_seed = tl_seed_derive(cfg->train.seed, "mask");
  r->dropout_seed = tl_seed_derive(cfg->train.seed, "dropout");
  r->eval_seed = tl_seed_derive(cfg->train.seed, "eval-mask");
  tl_arena_init(&r->arena, (size_t)cfg->train.arena_mb << 20);
  tl_set_arena(&r->arena);
  snprintf(path, sizeof path, "%s/metrics.jsonl", cfg->run.dir);
  if (resume_ckpt && tl_metrics_trim_after(path, r->step) != TL_OK) return TL_ERR;
  r->metrics = fopen(path, resume_ckpt ? "a" : "w");
  if (!r->metrics) {
    tl_set_error("%s: cannot open: %s", path, strerror(errno));
    return TL_ERR;
  }
  tl_info("pretrain: %s, %d layers x %d hidden, %zu parameters; %lld train rows of %d "
          "tokens; %lld steps of %d x %d rows; run %s",
          cfg->model.preset, cfg->model.layers, cfg->model.hidden, r->params.numel,
          (long long)tl_loader_rows(r->train), tl_loader_seq_len(r->train),
          (long long)cfg->train.steps, cfg->train.accum_steps, cfg->data.batch_size,
          cfg->run.dir);
  return TL_OK;
}

static void close_run(run_ctx *r) {
  if (r->metrics) fclose(r->metrics);
  tl_loader_close(r->train);
  tl_loader_close(r->valid);
  if (r->model_declared) tl_bert_free(&r->model);
  tl_params_free(&r->params);
  if (r->arena.base) {
    tl_tape_reset();
    tl_set_arena(NULL);
    tl_arena_free(&r->arena);
  }
  free(r->config_yaml);
}

// ---------------------------------------------------------------------------
// One micro-batch: read, mask, forward (and backward when training).

static tl_status micro_batch(run_ctx *r, tl_loader *ld, uint64_t mask_seed, uint64_t draw,
                             bool training, tl_bert_stats *stats, int *rows) {
  const tl_config *c = r->cfg;
  tl_arena_reset(&r->arena);
  tl_tape_reset();
  tl_batch b;
  if (tl_loader_next(ld, &b) != TL_OK) return TL_ERR;
  tl_mbm_mask(&b, c->data.mask_prob, r->mask_vocab, mask_seed, draw);
  *rows = b.B;

  // The batch as i32 tensors over the loader's buffers.
  const int64_t bt[2] = {b.B, b.T};
  tl_bert_batch bb = {
      .ids = tl_from_data(TL_I32, 2, bt, b.tokens),
      .segments = tl_from_data(TL_I32, 2, bt, b.segments),
      .key_mask = tl_from_data(TL_I32, 2, bt, b.key_mask),
      .mbm_rows = tl_from_data(TL_I32, 1, (int64_t[]){b.n_masked}, b.mask_pos),
      .mbm_targets = tl_from_data(TL_I32, 1, (int64_t[]){b.n_masked}, b.mask_target),
      .sbp_labels = tl_from_data(TL_I32, 1, (int64_t[]){b.B}, b.labels)};

  // Dropout numbers: a Philox key of its own per draw, counters from 0.
  tl_bert_rng rng = {.training = training,
                     .seed = tl_seed_derive(r->dropout_seed + draw, "dropout-draw")};
  tl_tensor *loss = tl_bert_pretrain_loss(&r->model, &bb, (float)c->loss.w_mbm,
                                          (float)c->loss.w_sbp, &rng, stats);
  if (!training) return TL_OK;

  // Mean over the micro-batches of a step: each contributes 1/accum of its grads.
  int accum = c->train.accum_steps;
  tl_backward(accum > 1 ? tl_scale(loss, 1.0f / (float)accum) : loss);
  return TL_OK;
}

// One optimizer step over accum_steps micro-batches.
static tl_status train_step(run_ctx *r, tl_step_metrics *m) {
  const tl_config *c = r->cfg;
  int accum = c->train.accum_steps;
  *m = (tl_step_metrics){.step = r->step + 1};
  tl_params_zero_grad(&r->params);
  tl_set_grad_enabled(true);
  for (int k = 0; k < accum; k++) {
    tl_bert_stats s;
    int rows;
    uint64_t draw = (uint64_t)r->step * (uint64_t)accum + (uint64_t)k;
    if (micro_batch(r, r->train, r->mask_seed, draw, true, &s, &rows) != TL_OK) return TL_ERR;
    m->loss += s.loss / accum;
    m->mbm_loss += s.mbm_loss / accum;
    m->mbm_acc += s.mbm_acc / accum;
    m->sbp_loss += s.sbp_loss / accum;
    m->sbp_acc += s.sbp_acc / accum;
    r->sums.tokens += (int64_t)rows * tl_loader_seq_len(r->train);
  }
  if (!isfinite(m->loss)) {
    tl_set_error("step %lld: loss is %g; stopping (lower optim.lr or check the data)",
                 (long long)m->step, m->loss);
    return TL_ERR;
  }

  // Clip, schedule, update.
  m->grad_norm = tl_clip_grad_norm(&r->params, c->optim.clip_norm);
  m->lr = tl_lr_at(&r->sched, r->step);
  tl_adamw_step(&r->opt, &r->params, m->lr);
  r->step++;
  return TL_OK;
}

// ---------------------------------------------------------------------------
// Evaluation, metrics, checkpoints, progress.

// Mean losses and accuracies over eval_batches batches of the valid split (the
// same rows and masks every time, so evaluations compare).
static tl_status evaluate(run_ctx *r, tl_step_metrics *m, int64_t *rows_seen) {
  const tl_config *c = r->cfg;
  int64_t n = c->train.eval_batches ? c->train.eval_batches
                                    : tl_loader_batches_per_epoch(r->valid);
  if (n > tl_loader_batches_per_epoch(r->valid)) n = tl_loader_batches_per_epoch(r->valid);
  tl_loader_seek(r->valid, (tl_loader_pos){0, 0});
  bool was = tl_grad_enabled();
  tl_set_grad_enabled(false);

  // Weighted sums: MBM per masked position, SBP per row.
  double mbm_loss = 0, mbm_hit = 0, sbp_loss = 0, sbp_hit = 0, masked = 0, rows = 0;
  tl_status st = TL_OK;
  for (int64_t i = 0; i < n && st == TL_OK; i++) {
    tl_bert_stats s;
    int b;
    st = micro_batch(r, r->valid, r->eval_seed, (uint64_t)i, false, &s, &b);
    if (st != TL_OK) break;
    mbm_loss += s.mbm_loss * s.mbm_count;
    mbm_hit += s.mbm_acc * s.mbm_count;
    masked += s.mbm_count;
    sbp_loss += s.sbp_loss * b;
    sbp_hit += s.sbp_acc * b;
    rows += b;
  }
  tl_set_grad_enabled(was);
  *m = (tl_step_metrics){.step = r->step};
  m->mbm_loss = masked ? mbm_loss / masked : 0;
  m->mbm_acc = masked ? mbm_hit / masked : 0;
  m->sbp_loss = rows ? sbp_loss / rows : 0;
  m->sbp_acc = rows ? sbp_hit / rows : 0;
  m->loss = c->loss.w_mbm * m->mbm_loss + c->loss.w_sbp * m->sbp_loss;
  *rows_seen = (int64_t)rows;
  return st;
}

// "key":value for JSON, null for values JSON cannot hold.
static void json_num(FILE *f, const char *key, double v) {
  if (isfinite(v)) fprintf(f, ",\"%s\":%.6g", key, v);
  else fprintf(f, ",\"%s\":null", key);
}

static void write_metrics(run_ctx *r, const char *split, const tl_step_metrics *m,
                          double tokens_per_s, int64_t eval_rows) {
  FILE *f = r->metrics;
  fprintf(f, "{\"step\":%lld,\"split\":\"%s\"", (long long)m->step, split);
  json_num(f, "loss", m->loss);
  json_num(f, "mbm_loss", m->mbm_loss);
  json_num(f, "mbm_acc", m->mbm_acc);
  json_num(f, "sbp_loss", m->sbp_loss);
  json_num(f, "sbp_acc", m->sbp_acc);
  if (eval_rows >= 0) {
    fprintf(f, ",\"rows\":%lld", (long long)eval_rows);
  } else {
    json_num(f, "lr", m->lr);
    json_num(f, "grad_norm", m->grad_norm);
    json_num(f, "tokens_per_s", tokens_per_s);
    json_num(f, "arena_peak_mb", (double)r->arena.high_water / (1 << 20));
  }
  fputs("}\n", f);
  fflush(f);
}

// Adds a step to the running sums; every log.every steps writes their mean.
static void log_step(run_ctx *r, const tl_step_metrics *m, bool force) {
  log_sums *s = &r->sums;
  s->loss += m->loss, s->mbm_loss += m->mbm_loss, s->mbm_acc += m->mbm_acc;
  s->sbp_loss += m->sbp_loss, s->sbp_acc += m->sbp_acc, s->grad_norm += m->grad_norm;
  s->steps++;
  if (!force && m->step % r->cfg->log.every != 0) return;

  double t = now_s(), n = s->steps;
  tl_step_metrics mean = {.step = m->step, .loss = s->loss / n, .mbm_loss = s->mbm_loss / n,
                          .mbm_acc = s->mbm_acc / n, .sbp_loss = s->sbp_loss / n,
                          .sbp_acc = s->sbp_acc / n, .lr = m->lr,
                          .grad_norm = s->grad_norm / n};
  double tps = t > s->since ? (double)s->tokens / (t - s->since) : 0;
  write_metrics(r, "train", &mean, tps, -1);
  if (!r->opts->progress)
    tl_info("step %lld/%lld loss %.4f mbm %.4f (acc %.3f) sbp %.4f (acc %.3f) lr %.3g "
            "|g| %.3g %.0f tok/s", (long long)m->step, (long long)r->cfg->train.steps,
            mean.loss, mean.mbm_loss, mean.mbm_acc, mean.sbp_loss, mean.sbp_acc, mean.lr,
            mean.grad_norm, tps);
  *s = (log_sums){.since = t};
}

// Ends the progress line before a log message is printed under it.
static void end_progress_line(run_ctx *r) {
  if (!r->line_open) return;
  fputc('\n', stderr);
  r->line_open = false;
}

static void progress(run_ctx *r, const tl_step_metrics *m) {
  if (!r->opts->progress) return;
  r->line_open = true;
  double el = now_s() - r->t_start;
  int64_t done = r->step - r->step_start, left = r->cfg->train.steps - r->step;
  double eta = done > 0 ? el / (double)done * (double)left : 0;
  double step_tokens = (double)r->cfg->train.accum_steps * r->cfg->data.batch_size *
                       tl_loader_seq_len(r->train);
  fprintf(stderr, "\rstep %lld/%lld  loss %.4f  mbm acc %.3f  sbp acc %.3f  %.0f tok/s  "
          "ETA %dh%02dm%02ds ", (long long)r->step, (long long)r->cfg->train.steps, m->loss,
          m->mbm_acc, m->sbp_acc, done > 0 ? step_tokens * (double)done / el : 0,
          (int)(eta / 3600), (int)fmod(eta / 60, 60), (int)fmod(eta, 60));
  fflush(stderr);
}

static tl_status run_eval(run_ctx *r) {
  if (!r->valid || r->last_eval == r->step) return TL_OK;
  r->last_eval = r->step;
  tl_step_metrics m;
  int64_t rows;
  if (evaluate(r, &m, &rows) != TL_OK) return TL_ERR;
  write_metrics(r, "valid", &m, 0, rows);
  end_progress_line(r);
  tl_info("eval at step %lld: loss %.4f mbm %.4f (acc %.3f) sbp %.4f (acc %.3f) on %lld rows",
          (long long)r->step, m.loss, m.mbm_loss, m.mbm_acc, m.sbp_loss, m.sbp_acc,
          (long long)rows);
  return TL_OK;
}

static tl_status save_checkpoint(run_ctx *r) {
  if (r->last_ckpt == r->step) return TL_OK;
  tl_loader_pos pos = tl_loader_tell(r->train);
  tl_ckpt_state s = {.step = r->step, .adam_t = r->opt.t, .seed = r->cfg->train.seed,
                     .loader_epoch = pos.epoch, .loader_cursor = pos.cursor, .best = NAN};
  char path[1200];
  if (tl_checkpoint_save_step(r->cfg->run.dir, &r->params, &s, r->config_yaml,
                              r->cfg->ckpt.keep_last, path, sizeof path) != TL_OK)
    return TL_ERR;
  r->last_ckpt = r->step;
  end_progress_line(r);
  tl_info("checkpoint %s", path);
  return TL_OK;
}

// ---------------------------------------------------------------------------

tl_status tl_pretrain_run(const tl_config *cfg, const tl_pretrain_opts *opts) {
  run_ctx r = {0};
  tl_status st = open_run(&r, cfg, opts);
  int64_t end = cfg->train.steps;
  if (opts->stop_after > 0 && opts->stop_after < end) end = opts->stop_after;
  r.t_start = r.sums.since = now_s();
  r.step_start = r.step;

  // A new run's starting point, so the evaluation curve has its origin.
  if (st == TL_OK && r.step == 0 && cfg->train.eval_every > 0) st = run_eval(&r);

  while (st == TL_OK && r.step < end) {
    // Train one step, then whatever is due at its end.
    tl_step_metrics m;
    st = train_step(&r, &m);
    if (st != TL_OK) break;
    if (opts->on_step) opts->on_step(opts->ctx, &m);
    log_step(&r, &m, r.step == end);
    progress(&r, &m);
    bool stopping = opts->stop && *opts->stop;
    if (cfg->train.eval_every > 0 && r.step % cfg->train.eval_every == 0) st = run_eval(&r);
    if (st == TL_OK && ((cfg->ckpt.every > 0 && r.step % cfg->ckpt.every == 0) || stopping))
      st = save_checkpoint(&r);
    if (stopping) {
      end_progress_line(&r);
      tl_info("stopped at step %lld on request; continue with --resume %s",
              (long long)r.step, cfg->run.dir);
      break;
    }
  }

  // The end of the run (or of this part of it): a final evaluation and checkpoint.
  if (st == TL_OK && r.step == cfg->train.steps) st = run_eval(&r);
  if (st == TL_OK && r.step > 0) st = save_checkpoint(&r);
  end_progress_line(&r);
  if (st == TL_OK && r.step == cfg->train.steps && r.step > r.step_start)
    tl_info("done: %lld steps in %.1f s", (long long)(r.step - r.step_start),
            now_s() - r.t_start);
  close_run(&r);
  return st;
}
