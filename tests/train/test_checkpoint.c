// Checkpoint tests: exact round trip of weights, moments, state and config;
// keep_last pruning; a writer killed mid-write leaves the previous checkpoint
// intact; wrong files rejected with a reason.
#include <criterion/criterion.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "train/checkpoint.h"
#include "train/safetensors.h"

// A small model-like block: names and shapes as a BERT would have.
static void make_params(tl_params *p, int64_t big) {
  tl_params_init(p);
  tl_params_add(p, "bert.embeddings.word_embeddings.weight", 2, (int64_t[]){big, 8}, false);
  tl_params_add(p, "bert.embeddings.LayerNorm.bias", 1, (int64_t[]){8}, true);
  tl_params_add(p, "cls.seq_relationship.weight", 2, (int64_t[]){2, 8}, false);
  tl_params_alloc(p);
}

static void fill(float *x, size_t n, uint32_t seed) {
  uint32_t s = seed * 2654435761u + 12345;
  for (size_t i = 0; i < n; i++) {
    s ^= s << 13, s ^= s >> 17, s ^= s << 5;
    x[i] = (float)s / 4294967296.0f - 0.5f;
  }
}

static void fill_all(tl_params *p, uint32_t seed) {
  fill(p->values, p->numel, seed);
  fill(p->m, p->numel, seed + 1);
  fill(p->v, p->numel, seed + 2);
}

static char *make_tmpdir(void) {
  static char dir[64];
  snprintf(dir, sizeof dir, "/tmp/tl_test_ckpt_XXXXXX");
  cr_assert_not_null(mkdtemp(dir));
  return dir;
}

static void rm_rf(const char *dir) {
  char cmd[256];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
  cr_assert_eq(system(cmd), 0);
}

// Compares the parameters' regions (padding between parameters excluded).
static void assert_same_block(const tl_params *a, const tl_params *b, bool moments) {
  for (int k = 0; k < a->count; k++) {
    size_t off = a->info[k].offset, n = (size_t)tl_numel(a->info[k].tensor);
    cr_assert_arr_eq(a->values + off, b->values + off, n * sizeof(float), "values %d", k);
    if (!moments) continue;
    cr_assert_arr_eq(a->m + off, b->m + off, n * sizeof(float), "m %d", k);
    cr_assert_arr_eq(a->v + off, b->v + off, n * sizeof(float), "v %d", k);
  }
}

Test(checkpoint, round_trip_exact) {
  char *dir = make_tmpdir();
  tl_params a, b;
  make_params(&a, 50);
  make_params(&b, 50);
  fill_all(&a, 1);
  tl_ckpt_state s = {.step = 1234, .adam_t = 1230, .seed = 18446744073709551615ULL,
                     .loader_epoch = 3, .loader_cursor = 77, .best = 0.8125};
  const char *yaml = "train:\n  steps: 20\n";
  char path[128];
  snprintf(path, sizeof path, "%s/a.safetensors", dir);
  cr_assert_eq(tl_checkpoint_save(path, &a, &s, yaml, true), TL_OK, "%s", tl_last_error());

  tl_ckpt_state r;
  char *cfg = NULL;
  cr_assert_eq(tl_checkpoint_load(path, &b, &r, &cfg, true), TL_OK, "%s", tl_last_error());
  assert_same_block(&a, &b, true);
  cr_assert_eq(r.step, s.step);
  cr_assert_eq(r.adam_t, s.adam_t);
  cr_assert_eq(r.seed, s.seed);
  cr_assert_eq(r.loader_epoch, s.loader_epoch);
  cr_assert_eq(r.loader_cursor, s.loader_cursor);
  cr_assert_eq(r.best, s.best);
  cr_assert_str_eq(cfg, yaml);
  free(cfg);

  // The file is plain safetensors: moments under their documented names.
  tl_safetensors sf;
  cr_assert_eq(tl_safetensors_open(&sf, path), TL_OK);
  cr_assert_not_null(tl_safetensors_find(&sf, "optim.m.cls.seq_relationship.weight"));
  cr_assert_not_null(tl_safetensors_find(&sf, "optim.v.bert.embeddings.LayerNorm.bias"));
  cr_assert_eq(sf.count, 9);
  tl_safetensors_close(&sf);

  // Weights only: no moments in the file, and loading without them works.
  s.best = NAN;
  cr_assert_eq(tl_checkpoint_save(path, &a, &s, NULL, false), TL_OK);
  tl_params c;
  make_params(&c, 50);
  cr_assert_eq(tl_checkpoint_load(path, &c, &r, &cfg, false), TL_OK, "%s", tl_last_error());
  assert_same_block(&a, &c, false);
  cr_assert_null(cfg);
  cr_assert(isnan(r.best));
  cr_assert_eq(tl_checkpoint_load(path, &c, NULL, NULL, true), TL_ERR, "moments required");
  cr_assert(strstr(tl_last_error(), "optim.m."), "%s", tl_last_error());
  tl_params_free(&a);
  tl_params_free(&b);
  tl_params_free(&c);
  rm_rf(dir);
}

Test(checkpoint, wrong_files_rejected) {
  char *dir = make_tmpdir();
  tl_params a, other;
  make_params(&a, 10);
  make_params(&other, 11); // a different embedding shape
  char path[128];
  snprintf(path, sizeof path, "%s/a.safetensors", dir);
  tl_ckpt_state s = {.step = 1};
  cr_assert_eq(tl_checkpoint_save(path, &a, &s, NULL, true), TL_OK);
  cr_assert_eq(tl_checkpoint_load(path, &other, NULL, NULL, true), TL_ERR);
  cr_assert(strstr(tl_last_error(), "word_embeddings"), "%s", tl_last_error());

  // A safetensors file without tl metadata is not a checkpoint.
  float x = 1;
  tl_st_item it = {.name = "x", .dtype = TL_F32, .rank = 1, .shape = {1}, .data = &x};
  cr_assert_eq(tl_safetensors_write(path, &it, 1, NULL, 0), TL_OK);
  cr_assert_eq(tl_checkpoint_load(path, &a, NULL, NULL, false), TL_ERR);
  cr_assert(strstr(tl_last_error(), "not a tl checkpoint"), "%s", tl_last_error());
  tl_params_free(&a);
  tl_params_free(&other);
  rm_rf(dir);
}

Test(checkpoint, keep_last_and_latest) {
  char *dir = make_tmpdir();
  tl_params a;
  make_params(&a, 10);
  char path[1200], latest[1200];
  cr_assert_eq(tl_checkpoint_latest(dir, latest, sizeof latest), TL_ERR, "none yet");
  for (int step = 1; step <= 5; step++) {
    fill_all(&a, (uint32_t)step);
    tl_ckpt_state s = {.step = step * 10, .adam_t = step * 10};
    cr_assert_eq(tl_checkpoint_save_step(dir, &a, &s, NULL, 2, path, sizeof path), TL_OK,
                 "%s", tl_last_error());
  }
  // Only the newest two remain; a stale temp file does not count as a checkpoint.
  char buf[1200];
  snprintf(buf, sizeof buf, "%s/checkpoints/step-00000060.safetensors.tmp.999", dir);
  FILE *f = fopen(buf, "w");
  fputs("garbage", f);
  fclose(f);
  struct stat st;
  for (int step = 10; step <= 50; step += 10) {
    snprintf(buf, sizeof buf, "%s/checkpoints/step-%08d.safetensors", dir, step);
    cr_assert_eq(stat(buf, &st) == 0, step >= 40, "step %d", step);
  }
  cr_assert_eq(tl_checkpoint_latest(dir, latest, sizeof latest), TL_OK);
  snprintf(buf, sizeof buf, "%s/checkpoints/step-00000050.safetensors", dir);
  cr_assert_str_eq(latest, buf);
  tl_params_free(&a);
  rm_rf(dir);
}

// Reads a whole file (for byte comparison).
static char *slurp(const char *path, size_t *n) {
  FILE *f = fopen(path, "rb");
  cr_assert_not_null(f, "%s", path);
  fseek(f, 0, SEEK_END);
  *n = (size_t)ftell(f);
  fseek(f, 0, SEEK_SET);
  char *buf = malloc(*n);
  cr_assert_eq(fread(buf, 1, *n, f), *n);
  fclose(f);
  return buf;
}

Test(checkpoint, killed_writer_leaves_previous_intact) {
  char *dir = make_tmpdir();
  tl_params a;
  make_params(&a, 1 << 20); // 8M floats per region: ~100 MB files, slow enough to interrupt
  fill_all(&a, 7);
  tl_ckpt_state s = {.step = 100, .adam_t = 100};
  char first[1200];
  cr_assert_eq(tl_checkpoint_save_step(dir, &a, &s, "x: 1\n", 1, first, sizeof first), TL_OK);
  size_t n0;
  char *before = slurp(first, &n0);

  // Kill writers of step 200 at different moments; whatever the moment, the
  // newest checkpoint found must load completely, and step 100 is intact unless
  // step 200 fully replaced it (keep_last 1).
  int delays_ms[] = {1, 5, 20, 60};
  for (int i = 0; i < 4; i++) {
    pid_t pid = fork();
    if (pid == 0) {
      fill_all(&a, 8);
      tl_ckpt_state s2 = {.step = 200, .adam_t = 200};
      tl_checkpoint_save_step(dir, &a, &s2, "x: 2\n", 1, NULL, 0);
      _exit(0);
    }
    nanosleep(&(struct timespec){0, delays_ms[i] * 1000000L}, NULL);
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);

    char latest[1200];
    cr_assert_eq(tl_checkpoint_latest(dir, latest, sizeof latest), TL_OK);
    tl_params b;
    make_params(&b, 1 << 20);
    tl_ckpt_state r;
    cr_assert_eq(tl_checkpoint_load(latest, &b, &r, NULL, true), TL_OK, "%s", tl_last_error());
    cr_assert(r.step == 100 || r.step == 200);
    cr_log_info("killed after %d ms: newest checkpoint is step %lld", delays_ms[i],
                (long long)r.step);
    struct stat st;
    if (stat(first, &st) == 0) {
      size_t n1;
      char *now = slurp(first, &n1);
      cr_assert_eq(n1, n0);
      cr_assert_arr_eq(now, before, n0, "step 100 changed after a killed write");
      free(now);
    } else {
      cr_assert_eq(r.step, 200, "step 100 is gone only once step 200 is complete");
    }
    tl_params_free(&b);
    if (r.step == 200) break; // the write finished before the kill: nothing left to test
  }
  // The next save clears what the killed writers left behind.
  s.step = 300;
  cr_assert_eq(tl_checkpoint_save_step(dir, &a, &s, NULL, 1, NULL, 0), TL_OK);
  char cmd[256];
  snprintf(cmd, sizeof cmd, "ls '%s/checkpoints' | grep -q tmp", dir);
  cr_assert_neq(system(cmd), 0, "temp files remain");
  free(before);
  tl_params_free(&a);
  rm_rf(dir);
}
