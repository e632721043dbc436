// finetune.c: the fine-tuning loop: set up a run (folder, loaders, model from
// model.init or random, optimizer, resume), then epochs of steps, a validation
// macro F1 after each epoch with best-keeping, and a final test evaluation with
// tl-eval's code (finetune.h).
#include "train/finetune.h"

#include <errno.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "core/autograd.h"
#include "data/shards.h"
#include "train/bert.h"
#include "train/checkpoint.h"
#include "train/loader.h"
#include "train/metrics.h"
#include "train/optim.h"
#include "train/pretrain.h"
#include "train/safetensors.h"

typedef struct {
  tl_config cfg;               // the run's config; train.steps = epochs * steps per epoch
  const tl_finetune_opts *opts;
  tl_params params;
  tl_bert model;
  bool declared;
  tl_adamw opt;
  tl_lr_schedule sched;
  tl_loader *train, *valid;
  tl_arena arena;
  FILE *metrics;
  char *config_yaml;
  int K;
  int64_t steps_per_epoch;
  int64_t step;                // optimizer steps done
  int64_t last_ckpt;
  double best;                 // best valid macro F1 so far (-1: none yet)
  uint64_t dropout_seed;
  double t_start;
  int64_t step_start;
  // Running sums between log lines.
  double sum_loss, sum_acc, sum_gnorm, since;
  int sum_steps;
  int64_t sum_rows;
} ft_run;

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

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

static void path_in(char *out, size_t cap, const char *dir, const char *name) {
  snprintf(out, cap, "%s/%s", dir, name);
}

tl_status tl_finetune_resume_config(const char *run_dir, tl_config *cfg) {
  return tl_pretrain_resume_config(run_dir, cfg, NULL, 0);
}

// ---------------------------------------------------------------------------
// Setup.

// Train and valid loaders over a packet or flow shard set; K from its labels.
static tl_status open_loaders(ft_run *r) {
  tl_config *c = &r->cfg;
  tl_loader_opts o = {.dir = c->data.dir, .split = "train", .batch_size = c->data.batch_size,
                      .seq_len = c->data.seq_len,
                      .seed = tl_seed_derive(c->train.seed, "shuffle"),
                      .shuffle = c->data.shuffle, .drop_last = false};
  r->train = tl_loader_open(&o);
  if (!r->train) return TL_ERR;
  const char *task = tl_loader_task(r->train);
  if (strcmp(task, "packet") && strcmp(task, "flow")) {
    tl_set_error("%s: shards are for task '%s'; tl-finetune needs 'tl-prep --task packet' "
                 "or '--task flow'", c->data.dir, task);
    return TL_ERR;
  }
  r->K = tl_loader_n_labels(r->train);
  if (r->K < 2) {
    tl_set_error("%s: %d class(es); a classifier needs at least 2", c->data.dir, r->K);
    return TL_ERR;
  }

  o.split = "valid";
  o.shuffle = false;
  r->valid = tl_loader_open(&o);
  if (!r->valid) tl_warn("no validation split (%s): the last epoch's weights are kept",
                         tl_last_error());

  // Steps: whole epochs when train.epochs is set (the published recipe).
  int64_t batches = tl_loader_batches_per_epoch(r->train);
  r->steps_per_epoch = batches / c->train.accum_steps > 0 ? batches / c->train.accum_steps : 1;
  if (c->train.epochs > 0) c->train.steps = (int64_t)c->train.epochs * r->steps_per_epoch;
  return TL_OK;
}

// model.init may name a tl-pretrain run folder: its newest checkpoint is meant.
static tl_status resolve_init(tl_config *c) {
  struct stat sb;
  if (stat(c->model.init, &sb) != 0) {
    tl_set_error("model.init '%s': %s", c->model.init, strerror(errno));
    return TL_ERR;
  }
  if (!S_ISDIR(sb.st_mode)) return TL_OK;
  char path[TL_CONFIG_PATH_MAX + 64];
  if (tl_checkpoint_latest(c->model.init, path, sizeof path) != TL_OK) return TL_ERR;
  if (strlen(path) >= sizeof c->model.init) {
    tl_set_error("model.init: checkpoint path too long: %s", path);
    return TL_ERR;
  }
  memcpy(c->model.init, path, strlen(path) + 1);
  return TL_OK;
}

// Rows and token ids must fit the model (checked once its sizes are final).
static tl_status check_fit(const ft_run *r) {
  const tl_config *c = &r->cfg;
  if (tl_loader_seq_len(r->train) > c->model.max_pos) {
    tl_set_error("%s: rows of %d tokens exceed model.max_pos %d (set data.seq_len)",
                 c->data.dir, tl_loader_seq_len(r->train), c->model.max_pos);
    return TL_ERR;
  }
  if (tl_loader_vocab_size(r->train) > c->model.vocab) {
    tl_set_error("%s: shards use %d token ids but model.vocab is %d", c->data.dir,
                 tl_loader_vocab_size(r->train), c->model.vocab);
    return TL_ERR;
  }
  return TL_OK;
}

// A tl-pretrain checkpoint brings its own model sizes: take them, so that
// model.init loads whatever preset this config names.
static tl_status adopt_init_sizes(tl_config *c) {
  char *yaml = NULL;
  if (tl_checkpoint_peek(c->model.init, NULL, &yaml) != TL_OK || !yaml) {
    tl_warn("%s: no tl config inside; using this config's model sizes", c->model.init);
    free(yaml);
    return TL_OK;
  }
  tl_config pre;
  tl_config_defaults(&pre);
  tl_status st = tl_config_load_string(&pre, yaml, c->model.init);
  free(yaml);
  if (st == TL_OK) st = tl_config_resolve(&pre);
  if (st != TL_OK) return TL_ERR;
  if (pre.model.hidden != c->model.hidden || pre.model.layers != c->model.layers)
    tl_info("model sizes from %s: %s, %d layers x %d hidden (config said %d x %d)",
            c->model.init, pre.model.preset, pre.model.layers, pre.model.hidden,
            c->model.layers, c->model.hidden);
  memcpy(c->model.preset, pre.model.preset, sizeof c->model.preset);
  c->model.hidden = pre.model.hidden, c->model.layers = pre.model.layers;
  c->model.heads = pre.model.heads, c->model.ffn = pre.model.ffn;
  c->model.vocab = pre.model.vocab, c->model.max_pos = pre.model.max_pos;
  c->model.type_vocab = pre.model.type_vocab, c->model.ln_eps = pre.model.ln_eps;
  return TL_OK;
}

// Loads the encoder (and pooler) of model.init by name; the classifier stays
// at its random init. Pre-training heads in the file are ignored.
static tl_status load_init(ft_run *r) {
  const char *path = r->cfg.model.init;
  tl_safetensors sf;
  int n = 0;
  if (tl_safetensors_open(&sf, path) != TL_OK) return TL_ERR;
  tl_status st = tl_safetensors_load_params(&sf, &r->params, false, &n);
  tl_safetensors_close(&sf);
  if (st != TL_OK) return TL_ERR;
  if (n == 0) {
    tl_set_error("%s: none of the model's %d tensors is in the file (not a BERT checkpoint?)",
                 path, r->params.count);
    return TL_ERR;
  }
  tl_info("model.init: %d of %d tensors loaded from %s (the rest, the classifier, random)", n,
          r->params.count, path);
  return TL_OK;
}

// Declares the encoder with a K-class head, then random init, model.init, or
// (resume) the checkpoint with moments and run state.
static tl_status build_model(ft_run *r, const char *resume_ckpt) {
  tl_bert_config bc;
  tl_bert_config_from(&r->cfg, &bc);
  bc.pretrain_heads = false;
  bc.classes = r->K;
  tl_params_init(&r->params);
  tl_bert_declare(&r->params, &bc, &r->model);
  r->declared = true;
  tl_params_alloc(&r->params);
  tl_bert_init_weights(&r->model, tl_seed_derive(r->cfg.train.seed, "init"));
  tl_adamw_init(&r->opt, r->cfg.optim.betas[0], r->cfg.optim.betas[1], r->cfg.optim.eps,
                r->cfg.optim.weight_decay, r->cfg.optim.bias_correction);
  r->best = -1;

  if (resume_ckpt) {
    tl_ckpt_state s;
    if (tl_checkpoint_load(resume_ckpt, &r->params, &s, NULL, true) != TL_OK) return TL_ERR;
    r->step = s.step;
    r->opt.t = s.adam_t;
    r->best = isfinite(s.best) ? s.best : -1;
    tl_loader_seek(r->train, (tl_loader_pos){s.loader_epoch, s.loader_cursor});
    tl_info("resumed from %s at step %lld (best valid macro F1 %.4f)", resume_ckpt,
            (long long)s.step, r->best);
    return TL_OK;
  }
  if (r->cfg.model.init[0]) return load_init(r);
  tl_warn("model.init is empty: fine-tuning from random initialisation (the no-pre-training "
          "baseline)");
  return TL_OK;
}

static tl_status open_run(ft_run *r, const tl_config *cfg, const tl_finetune_opts *opts) {
  r->cfg = *cfg;
  r->opts = opts;
  r->last_ckpt = -1;
  tl_config *c = &r->cfg;
  if (strcmp(c->train.device, "cpu")) {
    tl_set_error("train.device '%s': tl-finetune runs on the CPU only so far", c->train.device);
    return TL_ERR;
  }
  if (c->train.threads > 0) omp_set_num_threads(c->train.threads);

  // The run folder: a new run must not overwrite another's checkpoints.
  char ckpt[1200];
  const char *resume_ckpt;
  if (tl_checkpoint_for_run(c->run.dir, opts->resume_dir, ckpt, sizeof ckpt, &resume_ckpt) !=
      TL_OK)
    return TL_ERR;

  // Data first (it fixes K and the step count), then the model sizes and the
  // model; the run folder only once all of that worked.
  if (open_loaders(r) != TL_OK) return TL_ERR;
  if (!resume_ckpt && c->model.init[0] && resolve_init(c) != TL_OK) return TL_ERR;
  if (!resume_ckpt && c->model.init[0] && adopt_init_sizes(c) != TL_OK) return TL_ERR;
  if (check_fit(r) != TL_OK) return TL_ERR;
  if (build_model(r, resume_ckpt) != TL_OK) return TL_ERR;
  if (make_dir(c->run.dir) != TL_OK) return TL_ERR;
  char path[TL_CONFIG_PATH_MAX + 32];
  path_in(path, sizeof path, c->run.dir, "config.yaml");
  if (tl_config_save(c, path) != TL_OK) return TL_ERR;
  if (tl_labels_write(c->run.dir, r->train, c->data.dir) != TL_OK) return TL_ERR;
  r->config_yaml = tl_config_to_yaml(c);

  // Schedule over the whole run, randomness, memory, metrics file.
  tl_lr_kind kind;
  if (tl_lr_kind_parse(c->optim.schedule, &kind) != TL_OK) return TL_ERR;
  r->sched = (tl_lr_schedule){.kind = kind, .peak = c->optim.lr, .min_lr = c->optim.min_lr,
                              .warmup = tl_config_warmup_steps(c), .total = c->train.steps};
  r->dropout_seed = tl_seed_derive(c->train.seed, "dropout");
  tl_arena_init(&r->arena, (size_t)c->train.arena_mb << 20);
  tl_set_arena(&r->arena);
  path_in(path, sizeof path, c->run.dir, "metrics.jsonl");
  if (resume_ckpt && tl_metrics_trim_after(path, r->step) != TL_OK) return TL_ERR;
  r->metrics = fopen(path, resume_ckpt ? "a" : "w");
  if (!r->metrics) {
    tl_set_error("%s: cannot open: %s", path, strerror(errno));
    return TL_ERR;
  }
  tl_info("finetune: %s, %d layers x %d hidden, %zu parameters; %d classes, %lld %s rows of "
          "%d tokens; %d epochs x %lld steps of %d x %d rows; run %s",
          c->model.preset, c->model.layers, c->model.hidden, r->params.numel, r->K,
          (long long)tl_loader_rows(r->train), tl_loader_task(r->train),
          tl_loader_seq_len(r->train), c->train.epochs, (long long)r->steps_per_epoch,
          c->train.accum_steps, c->data.batch_size, c->run.dir);
  return TL_OK;
}

static void close_run(ft_run *r) {
  if (r->metrics) fclose(r->metrics);
  r->metrics = NULL;
  tl_loader_close(r->train);
  tl_loader_close(r->valid);
  r->train = r->valid = NULL;
  if (r->declared) tl_bert_free(&r->model);
  r->declared = false;
  tl_params_free(&r->params);
  if (r->arena.base) {
    tl_tape_reset();
    tl_set_arena(NULL);
    tl_arena_free(&r->arena);
  }
  free(r->config_yaml);
  r->config_yaml = NULL;
}

// ---------------------------------------------------------------------------
// Training steps.

// One optimizer step over accum_steps micro-batches; mean loss and accuracy out.
static tl_status train_step(ft_run *r, double *loss_out, double *acc_out, double *gnorm_out) {
  const tl_config *c = &r->cfg;
  int accum = c->train.accum_steps;
  double loss_sum = 0, acc_sum = 0;
  tl_params_zero_grad(&r->params);
  tl_set_grad_enabled(true);
  for (int k = 0; k < accum; k++) {
    tl_arena_reset(&r->arena);
    tl_tape_reset();
    tl_batch b;
    if (tl_loader_next(r->train, &b) != TL_OK) return TL_ERR;
    const int64_t bt[2] = {b.B, b.T};
    tl_tensor *ids = tl_from_data(TL_I32, 2, bt, b.tokens);
    tl_tensor *seg = tl_from_data(TL_I32, 2, bt, b.segments);
    tl_tensor *mask = tl_from_data(TL_I32, 2, bt, b.key_mask);
    tl_tensor *labels = tl_from_data(TL_I32, 1, (int64_t[]){b.B}, b.labels);

    // Dropout numbers: a fresh range of counters per micro-batch.
    uint64_t draw = (uint64_t)r->step * (uint64_t)accum + (uint64_t)k;
    tl_bert_rng rng = {.training = true, .seed = r->dropout_seed, .offset = draw << 40};
    tl_tensor *logits = tl_bert_classify(&r->model, ids, seg, mask, &rng); // [B, K]
    tl_tensor *loss = tl_cross_entropy(logits, labels, -1);
    loss_sum += *(float *)loss->data;
    acc_sum += tl_logits_accuracy(logits, labels);
    r->sum_rows += b.B;
    tl_backward(accum > 1 ? tl_scale(loss, 1.0f / (float)accum) : loss);
  }
  *loss_out = loss_sum / accum;
  *acc_out = acc_sum / accum;
  if (!isfinite(*loss_out)) {
    tl_set_error("step %lld: loss is %g; stopping (lower optim.lr or check the data)",
                 (long long)r->step + 1, *loss_out);
    return TL_ERR;
  }

  // Clip, schedule, update.
  *gnorm_out = tl_clip_grad_norm(&r->params, c->optim.clip_norm);
  double lr = tl_lr_at(&r->sched, r->step);
  tl_adamw_step(&r->opt, &r->params, lr);
  r->step++;
  return TL_OK;
}

static void json_num(FILE *f, const char *key, double v) {
  if (isfinite(v)) fprintf(f, ",\"%s\":%.6g", key, v);
  else fprintf(f, ",\"%s\":null", key);
}

// Adds a step to the running sums; every log.every steps writes their mean.
static void log_step(ft_run *r, double loss, double acc, double gnorm, bool force) {
  r->sum_loss += loss, r->sum_acc += acc, r->sum_gnorm += gnorm, r->sum_steps++;
  if (!force && r->step % r->cfg.log.every != 0) return;
  double t = now_s(), n = r->sum_steps;
  FILE *f = r->metrics;
  fprintf(f, "{\"step\":%lld,\"epoch\":%.4g,\"split\":\"train\"", (long long)r->step,
          (double)r->step / (double)r->steps_per_epoch);
  json_num(f, "loss", r->sum_loss / n);
  json_num(f, "acc", r->sum_acc / n);
  json_num(f, "lr", tl_lr_at(&r->sched, r->step - 1));
  json_num(f, "grad_norm", r->sum_gnorm / n);
  json_num(f, "rows_per_s", t > r->since ? (double)r->sum_rows / (t - r->since) : 0);
  json_num(f, "arena_peak_mb", (double)r->arena.high_water / (1 << 20));
  fputs("}\n", f);
  fflush(f);
  // Without a progress line (not a terminal), the same figures as a log line.
  if (!r->opts->progress)
    tl_info("step %lld/%lld (epoch %.2f) loss %.4f acc %.3f lr %.3g |g| %.3g %.1f rows/s",
            (long long)r->step, (long long)r->cfg.train.steps,
            (double)r->step / (double)r->steps_per_epoch, r->sum_loss / n, r->sum_acc / n,
            tl_lr_at(&r->sched, r->step - 1), r->sum_gnorm / n,
            t > r->since ? (double)r->sum_rows / (t - r->since) : 0);
  r->sum_loss = r->sum_acc = r->sum_gnorm = 0;
  r->sum_steps = 0, r->sum_rows = 0, r->since = t;
}

static void progress(ft_run *r, double loss, double acc) {
  if (!r->opts->progress) return;
  double el = now_s() - r->t_start;
  int64_t done = r->step - r->step_start, left = r->cfg.train.steps - r->step;
  double eta = done > 0 ? el / (double)done * (double)left : 0;
  fprintf(stderr, "\repoch %lld/%d  step %lld/%lld  loss %.4f  acc %.3f  %.2f s/step  "
          "ETA %dh%02dm%02ds ", (long long)((r->step - 1) / r->steps_per_epoch + 1),
          r->cfg.train.epochs, (long long)r->step, (long long)r->cfg.train.steps, loss, acc,
          done > 0 ? el / (double)done : 0, (int)(eta / 3600), (int)fmod(eta / 60, 60),
          (int)fmod(eta, 60));
  fflush(stderr);
}

// ---------------------------------------------------------------------------
// Validation, best-keeping, checkpoints.

static tl_ckpt_state run_state(const ft_run *r) {
  tl_loader_pos pos = tl_loader_tell(r->train);
  return (tl_ckpt_state){.step = r->step, .adam_t = r->opt.t, .seed = r->cfg.train.seed,
                         .loader_epoch = pos.epoch, .loader_cursor = pos.cursor,
                         .best = r->best >= 0 ? r->best : NAN};
}

static tl_status save_best(ft_run *r) {
  char path[TL_CONFIG_PATH_MAX + 32];
  path_in(path, sizeof path, r->cfg.run.dir, "best.safetensors");
  tl_ckpt_state s = run_state(r);
  return tl_checkpoint_save(path, &r->params, &s, r->config_yaml, false);
}

static tl_status save_checkpoint(ft_run *r) {
  if (r->last_ckpt == r->step) return TL_OK;
  tl_ckpt_state s = run_state(r);
  char path[1200];
  if (tl_checkpoint_save_step(r->cfg.run.dir, &r->params, &s, r->config_yaml,
                              r->cfg.ckpt.keep_last, path, sizeof path) != TL_OK)
    return TL_ERR;
  r->last_ckpt = r->step;
  tl_debug("checkpoint %s", path);
  return TL_OK;
}

// Macro F1 on the valid split; better than the best so far: best.safetensors.
static tl_status validate(ft_run *r, int epoch) {
  if (!r->valid) return TL_OK;
  tl_predictions p;
  tl_metrics m;
  if (tl_classifier_predict(&r->model, r->valid, &r->arena, &p) != TL_OK) return TL_ERR;
  tl_status st = tl_metrics_compute(p.y_true, p.y_pred, p.n, r->K, &m);
  if (st != TL_OK) {
    tl_predictions_free(&p);
    return TL_ERR;
  }
  bool better = m.macro_f1 > r->best;
  if (better) r->best = m.macro_f1;

  FILE *f = r->metrics;
  fprintf(f, "{\"step\":%lld,\"epoch\":%d,\"split\":\"valid\"", (long long)r->step, epoch);
  json_num(f, "loss", p.loss);
  json_num(f, "accuracy", m.accuracy);
  json_num(f, "macro_f1", m.macro_f1);
  json_num(f, "weighted_f1", m.weighted_f1);
  fprintf(f, ",\"rows\":%lld,\"best\":%s}\n", (long long)p.n, better ? "true" : "false");
  fflush(f);
  if (r->opts->progress) fputc('\n', stderr);
  tl_info("epoch %d: valid loss %.4f accuracy %.4f macro F1 %.4f%s", epoch, p.loss,
          m.accuracy, m.macro_f1, better ? " (best so far)" : "");
  if (r->opts->on_epoch) r->opts->on_epoch(r->opts->ctx, epoch, m.macro_f1);
  tl_metrics_free(&m);
  tl_predictions_free(&p);
  return better ? save_best(r) : TL_OK;
}

// ---------------------------------------------------------------------------

// The test split, scored once with tl-eval's code on the best weights.
static tl_status final_test(const tl_config *cfg, const tl_finetune_opts *opts) {
  tl_shards *test = tl_shards_open(cfg->data.dir, "test");
  int64_t rows = test ? tl_shards_rows(test) : 0;
  tl_shards_close(test);
  if (rows == 0) {
    tl_warn("%s: no test rows; nothing to score (best weights in %s/best.safetensors)",
            cfg->data.dir, cfg->run.dir);
    return TL_OK;
  }
  char best[TL_CONFIG_PATH_MAX + 32];
  path_in(best, sizeof best, cfg->run.dir, "best.safetensors");
  tl_eval_opts eo = {.checkpoint = best, .data_dir = cfg->data.dir, .split = "test",
                     .out_dir = cfg->run.dir, .batch_size = cfg->data.batch_size,
                     .shortcut = true, .print_table = opts->print_table};
  tl_eval_summary s;
  if (tl_eval_run(&eo, &s) != TL_OK) return TL_ERR;

  char path[TL_CONFIG_PATH_MAX + 32];
  path_in(path, sizeof path, cfg->run.dir, "metrics.jsonl");
  FILE *f = fopen(path, "a");
  if (f) {
    fprintf(f, "{\"split\":\"test\",\"rows\":%lld", (long long)s.n);
    json_num(f, "accuracy", s.accuracy);
    json_num(f, "macro_f1", s.macro_f1);
    json_num(f, "weighted_f1", s.weighted_f1);
    json_num(f, "shortcut_macro_f1", s.shortcut_macro_f1);
    json_num(f, "majority_macro_f1", s.majority_macro_f1);
    fputs("}\n", f);
    fclose(f);
  }
  tl_info("test: macro F1 %.4f (header-only shortcut %.4f, majority class %.4f); report in %s",
          s.macro_f1, s.shortcut_macro_f1, s.majority_macro_f1, cfg->run.dir);
  return TL_OK;
}

tl_status tl_finetune_run(const tl_config *cfg, const tl_finetune_opts *opts) {
  ft_run *r = tl_xcalloc(1, sizeof *r);
  tl_status st = open_run(r, cfg, opts);
  r->t_start = r->since = now_s();
  r->step_start = r->step;
  int64_t total = r->cfg.train.steps;
  bool stopped = false;

  while (st == TL_OK && r->step < total) {
    // Train one step, then what is due at its end: logs, epoch validation, checkpoints.
    double loss, acc, gnorm;
    st = train_step(r, &loss, &acc, &gnorm);
    if (st != TL_OK) break;
    log_step(r, loss, acc, gnorm, r->step == total);
    progress(r, loss, acc);
    bool epoch_end = r->step % r->steps_per_epoch == 0;
    if (epoch_end) st = validate(r, (int)(r->step / r->steps_per_epoch));
    stopped = opts->stop && *opts->stop;
    bool due = (r->cfg.ckpt.every > 0 && r->step % r->cfg.ckpt.every == 0) || epoch_end;
    if (st == TL_OK && (due || stopped)) st = save_checkpoint(r);
    if (stopped) {
      tl_info("stopped at step %lld on request; continue with --resume %s",
              (long long)r->step, r->cfg.run.dir);
      break;
    }
  }

  // Without a valid split the last weights are the ones scored.
  bool finished = st == TL_OK && !stopped && r->step == total;
  if (finished && !r->valid) st = save_best(r);
  if (st == TL_OK && r->step > 0) st = save_checkpoint(r);
  if (finished)
    tl_info("done: %lld steps in %.1f s; best valid macro F1 %.4f", (long long)(r->step -
            r->step_start), now_s() - r->t_start, r->best);
  tl_config run_cfg = r->cfg;
  close_run(r);
  free(r);
  if (finished) st = final_test(&run_cfg, opts);
  return st;
}
