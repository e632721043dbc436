// test_finetune.c: tl-finetune on a synthetic packet shard set whose classes
// differ only in their payload. Checks that the model learns them while the
// header-only shortcut stays near chance, that the run folder is complete,
// that a run stopped after one epoch and resumed ends with the same weights and
// figures as an uninterrupted one (bit for bit on CPU), and tl-eval's refusals.
#include <cjson/cJSON.h>
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "data/dataset.h"
#include "train/bert.h"
#include "train/checkpoint.h"
#include "train/finetune.h"
#include "train/pretrain.h"

#define K 3
static char g_root[64], g_shards[96];

static uint64_t g_state = 12345;
static uint8_t rnd(void) {
  g_state = g_state * 6364136223846793005ULL + 1442695040888963407ULL;
  return (uint8_t)(g_state >> 56);
}

// An IPv4/UDP packet of 48 bytes: header fields drawn the same way for every
// class; the payload starts with four bytes that name the class (so the class's
// bigram tokens repeat across rows and can be learnt), then random bytes.
static void synth_packet(uint8_t *p, int cls) {
  for (int i = 0; i < 48; i++) p[i] = rnd();
  p[0] = 0x45, p[1] = 0, p[2] = 0, p[3] = 48, p[6] = 0x40, p[7] = 0;
  p[8] = (uint8_t)(32 + rnd() % 64), p[9] = 17;
  memset(p + 12, 0, 12); // addresses and ports zeroed (anonymous policy)
  p[24] = 0, p[25] = 28;
  for (int i = 28; i < 32; i++) p[i] = (uint8_t)(0x10 + 0x20 * cls + i);
}

static void make_shards(void) {
  tl_dataset_options o;
  tl_dataset_options_default(&o, TL_TASK_PACKET);
  o.out_dir = g_shards;
  o.seq_len = 32;
  o.seed = 5;
  o.min_per_class = 1;
  const char *names[K] = {"alpha", "beta", "gamma"}, *files[] = {"synthetic.pcap"};
  tl_dataset_builder *b = tl_dataset_builder_open(&o, names, K, files, 1);
  cr_assert(b, "%s", tl_last_error());
  uint8_t pkt[48];
  const uint8_t *pkts[] = {pkt};
  size_t lens[] = {48};
  for (int f = 0; f < 90; f++)
    for (int i = 0; i < 3; i++) {
      synth_packet(pkt, f % K);
      cr_assert_eq(tl_dataset_add_sample(b, f % K, (uint64_t)f + 1, 0, pkts, lens, 1), TL_OK,
                   "%s", tl_last_error());
    }
  const tl_dataset_summary *s;
  cr_assert_eq(tl_dataset_builder_finish(b, &s), TL_OK, "%s", tl_last_error());
  tl_dataset_builder_free(b);
}

static void setup(void) {
  snprintf(g_root, sizeof g_root, "/tmp/tl_test_finetune_XXXXXX");
  cr_assert_not_null(mkdtemp(g_root));
  snprintf(g_shards, sizeof g_shards, "%s/shards", g_root);
  make_shards();
}

static void teardown(void) {
  char cmd[128];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_root);
  if (getenv("TL_KEEP")) return;
  if (system(cmd) != 0) fprintf(stderr, "cannot remove %s\n", g_root);
}

TestSuite(finetune, .init = setup, .fini = teardown, .timeout = 600);

static void small_config(tl_config *c, const char *run) {
  tl_config_defaults(c);
  const char *sets[] = {"model.preset=tiny", "model.hidden=64", "model.heads=2",
                        "model.layers=2", "model.max_pos=32", "data.batch_size=16",
                        "optim.lr=2e-3", "optim.warmup=0.1", "train.epochs=8",
                        "train.arena_mb=64", "ckpt.keep_last=2", "log.every=5"};
  for (size_t i = 0; i < sizeof sets / sizeof *sets; i++)
    cr_assert_eq(tl_config_set(c, sets[i]), TL_OK, "%s", tl_last_error());
  snprintf(c->data.dir, sizeof c->data.dir, "%s", g_shards);
  snprintf(c->run.dir, sizeof c->run.dir, "%s/%s", g_root, run);
  cr_assert_eq(tl_config_resolve(c), TL_OK, "%s", tl_last_error());
}

static cJSON *read_json(const char *path) {
  FILE *f = fopen(path, "rb");
  cr_assert(f, "cannot open %s", path);
  fseek(f, 0, SEEK_END);
  long len = ftell(f);
  fseek(f, 0, SEEK_SET);
  char *text = malloc((size_t)len + 1);
  cr_assert_eq(fread(text, 1, (size_t)len, f), (size_t)len);
  text[len] = 0;
  fclose(f);
  cJSON *o = cJSON_Parse(text);
  free(text);
  cr_assert(o, "bad JSON in %s", path);
  return o;
}

static double eval_f1(const char *run, const char *which) {
  char p[256];
  snprintf(p, sizeof p, "%s/%s/eval.json", g_root, run);
  cJSON *o = read_json(p);
  const cJSON *at = which ? cJSON_GetObjectItemCaseSensitive(o, which) : o;
  double v = cJSON_GetObjectItemCaseSensitive(at, "macro_f1")->valuedouble;
  cJSON_Delete(o);
  return v;
}

// The weights of RUN/best.safetensors, or (last) of the newest checkpoint.
static float *run_weights(const tl_config *c, bool last, size_t *numel) {
  tl_bert_config bc;
  tl_bert_config_from(c, &bc);
  bc.pretrain_heads = false;
  bc.classes = K;
  tl_params p;
  tl_bert m;
  tl_params_init(&p);
  tl_bert_declare(&p, &bc, &m);
  tl_params_alloc(&p);
  char path[1200];
  if (last) cr_assert_eq(tl_checkpoint_latest(c->run.dir, path, sizeof path), TL_OK);
  else snprintf(path, sizeof path, "%s/best.safetensors", c->run.dir);
  cr_assert_eq(tl_checkpoint_load(path, &p, NULL, NULL, false), TL_OK, "%s", tl_last_error());
  float *w = malloc(p.numel * sizeof *w);
  memcpy(w, p.values, p.numel * sizeof *w);
  *numel = p.numel;
  tl_bert_free(&m);
  tl_params_free(&p);
  return w;
}

typedef struct {
  volatile sig_atomic_t *stop;
  int stop_after;
  int epochs_seen;
} epoch_log;

static void on_epoch(void *ctx, int epoch, double f1) {
  epoch_log *l = ctx;
  l->epochs_seen++;
  if (l->stop && epoch == l->stop_after) *l->stop = 1;
}

Test(finetune, learns_payload_classes_and_resumes_exactly) {
  // Straight: eight epochs (fewer leave the result at the mercy of the row order).
  tl_config a;
  small_config(&a, "straight");
  epoch_log la = {0};
  tl_finetune_opts oa = {.on_epoch = on_epoch, .ctx = &la};
  cr_assert_eq(tl_finetune_run(&a, &oa), TL_OK, "%s", tl_last_error());
  cr_assert_eq(la.epochs_seen, 8);

  // The classes live in the payload only: the model finds them, the shortcut cannot.
  double f1 = eval_f1("straight", NULL), shortcut = eval_f1("straight", "shortcut");
  fprintf(stderr, "synthetic: model macro F1 %.4f, shortcut %.4f\n", f1, shortcut);
  cr_assert_gt(f1, 0.9, "model macro F1 %.4f", f1);
  cr_assert_lt(shortcut, 1.0 / K + 0.25, "shortcut macro F1 %.4f", shortcut);
  const char *files[] = {"config.yaml", "labels.json", "metrics.jsonl", "best.safetensors",
                         "predictions.csv", "confusion.csv", "confusion.svg"};
  struct stat sb;
  char p[256];
  for (int i = 0; i < 7; i++) {
    snprintf(p, sizeof p, "%s/straight/%s", g_root, files[i]);
    cr_assert_eq(stat(p, &sb), 0, "missing %s", p);
  }

  // Interrupted after epoch 1 (as Ctrl-C would), then resumed to the end.
  tl_config b;
  small_config(&b, "resumed");
  volatile sig_atomic_t stop = 0;
  epoch_log lb = {.stop = &stop, .stop_after = 1};
  tl_finetune_opts ob = {.stop = &stop, .on_epoch = on_epoch, .ctx = &lb};
  cr_assert_eq(tl_finetune_run(&b, &ob), TL_OK, "%s", tl_last_error());
  cr_assert_eq(lb.epochs_seen, 1);
  snprintf(p, sizeof p, "%s/resumed/eval.json", g_root);
  cr_assert_neq(stat(p, &sb), 0, "a stopped run scores no test split");
  tl_config b2;
  cr_assert_eq(tl_finetune_resume_config(b.run.dir, &b2), TL_OK, "%s", tl_last_error());
  snprintf(b2.run.dir, sizeof b2.run.dir, "%s", b.run.dir);
  cr_assert_eq(tl_config_resolve(&b2), TL_OK, "%s", tl_last_error());
  stop = 0;
  lb.stop = NULL;
  tl_finetune_opts ob2 = {.resume_dir = b.run.dir, .on_epoch = on_epoch, .ctx = &lb};
  cr_assert_eq(tl_finetune_run(&b2, &ob2), TL_OK, "%s", tl_last_error());
  cr_assert_eq(lb.epochs_seen, 8);

  for (int last = 0; last < 2; last++) {
    size_t na, nb;
    float *wa = run_weights(&a, last, &na), *wb = run_weights(&b, last, &nb);
    cr_assert_eq(na, nb);
    cr_assert_eq(memcmp(wa, wb, na * sizeof *wa), 0, "%s weights differ after resume",
                 last ? "final" : "best");
    free(wa);
    free(wb);
  }
  cr_assert_eq(eval_f1("resumed", NULL), f1);
}

Test(finetune, eval_refuses_mismatched_inputs) {
  // A pre-training-style checkpoint (no classifier) is refused by name.
  tl_config c;
  small_config(&c, "refuse");
  tl_bert_config bc;
  tl_bert_config_from(&c, &bc);
  tl_params p;
  tl_bert m;
  tl_params_init(&p);
  tl_bert_declare(&p, &bc, &m);
  tl_params_alloc(&p);
  char *yaml = tl_config_to_yaml(&c);
  char ckpt[256], out[256];
  snprintf(ckpt, sizeof ckpt, "%s/pre.safetensors", g_root);
  snprintf(out, sizeof out, "%s/eval-out", g_root);
  tl_ckpt_state s = {.best = NAN};
  cr_assert_eq(tl_checkpoint_save(ckpt, &p, &s, yaml, false), TL_OK, "%s", tl_last_error());
  tl_eval_opts eo = {.checkpoint = ckpt, .data_dir = g_shards, .out_dir = out};
  cr_assert_eq(tl_eval_run(&eo, NULL), TL_ERR);
  cr_assert(strstr(tl_last_error(), "classifier"), "%s", tl_last_error());
  tl_bert_free(&m);
  tl_params_free(&p);

  // A classifier of another class count is refused before any scoring.
  bc.pretrain_heads = false;
  bc.classes = K + 1;
  tl_params_init(&p);
  tl_bert_declare(&p, &bc, &m);
  tl_params_alloc(&p);
  cr_assert_eq(tl_checkpoint_save(ckpt, &p, &s, yaml, false), TL_OK, "%s", tl_last_error());
  cr_assert_eq(tl_eval_run(&eo, NULL), TL_ERR);
  cr_assert(strstr(tl_last_error(), "4 classes") && strstr(tl_last_error(), "has 3"), "%s",
            tl_last_error());
  tl_bert_free(&m);
  tl_params_free(&p);
  free(yaml);
}

// The shipped configs load, resolve, and carry the published recipe
// (REFERENCE.md: packet 128 tokens lr 2e-5, flow 512 tokens lr 6e-5, 10 epochs,
// batch 32, 10% warmup); the demo ones are small and short.
Test(finetune, shipped_configs) {
  struct {
    const char *name;
    int seq_len, epochs;
    double lr;
  } want[] = {{"finetune-packet", 128, 10, 2e-5}, {"finetune-flow", 512, 10, 6e-5},
              {"demo-finetune-packet", 128, 3, 5e-4}, {"demo-finetune-flow", 320, 3, 5e-4}};
  for (int i = 0; i < 4; i++) {
    char path[512];
    snprintf(path, sizeof path, "%s/configs/%s.yaml", TL_SOURCE_DIR, want[i].name);
    tl_config c;
    tl_config_defaults(&c);
    cr_assert_eq(tl_config_load(&c, path), TL_OK, "%s", tl_last_error());
    cr_assert_eq(tl_config_resolve(&c), TL_OK, "%s", tl_last_error());
    cr_assert_eq(c.data.seq_len, want[i].seq_len, "%s", want[i].name);
    cr_assert_eq(c.train.epochs, want[i].epochs, "%s", want[i].name);
    cr_assert_float_eq(c.optim.lr, want[i].lr, 1e-12, "%s", want[i].name);
    cr_assert_eq(c.data.batch_size, 32, "%s", want[i].name);
    cr_assert_float_eq(c.optim.warmup, 0.1, 1e-12, "%s", want[i].name);
    cr_assert(c.model.init[0], "%s names a pre-trained model", want[i].name);
    if (!strncmp(want[i].name, "demo", 4)) cr_assert_eq(c.model.hidden, 128, "tiny");
    else cr_assert_eq(c.model.hidden, 768, "base");
  }
}
