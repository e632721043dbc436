// Resume test: 20 steps straight and 10 + resume + 10 of a tiny BERT on a
// synthetic shard set give identical per-step losses and identical weights and
// AdamW moments, bit for bit (CPU, same thread count). Also checks the run
// folder (config.yaml, metrics.jsonl, keep_last) and that the loss falls.
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tests/train/synth_shards.h"
#include "train/bert.h"
#include "train/checkpoint.h"
#include "train/pretrain.h"

#define STEPS 20

static char g_root[64], g_shards[96];

static void setup(void) {
  snprintf(g_root, sizeof g_root, "/tmp/tl_test_resume_XXXXXX");
  cr_assert_not_null(mkdtemp(g_root));
  snprintf(g_shards, sizeof g_shards, "%s/shards", g_root);
  cr_assert_eq(tl_test_make_pretrain_shards(g_shards, 30, 6, 32, 64, 3), TL_OK, "%s",
               tl_last_error());
}

static void teardown(void) {
  char cmd[128];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_root);
  if (system(cmd) != 0) fprintf(stderr, "cannot remove %s\n", g_root);
}

TestSuite(resume, .init = setup, .fini = teardown);

// A tiny model with every feature that carries state across steps turned on:
// dropout, accumulation, clipping, warmup + decay, weight decay, evaluation.
static void tiny_config(tl_config *c, const char *run) {
  tl_config_defaults(c);
  const char *sets[] = {"model.preset=tiny", "model.hidden=32", "model.heads=2",
                        "model.layers=2", "model.max_pos=32", "data.batch_size=4",
                        "optim.lr=1e-3", "optim.warmup=0.2", "optim.clip_norm=0.5",
                        "train.accum_steps=2", "train.eval_every=5", "train.eval_batches=2",
                        "train.arena_mb=64", "ckpt.every=5", "ckpt.keep_last=2",
                        "log.every=1"};
  for (size_t i = 0; i < sizeof sets / sizeof *sets; i++)
    cr_assert_eq(tl_config_set(c, sets[i]), TL_OK, "%s", tl_last_error());
  snprintf(c->data.dir, sizeof c->data.dir, "%s", g_shards);
  snprintf(c->run.dir, sizeof c->run.dir, "%s/%s", g_root, run);
  c->train.steps = STEPS;
  cr_assert_eq(tl_config_resolve(c), TL_OK, "%s", tl_last_error());
}

typedef struct {
  double loss[STEPS + 1];
  int64_t seen[STEPS + 1];
} loss_log;

static void record(void *ctx, const tl_step_metrics *m) {
  loss_log *log = ctx;
  cr_assert(m->step >= 1 && m->step <= STEPS);
  log->loss[m->step] = m->loss;
  log->seen[m->step]++;
}

// Loads a run's final checkpoint into a fresh block shaped by cfg.
static void load_final(const tl_config *c, tl_params *p, tl_bert *m, tl_ckpt_state *s) {
  tl_bert_config bc;
  tl_bert_config_from(c, &bc);
  tl_params_init(p);
  tl_bert_declare(p, &bc, m);
  tl_params_alloc(p);
  char path[1200];
  cr_assert_eq(tl_checkpoint_latest(c->run.dir, path, sizeof path), TL_OK);
  cr_assert_eq(tl_checkpoint_load(path, p, s, NULL, true), TL_OK, "%s", tl_last_error());
}

static int count_lines(const char *path, const char *needle) {
  FILE *f = fopen(path, "r");
  cr_assert_not_null(f, "%s", path);
  char line[4096];
  int n = 0;
  while (fgets(line, sizeof line, f)) n += strstr(line, needle) != NULL;
  fclose(f);
  return n;
}

Test(resume, straight_equals_interrupted_and_resumed) {
  // Run A: 20 steps straight.
  tl_config a;
  tiny_config(&a, "a");
  loss_log la = {0};
  tl_pretrain_opts oa = {.on_step = record, .ctx = &la};
  cr_assert_eq(tl_pretrain_run(&a, &oa), TL_OK, "%s", tl_last_error());

  // Run B: stopped after 10, then resumed from its folder with the saved config.
  tl_config b;
  tiny_config(&b, "b");
  loss_log lb = {0};
  tl_pretrain_opts ob = {.stop_after = 10, .on_step = record, .ctx = &lb};
  cr_assert_eq(tl_pretrain_run(&b, &ob), TL_OK, "%s", tl_last_error());
  tl_config b2;
  cr_assert_eq(tl_pretrain_resume_config(b.run.dir, &b2, NULL, 0), TL_OK, "%s",
               tl_last_error());
  cr_assert_eq(tl_config_resolve(&b2), TL_OK);
  tl_pretrain_opts ob2 = {.resume_dir = b.run.dir, .on_step = record, .ctx = &lb};
  cr_assert_eq(tl_pretrain_run(&b2, &ob2), TL_OK, "%s", tl_last_error());

  // Every step ran once in each, with the same loss bits.
  for (int s = 1; s <= STEPS; s++) {
    cr_assert_eq(la.seen[s], 1);
    cr_assert_eq(lb.seen[s], 1, "step %d ran %lld times in B", s, (long long)lb.seen[s]);
    cr_assert(la.loss[s] == lb.loss[s], "step %d: %.9g vs %.9g", s, la.loss[s], lb.loss[s]);
    cr_assert(isfinite(la.loss[s]));
  }
  // Not a model that does nothing: the loss moved.
  cr_assert_neq(la.loss[1], la.loss[STEPS]);

  // Same weights and moments, bit for bit, and the same state.
  tl_params pa, pb;
  tl_bert ma, mb;
  tl_ckpt_state sa, sb;
  load_final(&a, &pa, &ma, &sa);
  load_final(&b, &pb, &mb, &sb);
  cr_assert_eq(sa.step, STEPS);
  cr_assert_eq(sb.step, STEPS);
  cr_assert_eq(sa.adam_t, sb.adam_t);
  cr_assert_eq(sa.loader_epoch, sb.loader_epoch);
  cr_assert_eq(sa.loader_cursor, sb.loader_cursor);
  cr_assert_eq(pa.numel, pb.numel);
  cr_assert_arr_eq(pa.values, pb.values, pa.numel * sizeof(float), "weights differ");
  cr_assert_arr_eq(pa.m, pb.m, pa.numel * sizeof(float), "first moments differ");
  cr_assert_arr_eq(pa.v, pb.v, pa.numel * sizeof(float), "second moments differ");
  tl_bert_free(&ma), tl_bert_free(&mb);
  tl_params_free(&pa), tl_params_free(&pb);

  // The run folder: config, one train line per step, evaluations, two checkpoints.
  char path[1200];
  struct stat st;
  snprintf(path, sizeof path, "%s/config.yaml", a.run.dir);
  cr_assert_eq(stat(path, &st), 0);
  tl_config back;
  tl_config_defaults(&back);
  cr_assert_eq(tl_config_load(&back, path), TL_OK, "%s", tl_last_error());
  cr_assert_eq(back.model.hidden, 32);
  snprintf(path, sizeof path, "%s/metrics.jsonl", b.run.dir);
  cr_assert_eq(count_lines(path, "\"split\":\"train\""), STEPS);
  cr_assert_eq(count_lines(path, "\"split\":\"valid\""), STEPS / 5 + 1, "0, 5, ... 20");
  cr_assert_eq(count_lines(path, "\"tokens_per_s\""), STEPS);
  for (int s = 5; s <= STEPS; s += 5) {
    snprintf(path, sizeof path, "%s/checkpoints/step-%08d.safetensors", a.run.dir, s);
    cr_assert_eq(stat(path, &st) == 0, s >= STEPS - 5, "keep_last 2: step %d", s);
  }

  // A crash after step 20 with only step 15 on disk: resuming repeats steps 16-20
  // with the same bits, and metrics.jsonl still holds every step once.
  snprintf(path, sizeof path, "%s/checkpoints/step-%08d.safetensors", b.run.dir, STEPS);
  cr_assert_eq(unlink(path), 0);
  loss_log lc = {0};
  tl_pretrain_opts oc = {.resume_dir = b.run.dir, .on_step = record, .ctx = &lc};
  cr_assert_eq(tl_pretrain_run(&b2, &oc), TL_OK, "%s", tl_last_error());
  for (int s = 16; s <= STEPS; s++) cr_assert(lc.loss[s] == la.loss[s], "step %d again", s);
  load_final(&a, &pa, &ma, &sa);
  load_final(&b, &pb, &mb, &sb);
  cr_assert_arr_eq(pa.values, pb.values, pa.numel * sizeof(float), "weights after crash");
  tl_bert_free(&ma), tl_bert_free(&mb);
  tl_params_free(&pa), tl_params_free(&pb);
  snprintf(path, sizeof path, "%s/metrics.jsonl", b.run.dir);
  cr_assert_eq(count_lines(path, "\"split\":\"train\""), STEPS);

  // A new run refuses a folder that has checkpoints.
  cr_assert_eq(tl_pretrain_run(&a, &(tl_pretrain_opts){0}), TL_ERR);
  cr_assert(strstr(tl_last_error(), "--resume"), "%s", tl_last_error());
}
