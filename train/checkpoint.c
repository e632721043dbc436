// checkpoint.c: parameter block + optimizer moments + run state <-> safetensors.
#include "train/checkpoint.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "train/safetensors.h"

static const char *const g_moment_prefix[2] = {"optim.m.", "optim.v."};

// The item for `count` floats at data shaped like parameter t.
static tl_st_item item_like(const char *name, const tl_tensor *t, const float *data) {
  tl_st_item it = {.name = name, .dtype = TL_F32, .rank = t->rank, .data = data};
  for (int d = 0; d < t->rank; d++) it.shape[d] = t->shape[d];
  return it;
}

// fsync of the folder holding path, so the rename itself survives a crash.
static void sync_parent(const char *path) {
  char dir[1024];
  snprintf(dir, sizeof dir, "%s", path);
  char *slash = strrchr(dir, '/');
  if (slash) *slash = 0;
  else snprintf(dir, sizeof dir, ".");
  int fd = open(dir, O_RDONLY | O_DIRECTORY);
  if (fd < 0) return;
  fsync(fd);
  close(fd);
}

tl_status tl_checkpoint_save(const char *path, const tl_params *p, const tl_ckpt_state *state,
                             const char *config_yaml, bool with_moments) {
  TL_ASSERT(p->allocated);
  int per = with_moments ? 3 : 1;
  tl_st_item *items = tl_xmalloc((size_t)p->count * per * sizeof *items);
  char **names = tl_xcalloc((size_t)p->count * 2, sizeof *names);

  // Values, then the two moments under prefixed names.
  int n = 0;
  for (int k = 0; k < p->count; k++) {
    const tl_tensor *t = p->info[k].tensor;
    items[n++] = item_like(t->name, t, p->values + p->info[k].offset);
  }
  for (int j = 0; with_moments && j < 2; j++) {
    const float *region = j == 0 ? p->m : p->v;
    for (int k = 0; k < p->count; k++) {
      const tl_tensor *t = p->info[k].tensor;
      size_t len = strlen(g_moment_prefix[j]) + strlen(t->name) + 1;
      char *name = names[j * p->count + k] = tl_xmalloc(len);
      snprintf(name, len, "%s%s", g_moment_prefix[j], t->name);
      items[n++] = item_like(name, t, region + p->info[k].offset);
    }
  }

  // The run state as metadata strings.
  char step[32], adam_t[32], seed[32], epoch[32], cursor[32], best[40];
  snprintf(step, sizeof step, "%lld", (long long)state->step);
  snprintf(adam_t, sizeof adam_t, "%lld", (long long)state->adam_t);
  snprintf(seed, sizeof seed, "%llu", (unsigned long long)state->seed);
  snprintf(epoch, sizeof epoch, "%lld", (long long)state->loader_epoch);
  snprintf(cursor, sizeof cursor, "%lld", (long long)state->loader_cursor);
  snprintf(best, sizeof best, "%.17g", state->best);
  tl_st_meta meta[] = {{"format", TL_CHECKPOINT_FORMAT}, {"step", step},
                       {"adam_t", adam_t},               {"seed", seed},
                       {"loader_epoch", epoch},          {"loader_cursor", cursor},
                       {"best", best},                   {"config", config_yaml}};
  int n_meta = config_yaml ? 8 : 7;

  tl_status st = tl_safetensors_write(path, items, n, meta, n_meta);
  if (st == TL_OK) sync_parent(path);
  for (int i = 0; i < p->count * 2; i++) free(names[i]);
  free(names);
  free(items);
  return st;
}

// Parses the metadata of an open checkpoint.
static tl_status read_meta(const tl_safetensors *sf, const char *path, tl_ckpt_state *state,
                           char **config_yaml) {
  const char *format = tl_safetensors_meta(sf, "format");
  if (!format || strcmp(format, TL_CHECKPOINT_FORMAT)) {
    tl_set_error("%s: not a tl checkpoint (metadata format is '%s', expected '%s')", path,
                 format ? format : "absent", TL_CHECKPOINT_FORMAT);
    return TL_ERR;
  }
  if (state) {
    const char *keys[] = {"step", "adam_t", "seed", "loader_epoch", "loader_cursor", "best"};
    const char *vals[6];
    for (int i = 0; i < 6; i++) {
      vals[i] = tl_safetensors_meta(sf, keys[i]);
      if (!vals[i]) {
        tl_set_error("%s: checkpoint metadata lacks '%s'", path, keys[i]);
        return TL_ERR;
      }
    }
    state->step = strtoll(vals[0], NULL, 10);
    state->adam_t = strtoll(vals[1], NULL, 10);
    state->seed = strtoull(vals[2], NULL, 10);
    state->loader_epoch = strtoll(vals[3], NULL, 10);
    state->loader_cursor = strtoll(vals[4], NULL, 10);
    state->best = strtod(vals[5], NULL);
  }
  if (config_yaml) {
    const char *cfg = tl_safetensors_meta(sf, "config");
    *config_yaml = cfg ? tl_xstrdup(cfg) : NULL;
  }
  return TL_OK;
}

tl_status tl_checkpoint_peek(const char *path, tl_ckpt_state *state, char **config_yaml) {
  tl_safetensors sf;
  if (tl_safetensors_open(&sf, path) != TL_OK) return TL_ERR;
  tl_status st = read_meta(&sf, path, state, config_yaml);
  tl_safetensors_close(&sf);
  return st;
}

// Loads the moments of every parameter from "optim.m.<name>" / "optim.v.<name>".
static tl_status load_moments(const tl_safetensors *sf, tl_params *p) {
  for (int j = 0; j < 2; j++) {
    float *region = j == 0 ? p->m : p->v;
    for (int k = 0; k < p->count; k++) {
      tl_tensor view = *p->info[k].tensor;
      view.data = region + p->info[k].offset;
      char name[512];
      snprintf(name, sizeof name, "%s%s", g_moment_prefix[j], view.name);
      if (tl_safetensors_load(sf, name, &view) != TL_OK) return TL_ERR;
    }
  }
  return TL_OK;
}

tl_status tl_checkpoint_load(const char *path, tl_params *p, tl_ckpt_state *state,
                             char **config_yaml, bool with_moments) {
  TL_ASSERT(p->allocated);
  if (config_yaml) *config_yaml = NULL;
  tl_safetensors sf;
  if (tl_safetensors_open(&sf, path) != TL_OK) return TL_ERR;

  // Metadata first (it says whether this is a tl checkpoint at all), then tensors.
  tl_status st = read_meta(&sf, path, state, config_yaml);
  if (st == TL_OK) st = tl_safetensors_load_params(&sf, p, true, NULL);
  if (st == TL_OK && with_moments) st = load_moments(&sf, p);
  tl_safetensors_close(&sf);
  if (st != TL_OK && config_yaml) {
    free(*config_yaml);
    *config_yaml = NULL;
  }
  return st;
}

// ---------------------------------------------------------------------------
// Periodic checkpoints of a run folder.

// Creates dir and its parents (like mkdir -p).
static tl_status make_dirs(const char *dir) {
  char buf[1024];
  snprintf(buf, sizeof buf, "%s", dir);
  for (char *s = buf + 1; *s; s++) {
    if (*s != '/') continue;
    *s = 0;
    if (mkdir(buf, 0777) != 0 && errno != EEXIST) break;
    *s = '/';
  }
  if (mkdir(buf, 0777) != 0 && errno != EEXIST) {
    tl_set_error("%s: cannot create folder: %s", dir, strerror(errno));
    return TL_ERR;
  }
  return TL_OK;
}

// The step of a periodic checkpoint file name, or -1 for any other name (temp files).
static int64_t step_of(const char *name) {
  long long step;
  int used = 0;
  if (sscanf(name, "step-%lld.safetensors%n", &step, &used) != 1 || used == 0) return -1;
  char canon[64];
  snprintf(canon, sizeof canon, "step-%08lld.safetensors", step);
  return strcmp(canon, name) ? -1 : step;
}

static int cmp_i64(const void *a, const void *b) {
  int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
  return (x > y) - (x < y);
}

// Steps of the periodic checkpoints in dir, ascending; *n set. Caller frees.
static int64_t *list_steps(const char *dir, int *n) {
  *n = 0;
  DIR *d = opendir(dir);
  if (!d) return NULL;
  int cap = 16;
  int64_t *steps = tl_xmalloc((size_t)cap * sizeof *steps);
  struct dirent *e;
  while ((e = readdir(d))) {
    int64_t s = step_of(e->d_name);
    if (s < 0) continue;
    if (*n == cap) steps = tl_xrealloc(steps, (size_t)(cap *= 2) * sizeof *steps);
    steps[(*n)++] = s;
  }
  closedir(d);
  qsort(steps, (size_t)*n, sizeof *steps, cmp_i64);
  return steps;
}

// Deletes temp files that killed writers left in dir ("step-*.safetensors.tmp.*").
static void remove_stale_temps(const char *dir) {
  DIR *d = opendir(dir);
  if (!d) return;
  struct dirent *e;
  while ((e = readdir(d))) {
    if (strncmp(e->d_name, "step-", 5) || !strstr(e->d_name, ".safetensors.tmp.")) continue;
    char path[1400];
    snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
    if (unlink(path) == 0) tl_info("removed %s (left by an interrupted write)", path);
  }
  closedir(d);
}

tl_status tl_checkpoint_save_step(const char *run_dir, const tl_params *p,
                                  const tl_ckpt_state *state, const char *config_yaml,
                                  int keep_last, char *out_path, size_t cap) {
  char dir[1024], path[1100];
  snprintf(dir, sizeof dir, "%s/checkpoints", run_dir);
  if (make_dirs(dir) != TL_OK) return TL_ERR;
  remove_stale_temps(dir);
  snprintf(path, sizeof path, "%s/step-%08lld.safetensors", dir, (long long)state->step);
  if (tl_checkpoint_save(path, p, state, config_yaml, true) != TL_OK) return TL_ERR;
  if (out_path) snprintf(out_path, cap, "%s", path);

  // Only after the new file is in place: drop the oldest beyond keep_last.
  int n;
  int64_t *steps = list_steps(dir, &n);
  for (int i = 0; keep_last > 0 && i < n - keep_last; i++) {
    char old[1100];
    snprintf(old, sizeof old, "%s/step-%08lld.safetensors", dir, (long long)steps[i]);
    if (unlink(old) != 0) tl_warn("%s: cannot delete old checkpoint: %s", old, strerror(errno));
  }
  free(steps);
  return TL_OK;
}

tl_status tl_checkpoint_latest(const char *run_dir, char *path, size_t cap) {
  char dir[1024];
  snprintf(dir, sizeof dir, "%s/checkpoints", run_dir);
  int n;
  int64_t *steps = list_steps(dir, &n);
  if (n == 0) {
    free(steps);
    tl_set_error("%s: no checkpoint to resume from (no step-*.safetensors)", dir);
    return TL_ERR;
  }
  snprintf(path, cap, "%s/step-%08lld.safetensors", dir, (long long)steps[n - 1]);
  free(steps);
  return TL_OK;
}

tl_status tl_metrics_trim_after(const char *path, int64_t step) {
  FILE *in = fopen(path, "r");
  if (!in) return TL_OK; // nothing logged yet
  char tmp[4096 + 64];
  snprintf(tmp, sizeof tmp, "%s.tmp", path);
  FILE *out = fopen(tmp, "w");
  if (!out) {
    fclose(in);
    tl_set_error("%s: cannot write: %s", tmp, strerror(errno));
    return TL_ERR;
  }
  char line[4096];
  long long s;
  int dropped = 0;
  while (fgets(line, sizeof line, in)) {
    if (sscanf(line, "{\"step\":%lld", &s) == 1 && s > step) dropped++;
    else fputs(line, out);
  }
  fclose(in);
  if (fclose(out) != 0 || rename(tmp, path) != 0) {
    tl_set_error("%s: cannot rewrite: %s", path, strerror(errno));
    return TL_ERR;
  }
  if (dropped) tl_info("%s: dropped %d lines after step %lld", path, dropped, (long long)step);
  return TL_OK;
}

tl_status tl_checkpoint_for_run(const char *run_dir, const char *resume_dir, char *path,
                                size_t cap, const char **resume) {
  *resume = NULL;
  if (resume_dir) {
    if (tl_checkpoint_latest(resume_dir, path, cap) != TL_OK) return TL_ERR;
    *resume = path;
  } else if (tl_checkpoint_latest(run_dir, path, cap) == TL_OK) {
    tl_set_error("%s already has checkpoints (%s): resume it with --resume %s, or set run.dir",
                 run_dir, path, run_dir);
    return TL_ERR;
  }
  return TL_OK;
}
