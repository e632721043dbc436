// evaluate.c: scoring a fine-tuned classifier on a shard split (tl-eval, and the
// end of tl-finetune): predictions, metrics, the header-only shortcut audit, the
// majority-class baseline and the report files.
#include <cjson/cJSON.h>
#include <errno.h>
#include <libgen.h>
#include <math.h>
#include <omp.h>
#include <string.h>
#include <sys/stat.h>

#include "core/autograd.h"
#include "data/shards.h"
#include "train/bert.h"
#include "train/checkpoint.h"
#include "train/finetune.h"
#include "train/loader.h"
#include "train/metrics.h"
#include "train/pretrain.h"
#include "train/report.h"
#include "train/safetensors.h"
#include "train/shortcut.h"

// --- small file helpers -----------------------------------------------------------

static cJSON *read_json(const char *path) {
  FILE *f = fopen(path, "rb");
  if (!f) {
    tl_set_error("%s: cannot open: %s", path, strerror(errno));
    return NULL;
  }
  fseek(f, 0, SEEK_END);
  long len = ftell(f);
  fseek(f, 0, SEEK_SET);
  char *text = tl_xmalloc((size_t)len + 1);
  size_t got = fread(text, 1, (size_t)len, f);
  text[got] = 0;
  fclose(f);
  cJSON *o = cJSON_Parse(text);
  free(text);
  if (!o) tl_set_error("%s: not valid JSON", path);
  return o;
}

static void copy_json_string(const cJSON *o, const char *key, char *out, size_t cap) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
  snprintf(out, cap, "%s", cJSON_IsString(v) ? v->valuestring : "");
}

tl_status tl_shard_info_read(const char *dir, tl_shard_info *info) {
  char path[4096];
  snprintf(path, sizeof path, "%s/manifest.json", dir);
  cJSON *o = read_json(path);
  if (!o) return TL_ERR;
  memset(info, 0, sizeof *info);
  copy_json_string(o, "task", info->task, sizeof info->task);
  copy_json_string(o, "split_policy", info->split_policy, sizeof info->split_policy);
  copy_json_string(o, "header_policy", info->header_policy, sizeof info->header_policy);
  const cJSON *pb = cJSON_GetObjectItemCaseSensitive(o, "packet_bytes");
  const cJSON *fp = cJSON_GetObjectItemCaseSensitive(o, "flow_packets");
  info->packet_bytes = cJSON_IsNumber(pb) ? pb->valueint : 0;
  info->flow_packets = cJSON_IsNumber(fp) ? fp->valueint : 0;
  cJSON_Delete(o);
  if (!info->task[0]) {
    tl_set_error("%s: no \"task\" (expected a tl-prep manifest, data/FORMAT.md)", path);
    return TL_ERR;
  }
  return TL_OK;
}

static tl_status write_json(const char *path, cJSON *o) {
  char *text = cJSON_Print(o);
  FILE *f = fopen(path, "w");
  if (!f) {
    cJSON_free(text);
    tl_set_error("%s: cannot write: %s", path, strerror(errno));
    return TL_ERR;
  }
  fputs(text, f);
  fputc('\n', f);
  cJSON_free(text);
  if (fclose(f) != 0) {
    tl_set_error("%s: write failed: %s", path, strerror(errno));
    return TL_ERR;
  }
  return TL_OK;
}

tl_status tl_labels_write(const char *dir, tl_loader *ld, const char *data_dir) {
  cJSON *o = cJSON_CreateObject();
  cJSON *names = cJSON_AddArrayToObject(o, "labels");
  for (int c = 0; c < tl_loader_n_labels(ld); c++)
    cJSON_AddItemToArray(names, cJSON_CreateString(tl_loader_label_name(ld, c)));
  cJSON_AddStringToObject(o, "task", tl_loader_task(ld));
  cJSON_AddStringToObject(o, "data_dir", data_dir);
  char path[4096];
  snprintf(path, sizeof path, "%s/labels.json", dir);
  tl_status st = write_json(path, o);
  cJSON_Delete(o);
  return st;
}

// The labels.json of the run a checkpoint belongs to (its folder or the one
// above, for checkpoints/step-*.safetensors), or NULL when there is none.
static cJSON *find_labels_json(const char *checkpoint, char *found, size_t cap) {
  char a[4096], b[4096];
  snprintf(a, sizeof a, "%s", checkpoint);
  const char *d1 = dirname(a);
  snprintf(b, sizeof b, "%s", d1);
  const char *d2 = dirname(b);
  const char *dirs[] = {d1, d2};
  for (int i = 0; i < 2; i++) {
    snprintf(found, cap, "%s/labels.json", dirs[i]);
    struct stat st;
    if (stat(found, &st) == 0) return read_json(found);
  }
  return NULL;
}

// --- predictions ------------------------------------------------------------------

void tl_predictions_free(tl_predictions *p) {
  if (!p) return;
  free(p->y_true), free(p->y_pred), free(p->flow_id), free(p->probs);
  memset(p, 0, sizeof *p);
}

// Copies one batch's softmax and argmax into p at row offset `at`.
static tl_status take_batch(tl_predictions *p, const tl_batch *b, tl_tensor *probs,
                            int64_t at) {
  int K = p->K;
  const float *pr = probs->data; // [B, K], contiguous
  for (int r = 0; r < b->B; r++) {
    int32_t y = b->labels[r];
    if (y < 0 || y >= K) {
      tl_set_error("row %lld has label %d; the classifier has %d classes",
                   (long long)(at + r), y, K);
      return TL_ERR;
    }
    int best = 0;
    for (int c = 0; c < K; c++) {
      p->probs[(at + r) * K + c] = pr[r * K + c];
      if (pr[r * K + c] > pr[r * K + best]) best = c;
    }
    p->y_true[at + r] = y;
    p->y_pred[at + r] = best;
    p->flow_id[at + r] = b->flow_ids[r];
  }
  return TL_OK;
}

tl_status tl_classifier_predict(tl_bert *m, tl_loader *ld, tl_arena *arena, tl_predictions *p) {
  memset(p, 0, sizeof *p);
  p->K = m->cfg.classes;
  p->n = tl_loader_rows(ld);
  size_t n = (size_t)(p->n > 0 ? p->n : 1);
  p->y_true = tl_xmalloc(n * sizeof *p->y_true);
  p->y_pred = tl_xmalloc(n * sizeof *p->y_pred);
  p->flow_id = tl_xmalloc(n * sizeof *p->flow_id);
  p->probs = tl_xmalloc(n * (size_t)p->K * sizeof *p->probs);

  // Every batch of the split once, in stored order, without dropout or tape.
  tl_loader_seek(ld, (tl_loader_pos){0, 0});
  bool was = tl_grad_enabled();
  tl_set_grad_enabled(false);
  tl_set_arena(arena);
  int64_t at = 0, batches = tl_loader_batches_per_epoch(ld);
  double loss_sum = 0;
  tl_status st = TL_OK;
  for (int64_t i = 0; i < batches && st == TL_OK; i++) {
    tl_arena_reset(arena);
    tl_tape_reset();
    tl_batch b;
    if ((st = tl_loader_next(ld, &b)) != TL_OK) break;
    const int64_t bt[2] = {b.B, b.T};
    tl_tensor *ids = tl_from_data(TL_I32, 2, bt, b.tokens);
    tl_tensor *seg = tl_from_data(TL_I32, 2, bt, b.segments);
    tl_tensor *mask = tl_from_data(TL_I32, 2, bt, b.key_mask);
    tl_tensor *labels = tl_from_data(TL_I32, 1, (int64_t[]){b.B}, b.labels);
    tl_bert_rng rng = {.training = false};
    tl_tensor *logits = tl_bert_classify(m, ids, seg, mask, &rng); // [B, K]
    st = take_batch(p, &b, tl_softmax(logits), at);
    if (st == TL_OK) loss_sum += (double)*(float *)tl_cross_entropy(logits, labels, -1)->data * b.B;
    at += b.B;
  }
  tl_set_grad_enabled(was);
  p->loss = at > 0 ? loss_sum / (double)at : 0;
  if (st != TL_OK) tl_predictions_free(p);
  return st;
}

// --- the shortcut audit and the majority baseline -------------------------------------

// Header features and labels of every row of one split, read a block at a time.
static tl_status split_features(const char *dir, const char *split,
                                const tl_shortcut_detok *d, float **X, int32_t **y,
                                int64_t *n) {
  *X = NULL, *y = NULL, *n = 0;
  tl_shards *s = tl_shards_open(dir, split);
  if (!s) return TL_ERR;
  int64_t rows = tl_shards_rows(s), block = 1024;
  int S = tl_shards_seq_len(s);
  *X = tl_xmalloc((size_t)(rows > 0 ? rows : 1) * TL_SC_NUM_FEATURES * sizeof **X);
  *y = tl_xmalloc((size_t)(rows > 0 ? rows : 1) * sizeof **y);
  int32_t *tok = tl_xmalloc((size_t)block * (size_t)S * sizeof *tok);
  tl_status st = TL_OK;
  for (int64_t at = 0; at < rows && st == TL_OK; at += block) {
    int64_t k = rows - at < block ? rows - at : block;
    st = tl_shards_read(s, at, k, &(tl_shard_rows){.tokens = tok, .labels = *y + at});
    for (int64_t i = 0; i < k && st == TL_OK; i++)
      tl_shortcut_row_features(d, tok + i * S, S, *X + (at + i) * TL_SC_NUM_FEATURES);
  }
  free(tok);
  tl_shards_close(s);
  *n = rows;
  return st;
}

typedef struct {
  tl_metrics shortcut, majority;
  bool have_shortcut, have_majority;
  char root[64];
} baselines;

// Fits the header-only tree on the train split and scores it on the split the
// model was scored on; the majority class comes from the same train labels.
static tl_status run_baselines(const char *dir, const char *split, const tl_predictions *pred,
                               int K, bool shortcut, baselines *bl) {
  tl_shard_info info;
  if (tl_shard_info_read(dir, &info) != TL_OK) return TL_ERR;
  tl_shortcut_detok *d = tl_shortcut_detok_new(NULL, info.packet_bytes);
  float *Xtr = NULL, *Xte = NULL;
  int32_t *ytr = NULL, *yte = NULL, *yhat = NULL;
  int64_t ntr = 0, nte = 0;
  tl_status st = split_features(dir, "train", d, &Xtr, &ytr, &ntr);
  if (st == TL_OK && ntr > 0) {
    st = tl_report_majority(ytr, ntr, pred->y_true, pred->n, K, &bl->majority);
    bl->have_majority = st == TL_OK;
  }
  if (st == TL_OK && shortcut && ntr > 0) st = split_features(dir, split, d, &Xte, &yte, &nte);
  if (st == TL_OK && shortcut && ntr > 0) {
    TL_ASSERTF(nte == pred->n, "split read twice gave %lld and %lld rows", (long long)nte,
               (long long)pred->n);
    tl_shortcut_tree *t = tl_shortcut_fit(Xtr, ytr, ntr, TL_SC_NUM_FEATURES, K, NULL);
    if (!t) st = TL_ERR;
    if (t) {
      yhat = tl_xmalloc((size_t)(nte > 0 ? nte : 1) * sizeof *yhat);
      tl_shortcut_predict(t, Xte, nte, yhat);
      int rf = tl_shortcut_tree_root_feature(t);
      snprintf(bl->root, sizeof bl->root, "%s", rf >= 0 ? tl_shortcut_feature_name(rf) : "");
      tl_info("shortcut audit: a %d-node tree on header fields, first split on %s",
              tl_shortcut_tree_nodes(t), rf >= 0 ? tl_shortcut_feature_name(rf) : "(none)");
      tl_shortcut_tree_free(t);
      st = tl_metrics_compute(yte, yhat, nte, K, &bl->shortcut);
      bl->have_shortcut = st == TL_OK;
    }
  }
  if (ntr == 0 && st == TL_OK)
    tl_warn("%s: no train split: no shortcut audit, no majority baseline", dir);
  free(Xtr), free(Xte), free(ytr), free(yte), free(yhat);
  tl_shortcut_detok_free(d);
  return st;
}

// --- tl-eval ----------------------------------------------------------------------

// The classifier's class count from the checkpoint's classifier.weight [K, C].
static tl_status checkpoint_classes(const char *path, int *K) {
  tl_safetensors sf;
  if (tl_safetensors_open(&sf, path) != TL_OK) return TL_ERR;
  const tl_st_tensor *w = tl_safetensors_find(&sf, "classifier.weight");
  tl_status st = TL_OK;
  if (!w || w->rank != 2) {
    tl_set_error("%s: no classifier.weight: not a fine-tuned checkpoint (tl-finetune makes "
                 "them)", path);
    st = TL_ERR;
  } else {
    *K = (int)w->shape[0];
  }
  tl_safetensors_close(&sf);
  return st;
}

// The class names the shard set gives must be those the model was trained on.
static tl_status check_labels(const char *checkpoint, tl_loader *ld, int K) {
  if (tl_loader_n_labels(ld) != K) {
    tl_set_error("%s: the checkpoint classifies %d classes, the shard set has %d",
                 checkpoint, K, tl_loader_n_labels(ld));
    return TL_ERR;
  }
  char path[4096];
  cJSON *o = find_labels_json(checkpoint, path, sizeof path);
  if (!o) return TL_OK;
  const cJSON *names = cJSON_GetObjectItemCaseSensitive(o, "labels");
  tl_status st = TL_OK;
  for (int c = 0; c < K && st == TL_OK; c++) {
    const cJSON *v = cJSON_GetArrayItem(names, c);
    if (!cJSON_IsString(v) || strcmp(v->valuestring, tl_loader_label_name(ld, c))) {
      tl_set_error("%s: class %d is '%s' for the model but '%s' in the shard set", path, c,
                   cJSON_IsString(v) ? v->valuestring : "?", tl_loader_label_name(ld, c));
      st = TL_ERR;
    }
  }
  cJSON_Delete(o);
  return st;
}

static tl_status make_dirs(const char *dir) {
  char buf[4096];
  snprintf(buf, sizeof buf, "%s", dir);
  for (char *s = buf + 1; *s; s++) {
    if (*s != '/') continue;
    *s = 0;
    mkdir(buf, 0777);
    *s = '/';
  }
  if (mkdir(buf, 0777) != 0 && errno != EEXIST) {
    tl_set_error("%s: cannot create folder: %s", dir, strerror(errno));
    return TL_ERR;
  }
  return TL_OK;
}

typedef struct {
  tl_config cfg;
  tl_params params;
  tl_bert model;
  bool declared;
  tl_loader *ld;
  tl_arena arena;
  tl_predictions pred;
  tl_metrics metrics;
  baselines bl;
} eval_ctx;

static void eval_free(eval_ctx *e) {
  tl_metrics_free(&e->metrics);
  tl_metrics_free(&e->bl.shortcut);
  tl_metrics_free(&e->bl.majority);
  tl_predictions_free(&e->pred);
  tl_loader_close(e->ld);
  if (e->declared) tl_bert_free(&e->model);
  tl_params_free(&e->params);
  if (e->arena.base) {
    tl_tape_reset();
    tl_set_arena(NULL);
    tl_arena_free(&e->arena);
  }
}

// Model from the checkpoint's own config and classifier, weights loaded.
static tl_status load_classifier(eval_ctx *e, const char *path, int *K) {
  char *yaml = NULL;
  if (tl_checkpoint_peek(path, NULL, &yaml) != TL_OK) return TL_ERR;
  if (!yaml) {
    tl_set_error("%s: checkpoint holds no config (model sizes unknown)", path);
    return TL_ERR;
  }
  tl_config_defaults(&e->cfg);
  tl_status st = tl_config_load_string(&e->cfg, yaml, path);
  free(yaml);
  if (st == TL_OK) st = tl_config_resolve(&e->cfg);
  if (st == TL_OK) st = checkpoint_classes(path, K);
  if (st != TL_OK) return TL_ERR;
  tl_bert_config bc;
  tl_bert_config_from(&e->cfg, &bc);
  bc.pretrain_heads = false;
  bc.classes = *K;
  tl_params_init(&e->params);
  tl_bert_declare(&e->params, &bc, &e->model);
  e->declared = true;
  tl_params_alloc(&e->params);
  return tl_checkpoint_load(path, &e->params, NULL, NULL, false);
}

static void fill_summary(const eval_ctx *e, tl_eval_summary *s) {
  if (!s) return;
  *s = (tl_eval_summary){.n_classes = e->metrics.n_classes, .n = e->metrics.n,
                         .accuracy = e->metrics.accuracy, .macro_f1 = e->metrics.macro_f1,
                         .weighted_f1 = e->metrics.weighted_f1,
                         .shortcut_macro_f1 = e->bl.have_shortcut ? e->bl.shortcut.macro_f1 : NAN,
                         .majority_macro_f1 = e->bl.have_majority ? e->bl.majority.macro_f1 : NAN};
}

static tl_status write_report(eval_ctx *e, const tl_eval_opts *o, const char *split) {
  tl_shard_info info;
  if (tl_shard_info_read(o->data_dir, &info) != TL_OK) return TL_ERR;
  int K = e->metrics.n_classes;
  const char **names = tl_xmalloc((size_t)K * sizeof *names);
  for (int c = 0; c < K; c++) names[c] = tl_loader_label_name(e->ld, c);
  tl_report r = {.n_classes = K, .class_names = names, .n = e->pred.n,
                 .y_true = e->pred.y_true, .y_pred = e->pred.y_pred,
                 .flow_id = (const uint64_t *)e->pred.flow_id, .probs = e->pred.probs,
                 .model = &e->metrics, .shortcut = e->bl.have_shortcut ? &e->bl.shortcut : NULL,
                 .shortcut_desc = "per packet (first 5): IP version, header and total length, "
                                  "TOS, IP id / flow label, flags, TTL, protocol, TCP/UDP "
                                  "header length, TCP flags and window, ports, UDP length, "
                                  "payload length, first TCP option; no payload byte",
                 .shortcut_root = e->bl.root[0] ? e->bl.root : NULL,
                 .majority = e->bl.have_majority ? &e->bl.majority : NULL, .task = info.task,
                 .split = split, .split_policy = info.split_policy, .data_dir = o->data_dir,
                 .checkpoint = o->checkpoint};
  tl_status st = tl_report_write(&r, o->out_dir);
  if (st == TL_OK && o->print_table) tl_report_print(&r, stdout);
  if (!strcmp(info.split_policy, "packet"))
    tl_warn("%s was split by packet: one flow's packets are in train and test, so these "
            "figures are optimistic", o->data_dir);
  free(names);
  return st;
}

tl_status tl_eval_run(const tl_eval_opts *o, tl_eval_summary *summary) {
  const char *split = o->split ? o->split : "test";
  eval_ctx e = {0};
  int K = 0;
  if (o->threads > 0) omp_set_num_threads(o->threads);
  tl_status st = make_dirs(o->out_dir);
  if (st == TL_OK) st = load_classifier(&e, o->checkpoint, &K);

  // The split, read in stored order, checked against the model's classes.
  if (st == TL_OK) {
    tl_loader_opts lo = {.dir = o->data_dir, .split = split,
                         .batch_size = o->batch_size > 0 ? o->batch_size
                                                         : e.cfg.data.batch_size,
                         .seq_len = e.cfg.data.seq_len, .shuffle = false, .drop_last = false};
    e.ld = tl_loader_open(&lo);
    if (!e.ld) st = TL_ERR;
  }
  const char *task = st == TL_OK ? tl_loader_task(e.ld) : "";
  if (st == TL_OK && strcmp(task, "packet") && strcmp(task, "flow")) {
    tl_set_error("%s: shards are for task '%s'; tl-eval scores packet or flow shards",
                 o->data_dir, tl_loader_task(e.ld));
    st = TL_ERR;
  }
  if (st == TL_OK && tl_loader_seq_len(e.ld) > e.cfg.model.max_pos) {
    tl_set_error("%s: rows of %d tokens exceed the model's %d positions (%s)", o->data_dir,
                 tl_loader_seq_len(e.ld), e.cfg.model.max_pos, o->checkpoint);
    st = TL_ERR;
  }
  if (st == TL_OK) st = check_labels(o->checkpoint, e.ld, K);

  // Predict, score, compare with the baselines, write.
  if (st == TL_OK) {
    tl_arena_init(&e.arena, (size_t)e.cfg.train.arena_mb << 20);
    st = tl_classifier_predict(&e.model, e.ld, &e.arena, &e.pred);
  }
  if (st == TL_OK) st = tl_metrics_compute(e.pred.y_true, e.pred.y_pred, e.pred.n, K, &e.metrics);
  if (st == TL_OK) st = run_baselines(o->data_dir, split, &e.pred, K, o->shortcut, &e.bl);
  if (st == TL_OK) st = write_report(&e, o, split);
  if (st == TL_OK) fill_summary(&e, summary);
  eval_free(&e);
  return st;
}
