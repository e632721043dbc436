// shards.c: the shard set reader (see shards.h). The manifest says which files
// make a split; each file's datasets are checked against it when opened.
#include "data/shards.h"

#include <cjson/cJSON.h>
#include <hdf5.h>
#include <string.h>

#include "data/shard_writer.h"
#include "data/split.h"

enum { DS_TOKENS, DS_SEGMENTS, DS_LENGTH, DS_LABEL, DS_FLOW_ID, DS_FILE_INDEX, DS_COUNT };
static const char *const g_ds_names[DS_COUNT] = {"tokens", "segments", "length",
                                                 "label",  "flow_id",  "file_index"};

typedef struct {
  char *path;
  hid_t file;
  hid_t ds[DS_COUNT];
  int64_t first, rows; // global number of the file's first row; its row count
} shard_file;

// One block of chunk_rows rows held decoded, so that reads in the order of
// tl_shards_order() decompress each chunk once.
typedef struct {
  int64_t first, n; // rows [first, first + n); n == 0: empty
  int32_t *tokens, *segments, *lengths, *labels, *file_index;
  int64_t *flow_ids;
} block_cache;

struct tl_shards {
  block_cache cache;
  int seq_len;
  int32_t vocab_size;
  int64_t rows, chunk_rows;
  char *task, *tokenizer;
  char **labels;
  int n_labels;
  shard_file *files;
  int n_files;
};

// --- manifest

static const char *json_string(const cJSON *o, const char *key) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
  return cJSON_IsString(v) ? v->valuestring : NULL;
}

// Fills s's description and file list from the manifest's fields.
static tl_status parse_manifest(tl_shards *s, const cJSON *m, const char *dir, const char *split,
                                const char *path) {
  const char *version = json_string(m, "format_version");
  if (!version || strcmp(version, TL_SHARDS_FORMAT_VERSION) != 0) {
    tl_set_error("%s: format_version '%s', expected '%s'", path, version ? version : "(none)",
                 TL_SHARDS_FORMAT_VERSION);
    return TL_ERR;
  }
  const cJSON *seq = cJSON_GetObjectItemCaseSensitive(m, "seq_len");
  const cJSON *vocab = cJSON_GetObjectItemCaseSensitive(m, "vocab_size");
  const cJSON *labels = cJSON_GetObjectItemCaseSensitive(m, "label_names");
  const cJSON *sp = cJSON_GetObjectItemCaseSensitive(
      cJSON_GetObjectItemCaseSensitive(m, "splits"), split);
  const cJSON *shards = cJSON_GetObjectItemCaseSensitive(sp, "shards");
  if (!cJSON_IsNumber(seq) || seq->valueint < 1 || !cJSON_IsArray(labels) ||
      !cJSON_IsArray(shards)) {
    tl_set_error("%s: missing seq_len, label_names or splits.%s.shards", path, split);
    return TL_ERR;
  }
  s->seq_len = seq->valueint;
  s->vocab_size = cJSON_IsNumber(vocab) ? vocab->valueint : 0;
  s->task = tl_xstrdup(json_string(m, "task") ? json_string(m, "task") : "");
  s->tokenizer = tl_xstrdup(json_string(m, "tokenizer") ? json_string(m, "tokenizer") : "");
  s->n_labels = cJSON_GetArraySize(labels);
  s->labels = tl_xcalloc((size_t)s->n_labels + 1, sizeof *s->labels);
  for (int i = 0; i < s->n_labels; i++) {
    const cJSON *l = cJSON_GetArrayItem(labels, i);
    s->labels[i] = tl_xstrdup(cJSON_IsString(l) ? l->valuestring : "");
  }
  s->n_files = cJSON_GetArraySize(shards);
  s->files = tl_xcalloc((size_t)s->n_files + 1, sizeof *s->files);
  for (int i = 0; i < s->n_files; i++) {
    const cJSON *sh = cJSON_GetArrayItem(shards, i);
    const char *file = json_string(sh, "file");
    const cJSON *rows = cJSON_GetObjectItemCaseSensitive(sh, "rows");
    if (!file || !cJSON_IsNumber(rows) || strchr(file, '/')) {
      tl_set_error("%s: splits.%s.shards[%d] needs a plain file name and rows", path, split, i);
      return TL_ERR;
    }
    s->files[i].path = tl_xstrdup(tl_fmt("%s/%s", dir, file));
    s->files[i].first = s->rows;
    s->files[i].rows = (int64_t)rows->valuedouble;
    s->rows += s->files[i].rows;
  }
  return TL_OK;
}

// --- HDF5 files

// Opens one shard and checks its datasets' shapes against the manifest.
static tl_status open_file(tl_shards *s, shard_file *f) {
  H5E_BEGIN_TRY { f->file = H5Fopen(f->path, H5F_ACC_RDONLY, H5P_DEFAULT); }
  H5E_END_TRY;
  if (f->file < 0) {
    tl_set_error("%s: cannot open HDF5 shard", f->path);
    return TL_ERR;
  }
  for (int i = 0; i < DS_COUNT; i++) {
    H5E_BEGIN_TRY { f->ds[i] = H5Dopen2(f->file, g_ds_names[i], H5P_DEFAULT); }
    H5E_END_TRY;
    if (f->ds[i] < 0) {
      tl_set_error("%s: no dataset '%s'", f->path, g_ds_names[i]);
      return TL_ERR;
    }
    hsize_t dims[2] = {0, 0};
    hid_t space = H5Dget_space(f->ds[i]);
    int rank = H5Sget_simple_extent_dims(space, dims, NULL);
    H5Sclose(space);
    int want_rank = i <= DS_SEGMENTS ? 2 : 1;
    if (rank != want_rank || (int64_t)dims[0] != f->rows ||
        (rank == 2 && (int)dims[1] != s->seq_len)) {
      tl_set_error("%s: dataset '%s' has shape [%llu, %llu], manifest says [%lld%s]", f->path,
                   g_ds_names[i], (unsigned long long)dims[0], (unsigned long long)dims[1],
                   (long long)f->rows, rank == 2 ? tl_fmt(", %d", s->seq_len) : "");
      return TL_ERR;
    }
  }
  // The chunk height of the first file stands for the set (the writer uses one).
  if (s->chunk_rows == 0) {
    hid_t dcpl = H5Dget_create_plist(f->ds[DS_TOKENS]);
    hsize_t chunk[2] = {1, 1};
    if (H5Pget_layout(dcpl) == H5D_CHUNKED) H5Pget_chunk(dcpl, 2, chunk);
    H5Pclose(dcpl);
    s->chunk_rows = (int64_t)chunk[0];
  }
  return TL_OK;
}

tl_shards *tl_shards_open(const char *dir, const char *split) {
  char *path = tl_xstrdup(tl_fmt("%s/manifest.json", dir));
  char *text = tl_read_text_file(path);
  if (!text) {
    tl_set_error("%s: cannot read the shard manifest", path);
    free(path);
    return NULL;
  }
  cJSON *m = cJSON_Parse(text);
  free(text);
  tl_shards *s = tl_xcalloc(1, sizeof *s);
  tl_status st = TL_OK;
  if (!m) {
    tl_set_error("%s: not valid JSON (near '%.20s')", path, cJSON_GetErrorPtr());
    st = TL_ERR;
  }
  if (st == TL_OK) st = parse_manifest(s, m, dir, split, path);
  for (int i = 0; i < s->n_files && st == TL_OK; i++) st = open_file(s, &s->files[i]);
  if (s->chunk_rows == 0) s->chunk_rows = 1;
  cJSON_Delete(m);
  free(path);
  if (st != TL_OK) {
    tl_shards_close(s);
    return NULL;
  }
  return s;
}

void tl_shards_close(tl_shards *s) {
  if (!s) return;
  for (int i = 0; i < s->n_files; i++) {
    shard_file *f = &s->files[i];
    for (int d = 0; d < DS_COUNT; d++)
      if (f->ds[d] > 0) H5Dclose(f->ds[d]);
    if (f->file > 0) H5Fclose(f->file);
    free(f->path);
  }
  for (int i = 0; i < s->n_labels; i++) free(s->labels[i]);
  free(s->labels);
  free(s->cache.tokens);
  free(s->cache.segments);
  free(s->cache.lengths);
  free(s->cache.labels);
  free(s->cache.file_index);
  free(s->cache.flow_ids);
  free(s->files);
  free(s->task);
  free(s->tokenizer);
  free(s);
}

int64_t tl_shards_rows(const tl_shards *s) { return s->rows; }
int tl_shards_seq_len(const tl_shards *s) { return s->seq_len; }
int64_t tl_shards_chunk_rows(const tl_shards *s) { return s->chunk_rows; }
int tl_shards_n_labels(const tl_shards *s) { return s->n_labels; }
const char *tl_shards_label_name(const tl_shards *s, int label) {
  TL_ASSERTF(label >= 0 && label < s->n_labels, "label %d of %d", label, s->n_labels);
  return s->labels[label];
}
const char *tl_shards_task(const tl_shards *s) { return s->task; }
const char *tl_shards_tokenizer(const tl_shards *s) { return s->tokenizer; }
int32_t tl_shards_vocab_size(const tl_shards *s) { return s->vocab_size; }

// --- reading

// Reads rows [start, start + n) of one dataset of one file into buf.
static herr_t read_part(const tl_shards *s, const shard_file *f, int d, int64_t start,
                        int64_t n, hid_t mem_type, void *buf) {
  int rank = d <= DS_SEGMENTS ? 2 : 1;
  hsize_t off[2] = {(hsize_t)start, 0};
  hsize_t count[2] = {(hsize_t)n, (hsize_t)s->seq_len};
  hid_t file_space = H5Dget_space(f->ds[d]);
  H5Sselect_hyperslab(file_space, H5S_SELECT_SET, off, NULL, count, NULL);
  hid_t mem_space = H5Screate_simple(rank, count, NULL);
  herr_t err = H5Dread(f->ds[d], mem_type, mem_space, file_space, H5P_DEFAULT, buf);
  H5Sclose(mem_space);
  H5Sclose(file_space);
  return err;
}

// The file holding global row r (binary search over the files' first rows).
static int file_of_row(const tl_shards *s, int64_t r) {
  int lo = 0, hi = s->n_files - 1;
  while (lo < hi) {
    int mid = (lo + hi + 1) / 2;
    if (s->files[mid].first <= r) lo = mid;
    else hi = mid - 1;
  }
  return lo;
}

tl_status tl_shards_read(tl_shards *s, int64_t start, int64_t n, const tl_shard_rows *out) {
  if (start < 0 || n < 0 || start + n > s->rows) {
    tl_set_error("shards: rows [%lld, %lld) outside [0, %lld)", (long long)start,
                 (long long)(start + n), (long long)s->rows);
    return TL_ERR;
  }
  int64_t L = s->seq_len, done = 0;
  // A range may cross file boundaries: read the part inside each file.
  while (done < n) {
    int64_t r = start + done;
    const shard_file *f = &s->files[file_of_row(s, r)];
    int64_t local = r - f->first;
    int64_t take = f->rows - local < n - done ? f->rows - local : n - done;
    herr_t err = 0;
    if (out->tokens)
      err |= read_part(s, f, DS_TOKENS, local, take, H5T_NATIVE_INT32, out->tokens + done * L);
    if (out->segments)
      err |= read_part(s, f, DS_SEGMENTS, local, take, H5T_NATIVE_INT32,
                       out->segments + done * L);
    if (out->lengths)
      err |= read_part(s, f, DS_LENGTH, local, take, H5T_NATIVE_INT32, out->lengths + done);
    if (out->labels)
      err |= read_part(s, f, DS_LABEL, local, take, H5T_NATIVE_INT32, out->labels + done);
    if (out->flow_ids)
      err |= read_part(s, f, DS_FLOW_ID, local, take, H5T_NATIVE_INT64, out->flow_ids + done);
    if (out->file_index)
      err |= read_part(s, f, DS_FILE_INDEX, local, take, H5T_NATIVE_INT32,
                       out->file_index + done);
    if (err < 0) {
      tl_set_error("%s: HDF5 read of rows [%lld, %lld) failed", f->path, (long long)local,
                   (long long)(local + take));
      return TL_ERR;
    }
    done += take;
  }
  return TL_OK;
}

// Makes the cache hold the chunk-aligned block of row r.
static tl_status load_block(tl_shards *s, int64_t r) {
  block_cache *c = &s->cache;
  if (c->n > 0 && r >= c->first && r < c->first + c->n) return TL_OK;
  size_t cap = (size_t)s->chunk_rows, L = (size_t)s->seq_len;
  if (!c->tokens) {
    c->tokens = tl_xmalloc(cap * L * sizeof *c->tokens);
    c->segments = tl_xmalloc(cap * L * sizeof *c->segments);
    c->lengths = tl_xmalloc(cap * sizeof *c->lengths);
    c->labels = tl_xmalloc(cap * sizeof *c->labels);
    c->file_index = tl_xmalloc(cap * sizeof *c->file_index);
    c->flow_ids = tl_xmalloc(cap * sizeof *c->flow_ids);
  }
  c->n = 0;
  int64_t first = r / s->chunk_rows * s->chunk_rows;
  int64_t n = first + s->chunk_rows <= s->rows ? s->chunk_rows : s->rows - first;
  tl_shard_rows all = {c->tokens, c->segments, c->lengths, c->labels, c->flow_ids, c->file_index};
  if (tl_shards_read(s, first, n, &all) != TL_OK) return TL_ERR;
  c->first = first;
  c->n = n;
  return TL_OK;
}

tl_status tl_shards_read_rows(tl_shards *s, const int64_t *rows, int64_t n,
                              const tl_shard_rows *out) {
  size_t L = (size_t)s->seq_len;
  for (int64_t i = 0; i < n; i++) {
    int64_t r = rows[i];
    if (r < 0 || r >= s->rows) {
      tl_set_error("shards: row %lld outside [0, %lld)", (long long)r, (long long)s->rows);
      return TL_ERR;
    }
    if (load_block(s, r) != TL_OK) return TL_ERR;
    const block_cache *c = &s->cache;
    int64_t k = r - c->first;
    if (out->tokens) memcpy(out->tokens + i * L, c->tokens + k * L, L * sizeof *c->tokens);
    if (out->segments)
      memcpy(out->segments + i * L, c->segments + k * L, L * sizeof *c->segments);
    if (out->lengths) out->lengths[i] = c->lengths[k];
    if (out->labels) out->labels[i] = c->labels[k];
    if (out->flow_ids) out->flow_ids[i] = c->flow_ids[k];
    if (out->file_index) out->file_index[i] = c->file_index[k];
  }
  return TL_OK;
}

void tl_shards_order(int64_t n_rows, int64_t block_rows, uint64_t seed, uint64_t epoch,
                     int64_t *order) {
  TL_ASSERT(block_rows >= 1 && n_rows >= 0);
  int64_t n_blocks = (n_rows + block_rows - 1) / block_rows;
  int64_t *blocks = tl_xmalloc((size_t)(n_blocks ? n_blocks : 1) * sizeof *blocks);
  for (int64_t i = 0; i < n_blocks; i++) blocks[i] = i;
  tl_split_rng r;
  tl_split_rng_seed(&r, seed, epoch);
  tl_split_shuffle(blocks, n_blocks, &r);
  // Each block's rows, in a shuffled order of their own.
  int64_t k = 0;
  for (int64_t i = 0; i < n_blocks; i++) {
    int64_t first = blocks[i] * block_rows;
    int64_t len = first + block_rows <= n_rows ? block_rows : n_rows - first;
    for (int64_t j = 0; j < len; j++) order[k + j] = first + j;
    tl_split_shuffle(order + k, len, &r);
    k += len;
  }
  free(blocks);
}
