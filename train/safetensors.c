// safetensors.c: the safetensors writer (atomic: temp file, fsync, rename) and
// a validating reader (header parsed once with cJSON, tensors read by pread).
#include "train/safetensors.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "safetensors.c writes host memory as little-endian data: big-endian hosts need swaps"
#endif

// A header larger than this is not a tensor file (the Rust reference uses 100 MB).
#define TL_ST_MAX_HEADER ((uint64_t)100 << 20)

// --- dtypes -----------------------------------------------------------------

typedef struct {
  const char *name;
  size_t size;
  bool supported;
  tl_dtype dtype;
} st_dtype;

// Every dtype the format defines, so offsets of unsupported ones still validate.
static const st_dtype st_dtypes[] = {
    {"F32", 4, true, TL_F32},  {"BF16", 2, true, TL_BF16}, {"F16", 2, true, TL_F16},
    {"I32", 4, true, TL_I32},  {"U8", 1, true, TL_U8},     {"F64", 8, false, TL_F32},
    {"I64", 8, false, TL_I32}, {"U64", 8, false, TL_I32},  {"U32", 4, false, TL_I32},
    {"I16", 2, false, TL_I32}, {"U16", 2, false, TL_I32},  {"I8", 1, false, TL_I32},
    {"BOOL", 1, false, TL_U8}, {"F8_E4M3", 1, false, TL_U8}, {"F8_E5M2", 1, false, TL_U8},
};

static const st_dtype *st_dtype_by_name(const char *name) {
  for (size_t i = 0; i < sizeof st_dtypes / sizeof *st_dtypes; i++)
    if (!strcmp(st_dtypes[i].name, name)) return &st_dtypes[i];
  return NULL;
}

static const char *st_dtype_name(tl_dtype dtype) {
  switch (dtype) {
  case TL_F32: return "F32";
  case TL_BF16: return "BF16";
  case TL_F16: return "F16";
  case TL_I32: return "I32";
  case TL_U8: return "U8";
  }
  return NULL;
}

static uint64_t st_numel(int rank, const int64_t *shape) {
  uint64_t n = 1;
  for (int d = 0; d < rank; d++) n *= (uint64_t)shape[d];
  return n;
}

// --- writer -----------------------------------------------------------------

tl_st_item tl_st_item_of(const char *name, const tl_tensor *t) {
  TL_ASSERTF(tl_is_contiguous(t) && t->device == TL_CPU,
             "safetensors: tensor %s must be a contiguous CPU tensor", name);
  tl_st_item it = {.name = name, .dtype = t->dtype, .rank = t->rank, .data = t->data};
  for (int d = 0; d < t->rank; d++) it.shape[d] = t->shape[d];
  return it;
}

// Builds the header JSON (tensors in the given order, data packed back to back),
// padded with spaces to a multiple of 8 bytes as other writers do. Caller frees.
static char *st_build_header(const tl_st_item *items, int n, const tl_st_meta *meta,
                             int n_meta, size_t *len) {
  cJSON *root = cJSON_CreateObject();
  if (n_meta > 0) {
    cJSON *m = cJSON_AddObjectToObject(root, "__metadata__");
    for (int i = 0; i < n_meta; i++) cJSON_AddStringToObject(m, meta[i].key, meta[i].value);
  }
  uint64_t offset = 0;
  for (int i = 0; i < n; i++) {
    const tl_st_item *it = &items[i];
    TL_ASSERTF(it->rank >= 0 && it->rank <= TL_ST_MAX_RANK, "tensor %s: rank %d", it->name,
               it->rank);
    TL_ASSERTF(strcmp(it->name, "__metadata__"), "a tensor cannot be named __metadata__");
    TL_ASSERTF(!cJSON_GetObjectItemCaseSensitive(root, it->name), "tensor %s written twice",
               it->name);
    cJSON *e = cJSON_AddObjectToObject(root, it->name);
    cJSON_AddStringToObject(e, "dtype", st_dtype_name(it->dtype));
    cJSON *shape = cJSON_AddArrayToObject(e, "shape");
    for (int d = 0; d < it->rank; d++)
      cJSON_AddItemToArray(shape, cJSON_CreateNumber((double)it->shape[d]));
    uint64_t bytes = st_numel(it->rank, it->shape) * tl_dtype_size(it->dtype);
    cJSON *off = cJSON_AddArrayToObject(e, "data_offsets");
    cJSON_AddItemToArray(off, cJSON_CreateNumber((double)offset));
    cJSON_AddItemToArray(off, cJSON_CreateNumber((double)(offset + bytes)));
    offset += bytes;
  }
  char *json = cJSON_PrintUnformatted(root);
  cJSON_Delete(root);
  TL_ASSERT(json);
  size_t raw = strlen(json), padded = (raw + 7) & ~(size_t)7;
  char *out = tl_xmalloc(padded + 1);
  memcpy(out, json, raw);
  memset(out + raw, ' ', padded - raw);
  out[padded] = 0;
  cJSON_free(json);
  *len = padded;
  return out;
}

// Writes the length prefix, the header and every tensor's bytes to f.
static bool st_write_body(FILE *f, const char *header, size_t hlen, const tl_st_item *items,
                          int n) {
  uint8_t prefix[8];
  for (int i = 0; i < 8; i++) prefix[i] = (uint8_t)((uint64_t)hlen >> (8 * i));
  if (fwrite(prefix, 1, 8, f) != 8 || fwrite(header, 1, hlen, f) != hlen) return false;
  for (int i = 0; i < n; i++) {
    size_t bytes = st_numel(items[i].rank, items[i].shape) * tl_dtype_size(items[i].dtype);
    if (bytes && fwrite(items[i].data, 1, bytes, f) != bytes) return false;
  }
  return true;
}

// fsyncs the directory holding path, so the rename itself survives a crash.
static tl_status st_sync_dir(const char *path) {
  char *dir = tl_xstrdup(path);
  char *slash = strrchr(dir, '/');
  if (!slash) strcpy(dir, ".");
  else if (slash == dir) dir[1] = 0;
  else *slash = 0;
  int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  bool ok = fd >= 0 && fsync(fd) == 0;
  if (!ok) tl_set_error("%s: cannot sync directory %s: %s", path, dir, strerror(errno));
  if (fd >= 0) close(fd);
  free(dir);
  return ok ? TL_OK : TL_ERR;
}

tl_status tl_safetensors_write(const char *path, const tl_st_item *items, int n,
                               const tl_st_meta *meta, int n_meta) {
  size_t hlen;
  char *header = st_build_header(items, n, meta, n_meta, &hlen);
  char *tmp = tl_xstrdup(tl_fmt("%s.tmp.%ld", path, (long)getpid()));

  // Write everything to the temporary file, then make it durable before renaming.
  FILE *f = fopen(tmp, "wb");
  bool ok = f && st_write_body(f, header, hlen, items, n);
  ok = ok && fflush(f) == 0 && fsync(fileno(f)) == 0;
  int err = errno;
  if (f && fclose(f) != 0 && ok) ok = false, err = errno;
  free(header);
  if (!ok) {
    tl_set_error("%s: cannot write safetensors file: %s", tmp, strerror(err));
    unlink(tmp);
    free(tmp);
    return TL_ERR;
  }

  // The atomic step: readers see the old file or the complete new one.
  if (rename(tmp, path) != 0) {
    tl_set_error("%s: cannot rename %s into place: %s", path, tmp, strerror(errno));
    unlink(tmp);
    free(tmp);
    return TL_ERR;
  }
  free(tmp);
  return st_sync_dir(path);
}

static const char *st_shape_str(int rank, const int64_t *shape) {
  char buf[160];
  int n = snprintf(buf, sizeof buf, "[");
  for (int d = 0; d < rank && n < (int)sizeof buf - 24; d++)
    n += snprintf(buf + n, sizeof buf - (size_t)n, d ? ", %lld" : "%lld", (long long)shape[d]);
  snprintf(buf + n, sizeof buf - (size_t)n, "]");
  return tl_fmt("%s", buf);
}

// --- reader: header parsing ---------------------------------------------------

// A JSON number that is a non-negative integer below 2^53 (exact in a double).
static bool st_get_u64(const cJSON *j, uint64_t *out) {
  if (!cJSON_IsNumber(j)) return false;
  double v = j->valuedouble;
  if (!(v >= 0 && v <= 9007199254740992.0) || v != floor(v)) return false;
  *out = (uint64_t)v;
  return true;
}

static tl_status st_parse_meta(tl_safetensors *st, const cJSON *m) {
  if (!cJSON_IsObject(m)) {
    tl_set_error("%s: __metadata__ is not a JSON object", st->path);
    return TL_ERR;
  }
  int n = cJSON_GetArraySize(m);
  st->meta = tl_xcalloc((size_t)n + 1, sizeof *st->meta);
  const cJSON *kv;
  cJSON_ArrayForEach(kv, m) {
    if (!cJSON_IsString(kv)) {
      tl_set_error("%s: __metadata__ value of '%s' is not a string", st->path, kv->string);
      return TL_ERR;
    }
    st->meta[st->n_meta].key = tl_xstrdup(kv->string);
    st->meta[st->n_meta].value = tl_xstrdup(kv->valuestring);
    st->n_meta++;
  }
  return TL_OK;
}

// Parses one tensor entry into t, checking dtype, shape and offsets.
static tl_status st_parse_tensor(tl_safetensors *st, const cJSON *e, tl_st_tensor *t) {
  t->name = tl_xstrdup(e->string);
  const char *file = st->path, *name = t->name;
  const cJSON *dtype = cJSON_GetObjectItemCaseSensitive(e, "dtype");
  const cJSON *shape = cJSON_GetObjectItemCaseSensitive(e, "shape");
  const cJSON *offs = cJSON_GetObjectItemCaseSensitive(e, "data_offsets");
  if (!cJSON_IsObject(e) || !cJSON_IsString(dtype) || !cJSON_IsArray(shape) ||
      !cJSON_IsArray(offs)) {
    tl_set_error("%s: tensor '%s': expected an object with dtype, shape and data_offsets",
                 file, name);
    return TL_ERR;
  }

  // dtype: any the format defines; tl can load the supported subset.
  const st_dtype *dt = st_dtype_by_name(dtype->valuestring);
  if (!dt) {
    tl_set_error("%s: tensor '%s': unknown dtype '%s'", file, name, dtype->valuestring);
    return TL_ERR;
  }
  snprintf(t->dtype_name, sizeof t->dtype_name, "%s", dt->name);
  t->supported = dt->supported;
  t->dtype = dt->dtype;

  // shape: up to TL_ST_MAX_RANK non-negative integers.
  t->rank = cJSON_GetArraySize(shape);
  if (t->rank > TL_ST_MAX_RANK) {
    tl_set_error("%s: tensor '%s': rank %d above %d", file, name, t->rank, TL_ST_MAX_RANK);
    return TL_ERR;
  }
  for (int d = 0; d < t->rank; d++) {
    uint64_t s;
    if (!st_get_u64(cJSON_GetArrayItem(shape, d), &s) || s > INT64_MAX) {
      tl_set_error("%s: tensor '%s': shape[%d] is not a non-negative integer", file, name, d);
      return TL_ERR;
    }
    t->shape[d] = (int64_t)s;
  }

  // data_offsets: [begin, end] inside the data section, sized as dtype x shape.
  if (cJSON_GetArraySize(offs) != 2 || !st_get_u64(cJSON_GetArrayItem(offs, 0), &t->begin) ||
      !st_get_u64(cJSON_GetArrayItem(offs, 1), &t->end) || t->begin > t->end) {
    tl_set_error("%s: tensor '%s': data_offsets must be [begin, end] with begin <= end", file,
                 name);
    return TL_ERR;
  }
  if (t->end > st->data_size) {
    tl_set_error("%s: tensor '%s': data_offsets [%llu, %llu] run past the data section "
                 "(%llu bytes; file truncated?)", file, name, (unsigned long long)t->begin,
                 (unsigned long long)t->end, (unsigned long long)st->data_size);
    return TL_ERR;
  }
  uint64_t want = st_numel(t->rank, t->shape) * dt->size;
  if (t->end - t->begin != want) {
    tl_set_error("%s: tensor '%s': data_offsets span %llu bytes, but %s x %s needs %llu",
                 file, name, (unsigned long long)(t->end - t->begin), dt->name,
                 st_shape_str(t->rank, t->shape), (unsigned long long)want);
    return TL_ERR;
  }
  return TL_OK;
}

static int st_cmp_begin(const void *a, const void *b) {
  const tl_st_tensor *x = *(tl_st_tensor *const *)a, *y = *(tl_st_tensor *const *)b;
  return x->begin < y->begin ? -1 : x->begin > y->begin;
}

static int st_cmp_name(const void *a, const void *b) {
  return strcmp((*(tl_st_tensor *const *)a)->name, (*(tl_st_tensor *const *)b)->name);
}

// Two entries with one name (JSON allows it) would make look-ups ambiguous.
static tl_status st_check_names(tl_safetensors *st) {
  tl_st_tensor **order = tl_xmalloc((size_t)st->count * sizeof *order + 1);
  for (int i = 0; i < st->count; i++) order[i] = &st->tensors[i];
  qsort(order, (size_t)st->count, sizeof *order, st_cmp_name);
  tl_status rc = TL_OK;
  for (int i = 1; i < st->count && rc == TL_OK; i++) {
    if (!strcmp(order[i]->name, order[i - 1]->name)) {
      tl_set_error("%s: tensor '%s' appears twice in the header", st->path, order[i]->name);
      rc = TL_ERR;
    }
  }
  free(order);
  return rc;
}

// Two tensors sharing bytes means a corrupt or hostile header.
static tl_status st_check_overlap(tl_safetensors *st) {
  tl_st_tensor **order = tl_xmalloc((size_t)st->count * sizeof *order + 1);
  for (int i = 0; i < st->count; i++) order[i] = &st->tensors[i];
  qsort(order, (size_t)st->count, sizeof *order, st_cmp_begin);
  tl_status rc = TL_OK;
  for (int i = 1; i < st->count && rc == TL_OK; i++) {
    if (order[i]->begin < order[i - 1]->end) {
      tl_set_error("%s: tensors '%s' and '%s' overlap in the data section", st->path,
                   order[i - 1]->name, order[i]->name);
      rc = TL_ERR;
    }
  }
  free(order);
  return rc;
}

static tl_status st_parse_header(tl_safetensors *st, const char *json, size_t len) {
  cJSON *root = cJSON_ParseWithLength(json, len);
  if (!cJSON_IsObject(root)) {
    tl_set_error("%s: header is not a JSON object", st->path);
    cJSON_Delete(root);
    return TL_ERR;
  }
  int n = cJSON_GetArraySize(root);
  st->tensors = tl_xcalloc((size_t)n + 1, sizeof *st->tensors);
  tl_status rc = TL_OK;
  const cJSON *e;
  cJSON_ArrayForEach(e, root) {
    if (!strcmp(e->string, "__metadata__")) rc = st_parse_meta(st, e);
    else rc = st_parse_tensor(st, e, &st->tensors[st->count++]);
    if (rc != TL_OK) break;
  }
  cJSON_Delete(root);
  if (rc == TL_OK) rc = st_check_names(st);
  return rc == TL_OK ? st_check_overlap(st) : rc;
}

// --- reader: open, close, look up -----------------------------------------------

static bool st_pread_all(int fd, void *dst, size_t n, uint64_t offset) {
  uint8_t *p = dst;
  while (n > 0) {
    ssize_t got = pread(fd, p, n, (off_t)offset);
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0) return false;
    p += got, n -= (size_t)got, offset += (uint64_t)got;
  }
  return true;
}

// Reads and checks the length prefix; returns the header length through hlen.
static tl_status st_read_prefix(tl_safetensors *st, uint64_t file_size, uint64_t *hlen) {
  uint8_t prefix[8];
  if (file_size < 8 || !st_pread_all(st->fd, prefix, 8, 0)) {
    tl_set_error("%s: too short for a safetensors file (%llu bytes)", st->path,
                 (unsigned long long)file_size);
    return TL_ERR;
  }
  *hlen = 0;
  for (int i = 0; i < 8; i++) *hlen |= (uint64_t)prefix[i] << (8 * i);
  if (*hlen < 2 || *hlen > TL_ST_MAX_HEADER || *hlen > file_size - 8) {
    tl_set_error("%s: header length %llu is impossible for a %llu-byte file", st->path,
                 (unsigned long long)*hlen, (unsigned long long)file_size);
    return TL_ERR;
  }
  return TL_OK;
}

tl_status tl_safetensors_open(tl_safetensors *st, const char *path) {
  memset(st, 0, sizeof *st);
  st->fd = open(path, O_RDONLY | O_CLOEXEC);
  if (st->fd < 0) {
    tl_set_error("%s: cannot open: %s", path, strerror(errno));
    return TL_ERR;
  }
  st->path = tl_xstrdup(path);

  // The length prefix, then the header, then what is left is the data section.
  struct stat sb;
  uint64_t hlen = 0;
  tl_status rc = fstat(st->fd, &sb) == 0 ? TL_OK : TL_ERR;
  if (rc != TL_OK) tl_set_error("%s: cannot stat: %s", path, strerror(errno));
  if (rc == TL_OK) rc = st_read_prefix(st, (uint64_t)sb.st_size, &hlen);
  if (rc == TL_OK) {
    st->data_start = 8 + hlen;
    st->data_size = (uint64_t)sb.st_size - st->data_start;
    char *json = tl_xmalloc(hlen + 1);
    if (!st_pread_all(st->fd, json, hlen, 8)) {
      tl_set_error("%s: cannot read the %llu-byte header", path, (unsigned long long)hlen);
      rc = TL_ERR;
    }
    if (rc == TL_OK) rc = st_parse_header(st, json, hlen);
    free(json);
  }
  if (rc != TL_OK) tl_safetensors_close(st);
  return rc;
}

void tl_safetensors_close(tl_safetensors *st) {
  if (!st) return;
  if (st->path && st->fd >= 0) close(st->fd);
  for (int i = 0; i < st->count; i++) free(st->tensors[i].name);
  for (int i = 0; i < st->n_meta; i++) {
    free((void *)st->meta[i].key);
    free((void *)st->meta[i].value);
  }
  free(st->tensors);
  free(st->meta);
  free(st->path);
  memset(st, 0, sizeof *st);
  st->fd = -1;
}

const tl_st_tensor *tl_safetensors_find(const tl_safetensors *st, const char *name) {
  for (int i = 0; i < st->count; i++)
    if (!strcmp(st->tensors[i].name, name)) return &st->tensors[i];
  return NULL;
}

const char *tl_safetensors_meta(const tl_safetensors *st, const char *key) {
  for (int i = 0; i < st->n_meta; i++)
    if (!strcmp(st->meta[i].key, key)) return st->meta[i].value;
  return NULL;
}

// --- reader: tensor data ----------------------------------------------------

static const tl_st_tensor *st_require(const tl_safetensors *st, const char *name) {
  const tl_st_tensor *t = tl_safetensors_find(st, name);
  if (!t) tl_set_error("%s: no tensor named '%s'", st->path, name);
  return t;
}

tl_status tl_safetensors_read_raw(const tl_safetensors *st, const char *name, void *dst,
                                  size_t nbytes) {
  const tl_st_tensor *t = st_require(st, name);
  if (!t) return TL_ERR;
  if (nbytes != t->end - t->begin) {
    tl_set_error("%s: tensor '%s' holds %llu bytes, caller expects %zu", st->path, name,
                 (unsigned long long)(t->end - t->begin), nbytes);
    return TL_ERR;
  }
  if (!st_pread_all(st->fd, dst, nbytes, st->data_start + t->begin)) {
    tl_set_error("%s: tensor '%s': read failed: %s", st->path, name,
                 errno ? strerror(errno) : "unexpected end of file");
    return TL_ERR;
  }
  return TL_OK;
}

// Shape and dtype compatibility of file tensor t with the caller's dst.
static tl_status st_check_target(const tl_safetensors *st, const tl_st_tensor *t,
                                 const tl_tensor *dst) {
  bool same = t->rank == dst->rank;
  for (int d = 0; same && d < t->rank; d++) same = t->shape[d] == dst->shape[d];
  if (!same) {
    char *want = tl_xstrdup(tl_shape_str(dst));
    tl_set_error("%s: tensor '%s' has shape %s, expected %s", st->path, t->name,
                 st_shape_str(t->rank, t->shape), want);
    free(want);
    return TL_ERR;
  }
  bool widen = dst->dtype == TL_F32 && t->supported &&
               (t->dtype == TL_BF16 || t->dtype == TL_F16);
  if (!t->supported || (t->dtype != dst->dtype && !widen)) {
    tl_set_error("%s: tensor '%s' is %s, cannot load into %s", st->path, t->name,
                 t->dtype_name, tl_dtype_name(dst->dtype));
    return TL_ERR;
  }
  return TL_OK;
}

// IEEE half to float (normals, subnormals, inf and NaN).
static float st_f16_to_f32(uint16_t h) {
  uint32_t sign = (uint32_t)(h >> 15) << 31, exp = (h >> 10) & 31, man = h & 1023;
  float v;
  if (exp == 0) v = ldexpf((float)man, -24);
  else if (exp == 31) v = man ? NAN : INFINITY;
  else v = ldexpf((float)(man | 1024), (int)exp - 25);
  return sign ? -v : v;
}

tl_status tl_safetensors_load(const tl_safetensors *st, const char *name, tl_tensor *dst) {
  const tl_st_tensor *t = st_require(st, name);
  if (!t || st_check_target(st, t, dst) != TL_OK) return TL_ERR;
  TL_ASSERTF(tl_is_contiguous(dst) && dst->device == TL_CPU,
             "safetensors: load target for %s must be a contiguous CPU tensor", name);
  size_t bytes = t->end - t->begin;
  if (t->dtype == dst->dtype) return tl_safetensors_read_raw(st, name, dst->data, bytes);

  // Half precision into f32: read the 16-bit words, then widen in place order.
  uint16_t *half = tl_xmalloc(bytes + 1);
  tl_status rc = tl_safetensors_read_raw(st, name, half, bytes);
  float *out = dst->data;
  for (size_t i = 0; rc == TL_OK && i < bytes / 2; i++)
    out[i] = t->dtype == TL_BF16 ? tl_bf16_to_f32(half[i]) : st_f16_to_f32(half[i]);
  free(half);
  return rc;
}

tl_status tl_safetensors_load_params(const tl_safetensors *st, tl_params *p, bool strict,
                                     int *n_loaded) {
  TL_ASSERT(p->allocated);
  int loaded = 0;
  for (int i = 0; i < p->count; i++) {
    tl_tensor *t = p->info[i].tensor;
    if (!tl_safetensors_find(st, t->name)) {
      if (!strict) continue;
      tl_set_error("%s: parameter '%s' is missing", st->path, t->name);
      return TL_ERR;
    }
    if (tl_safetensors_load(st, t->name, t) != TL_OK) return TL_ERR;
    loaded++;
  }
  if (n_loaded) *n_loaded = loaded;
  return TL_OK;
}
