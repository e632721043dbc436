// publish.c: see publish.h.
#include "data/publish.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int tl_is_shard_name(const char *name) {
  static const char *const splits[] = {"train", "valid", "test"};
  for (int s = 0; s < 3; s++) {
    size_t n = strlen(splits[s]);
    const char *rest = name + n;
    if (strncmp(name, splits[s], n) != 0 || rest[0] != '-') continue;
    if (strlen(rest) == 9 && strspn(rest + 1, "0123456789") == 5 && !strcmp(rest + 6, ".h5"))
      return 1;
  }
  return 0;
}

void tl_remove_flat_dir(const char *dir) {
  DIR *d = opendir(dir);
  if (!d) return;
  struct dirent *e;
  while ((e = readdir(d)))
    if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) unlink(tl_fmt("%s/%s", dir, e->d_name));
  closedir(d);
  rmdir(dir);
}

static int listed(const char *name, char *const *names, int n) {
  for (int i = 0; i < n; i++)
    if (!strcmp(name, names[i])) return 1;
  return 0;
}

// Deletes the shards in out_dir that the new set does not name.
static void remove_old_shards(const char *out_dir, char *const *names, int n) {
  DIR *d = opendir(out_dir);
  if (!d) return;
  struct dirent *e;
  while ((e = readdir(d)))
    if (tl_is_shard_name(e->d_name) && !listed(e->d_name, names, n))
      unlink(tl_fmt("%s/%s", out_dir, e->d_name));
  closedir(d);
}

// Renames dir_a/name to dir_b/name; TL_ERR with both paths named.
static tl_status move(const char *from_dir, const char *to_dir, const char *name) {
  char *from = tl_xstrdup(tl_fmt("%s/%s", from_dir, name));
  char *to = tl_xstrdup(tl_fmt("%s/%s", to_dir, name));
  tl_status st = TL_OK;
  if (rename(from, to) != 0) {
    tl_set_error("%s: cannot move to %s: %s", from, to, strerror(errno));
    st = TL_ERR;
  }
  free(from);
  free(to);
  return st;
}

tl_status tl_publish_set(const char *out_dir, const char *tmp_dir, char *const *names, int n) {
  const char *manifest = tl_fmt("%s/manifest.json", out_dir);
  if (unlink(manifest) != 0 && errno != ENOENT) {
    tl_set_error("%s: cannot replace: %s", manifest, strerror(errno));
    return TL_ERR;
  }
  remove_old_shards(out_dir, names, n);
  for (int i = 0; i < n; i++) {
    // Moved already when an interrupted publish is being finished.
    if (access(tl_fmt("%s/%s", tmp_dir, names[i]), F_OK) != 0) continue;
    if (move(tmp_dir, out_dir, names[i]) != TL_OK) return TL_ERR;
  }
  return move(tmp_dir, out_dir, "manifest.json");
}

static void free_names(char **names, int n) {
  for (int i = 0; i < n; i++) free(names[i]);
  free(names);
}

// The shard file names a manifest lists (splits.*.shards[].file); NULL when it
// cannot be read or is not tl-prep's (format_version not "tl-shards/N"). *n is their count;
// the caller frees the names and the array.
static char **manifest_shards(const char *path, int *n) {
  char *text = tl_read_text_file(path);
  cJSON *m = text ? cJSON_Parse(text) : NULL;
  free(text);
  const char *version = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(m, "format_version"));
  if (!m || !version || strncmp(version, "tl-shards/", 10) != 0) {
    cJSON_Delete(m); // parsed, but not a tl-prep manifest
    return NULL;
  }
  char **names = NULL;
  *n = 0;
  const cJSON *split, *shard;
  cJSON_ArrayForEach(split, cJSON_GetObjectItemCaseSensitive(m, "splits")) {
    cJSON_ArrayForEach(shard, cJSON_GetObjectItemCaseSensitive(split, "shards")) {
      const char *file = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(shard, "file"));
      if (!file || !tl_is_shard_name(file)) continue; // never move anything else
      names = tl_xrealloc(names, (size_t)(*n + 1) * sizeof *names);
      names[(*n)++] = tl_xstrdup(file);
    }
  }
  cJSON_Delete(m);
  return names ? names : tl_xcalloc(1, sizeof *names);
}

int tl_publish_recover(const char *out_dir, const char *tmp_dir) {
  int n = 0, done = 0;
  char **names = manifest_shards(tl_fmt("%s/manifest.json", tmp_dir), &n);
  if (names) {
    done = tl_publish_set(out_dir, tmp_dir, names, n) == TL_OK;
    if (done) tl_info("%s: completed the set an interrupted run had written", out_dir);
    else tl_warn("%s: could not complete an interrupted run's set: %s", out_dir, tl_last_error());
    free_names(names, n);
  }
  if (!done) tl_info("%s: removing what an interrupted run left", tmp_dir);
  tl_remove_flat_dir(tmp_dir);
  return done;
}

tl_status tl_check_out_dir(const char *out_dir) {
  char *manifest = tl_xstrdup(tl_fmt("%s/manifest.json", out_dir));
  int n = 0;
  char **names = NULL;
  tl_status st = TL_OK;
  if (access(manifest, F_OK) == 0 && !(names = manifest_shards(manifest, &n))) {
    tl_set_error("%s: not a tl-prep manifest, and a new set would replace it; choose another "
                 "--out, or move the file away", manifest);
    st = TL_ERR;
  }
  DIR *d = st == TL_OK ? opendir(out_dir) : NULL;
  for (struct dirent *e; d && st == TL_OK && (e = readdir(d));) {
    if (!tl_is_shard_name(e->d_name) || listed(e->d_name, names, n)) continue;
    tl_set_error("%s/%s: a shard file that no tl-prep manifest here lists, and a new set would "
                 "replace or delete it; choose another --out, or move the file away", out_dir,
                 e->d_name);
    st = TL_ERR;
  }
  if (d) closedir(d);
  free_names(names, n);
  free(manifest);
  return st;
}
