#include "data/holdout.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <sys/stat.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/names.h"
#include "data/shards.h"

// The fields of a flow identity, in the order of tl_flow_identity_values().
static const struct {
  const char *key; // in the manifest's "flow_identity"
  bool is_bool;
} g_identity_fields[TL_FLOW_IDENTITY_FIELDS] = {
    {"idle_timeout", false},  {"close_linger", false},   {"max_flows", false},
    {"flow_key_vlan", true}, {"reorder_window", false}, {"reassemble", true},
};

const char *tl_flow_identity_key(int i) { return g_identity_fields[i].key; }

void tl_flow_identity_values(const tl_flow_identity *id, double v[TL_FLOW_IDENTITY_FIELDS]) {
  const double values[TL_FLOW_IDENTITY_FIELDS] = {
      id->idle_timeout_s, id->close_linger_s,  id->max_flows,
      id->key_vlan,       id->reorder_window, id->reassemble};
  memcpy(v, values, sizeof values);
}

char *tl_flow_identity_json(const tl_flow_identity *id) {
  double v[TL_FLOW_IDENTITY_FIELDS];
  tl_flow_identity_values(id, v);
  cJSON *o = cJSON_CreateObject();
  for (int i = 0; i < TL_FLOW_IDENTITY_FIELDS; i++) {
    const char *key = g_identity_fields[i].key;
    if (g_identity_fields[i].is_bool) cJSON_AddBoolToObject(o, key, v[i] != 0);
    else cJSON_AddNumberToObject(o, key, v[i]);
  }
  char *text = cJSON_PrintUnformatted(o);
  cJSON_Delete(o);
  return text;
}

static bool number_at(const cJSON *o, const char *key, double *v) {
  const cJSON *x = cJSON_GetObjectItemCaseSensitive(o, key);
  if (cJSON_IsBool(x)) *v = cJSON_IsTrue(x);
  else if (cJSON_IsNumber(x)) *v = x->valuedouble;
  else return false;
  return true;
}

// Reads the set's "flow_identity"; a set without one cannot be lined up safely.
static tl_status read_identity(tl_flow_identity *id, const cJSON *m, const char *path) {
  const cJSON *o = cJSON_GetObjectItemCaseSensitive(m, "flow_identity");
  double v[TL_FLOW_IDENTITY_FIELDS];
  for (int i = 0; i < TL_FLOW_IDENTITY_FIELDS; i++) {
    if (number_at(o, g_identity_fields[i].key, &v[i])) continue;
    tl_set_error("%s: no flow_identity.%s: the set was made by an earlier tl-prep, so its "
                 "flow ids cannot be matched safely; make it again", path,
                 g_identity_fields[i].key);
    return TL_ERR;
  }
  *id = (tl_flow_identity){v[0], v[1], (int)v[2], (int)v[3], (int)v[4], (int)v[5]};
  return TL_OK;
}

bool tl_flow_identity_equal(const tl_flow_identity *a, const tl_flow_identity *b) {
  double va[TL_FLOW_IDENTITY_FIELDS], vb[TL_FLOW_IDENTITY_FIELDS];
  tl_flow_identity_values(a, va);
  tl_flow_identity_values(b, vb);
  return !memcmp(va, vb, sizeof va);
}

// Names that were not valid UTF-8 are recorded escaped, their bytes in
// source_files_hex (FORMAT.md); the files are opened by those bytes.
static tl_status restore_escaped_names(tl_holdout *h, const cJSON *hex, const char *path) {
  const cJSON *e;
  cJSON_ArrayForEach(e, hex) {
    char *end = NULL;
    long i = e->string ? strtol(e->string, &end, 10) : -1;
    char *name = cJSON_IsString(e) ? tl_hex_decode(e->valuestring) : NULL;
    if (!end || *end || i < 0 || i >= h->n_files || !name) {
      free(name);
      tl_set_error("%s: source_files_hex: entry \"%s\" is not an index with a hex name", path,
                   e->string ? e->string : "");
      return TL_ERR;
    }
    free(h->files_in[i]);
    h->files_in[i] = name;
  }
  return TL_OK;
}

static tl_status load_source_files(tl_holdout *h, const char *dir) {
  char path[4096];
  snprintf(path, sizeof path, "%s/manifest.json", dir);
  char *text = tl_read_text_file(path);
  if (!text) {
    tl_set_error("%s: cannot read (--holdout-of wants a packet or flow shard set)", path);
    return TL_ERR;
  }
  cJSON *m = cJSON_Parse(text);
  free(text);
  const cJSON *task = cJSON_GetObjectItem(m, "task");
  const cJSON *files = cJSON_GetObjectItem(m, "source_files");
  tl_status st = TL_ERR;
  if (!m || !cJSON_IsArray(files))
    tl_set_error("%s: not a tl-prep manifest (no source_files list)", path);
  else if (cJSON_IsString(task) && !strcmp(task->valuestring, "pretrain"))
    tl_set_error("%s: a pretrain set; --holdout-of wants the packet or flow set "
                 "whose valid and test flows pre-training must not see", path);
  else {
    h->n_files = cJSON_GetArraySize(files);
    h->files_in = tl_xcalloc((size_t)h->n_files + 1, sizeof *h->files_in);
    int i = 0;
    const cJSON *f;
    cJSON_ArrayForEach(f, files) {
      h->files_in[i++] = tl_xstrdup(cJSON_IsString(f) ? f->valuestring : "");
    }
    st = restore_escaped_names(h, cJSON_GetObjectItem(m, "source_files_hex"), path);
    if (st == TL_OK) st = read_identity(&h->identity, m, path);
  }
  cJSON_Delete(m);
  return st;
}

// Appends the flow ids and file indices of one split (absent split: nothing).
static tl_status append_split(tl_holdout *h, const char *dir, const char *split) {
  tl_shards *s = tl_shards_open(dir, split);
  if (!s) return TL_OK; // a set without this split holds nothing back from it
  int64_t n = tl_shards_rows(s);
  h->ids = tl_xrealloc(h->ids, (size_t)(h->n + n + 1) * sizeof *h->ids);
  h->files = tl_xrealloc(h->files, (size_t)(h->n + n + 1) * sizeof *h->files);
  tl_shard_rows out = {.flow_ids = h->ids + h->n, .file_index = h->files + h->n};
  tl_status st = n ? tl_shards_read(s, 0, n, &out) : TL_OK;
  tl_shards_close(s);
  if (st == TL_OK) h->n += n;
  return st;
}

typedef struct { int64_t id; int32_t file; } id_file;

static int cmp_id_file(const void *a, const void *b) {
  const id_file *x = a, *y = b;
  return x->id < y->id ? -1 : x->id > y->id;
}

// Sorts (id, file) pairs by id and drops repeats (a flow has many packet rows).
static void sort_unique(tl_holdout *h) {
  id_file *p = tl_xmalloc((size_t)(h->n + 1) * sizeof *p);
  for (int64_t i = 0; i < h->n; i++) p[i] = (id_file){h->ids[i], h->files[i]};
  qsort(p, (size_t)h->n, sizeof *p, cmp_id_file);
  int64_t m = 0;
  for (int64_t i = 0; i < h->n; i++)
    if (m == 0 || p[i].id != p[m - 1].id) p[m++] = p[i];
  for (int64_t i = 0; i < m; i++) h->ids[i] = p[i].id, h->files[i] = p[i].file;
  h->n = m;
  free(p);
}

// Whether two recorded paths name one file: the same text, or (a relative and
// an absolute path, say) the same device and inode.
static bool same_file(const char *a, const char *b) {
  struct stat sa, sb;
  if (!strcmp(a, b)) return true;
  return stat(a, &sa) == 0 && stat(b, &sb) == 0 && sa.st_dev == sb.st_dev &&
         sa.st_ino == sb.st_ino;
}

// Every set must come from the same captures in the same order as the first.
static tl_status same_files(const tl_holdout *first, const tl_holdout *other, const char *dir) {
  bool same = first->n_files == other->n_files;
  for (int i = 0; same && i < first->n_files; i++)
    same = same_file(first->files_in[i], other->files_in[i]);
  if (!same) {
    tl_set_error("%s: made from other captures than the first --holdout-of set", dir);
    return TL_ERR;
  }
  if (!tl_flow_identity_equal(&first->identity, &other->identity)) {
    tl_set_error("%s: made with other flow options (flow_identity in its manifest) than the "
                 "first --holdout-of set", dir);
    return TL_ERR;
  }
  return TL_OK;
}

// The captures are read again by the paths the set recorded; relative ones
// count from the folder that set's tl-prep ran in. A missing one would shift
// flow ids, so it is named here.
static tl_status files_still_there(const tl_holdout *h, const char *dir) {
  for (int i = 0; i < h->n_files; i++) {
    struct stat st;
    if (stat(h->files_in[i], &st) == 0) continue;
    tl_set_error("%s: its capture %s is not found from here (%s)%s", dir, h->files_in[i],
                 strerror(errno), h->files_in[i][0] == '/' ? "" :
                 " (relative paths count from the folder the set was made in)");
    return TL_ERR;
  }
  return TL_OK;
}

static tl_status load_one(tl_holdout *h, const char *dir) {
  if (load_source_files(h, dir) != TL_OK || files_still_there(h, dir) != TL_OK) return TL_ERR;
  if (append_split(h, dir, "valid") != TL_OK || append_split(h, dir, "test") != TL_OK) {
    tl_set_error("%s: %s", dir, tl_last_error());
    return TL_ERR;
  }
  return TL_OK;
}

tl_status tl_holdout_load(tl_holdout *h, const char *dirs) {
  memset(h, 0, sizeof *h);
  char *list = tl_xstrdup(dirs), *save = NULL;
  tl_status st = TL_OK;
  for (char *dir = strtok_r(list, ",", &save); dir && st == TL_OK;
       dir = strtok_r(NULL, ",", &save)) {
    if (!h->files_in) {
      st = load_one(h, dir);
      continue;
    }
    tl_holdout more;
    memset(&more, 0, sizeof more);
    st = load_one(&more, dir);
    if (st == TL_OK) st = same_files(h, &more, dir);
    if (st == TL_OK) {
      h->ids = tl_xrealloc(h->ids, (size_t)(h->n + more.n + 1) * sizeof *h->ids);
      h->files = tl_xrealloc(h->files, (size_t)(h->n + more.n + 1) * sizeof *h->files);
      memcpy(h->ids + h->n, more.ids, (size_t)more.n * sizeof *h->ids);
      memcpy(h->files + h->n, more.files, (size_t)more.n * sizeof *h->files);
      h->n += more.n;
    }
    tl_holdout_free(&more);
  }
  free(list);
  if (st == TL_OK && !h->files_in) {
    tl_set_error("--holdout-of: no shard set named");
    st = TL_ERR;
  }
  if (st == TL_OK) sort_unique(h);
  return st;
}

bool tl_holdout_has(const tl_holdout *h, int64_t id, int file_index, bool *mismatch) {
  int64_t lo = 0, hi = h->n;
  while (lo < hi) {
    int64_t mid = lo + (hi - lo) / 2;
    if (h->ids[mid] < id) lo = mid + 1;
    else hi = mid;
  }
  if (lo == h->n || h->ids[lo] != id) return false;
  if (h->files[lo] != file_index) *mismatch = true;
  return true;
}

void tl_holdout_free(tl_holdout *h) {
  if (!h) return;
  for (int i = 0; i < h->n_files; i++) free(h->files_in[i]);
  free(h->files_in);
  free(h->ids);
  free(h->files);
  memset(h, 0, sizeof *h);
}
