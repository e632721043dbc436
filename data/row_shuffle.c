// row_shuffle.c: the bucket shuffle behind row_shuffle.h.
//
// All buckets share one temporary file: each bucket gathers records in a
// memory buffer and appends it to the file as one block when full, so adding
// a row costs no system call, and a small run never touches the disk. A block
// holds whole records, so a bucket reads back as its blocks then its buffer.
#include "data/row_shuffle.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include "data/split.h"

enum {
  BUCKETS = 64,           // buckets rows are scattered into, at each level
  BUFFER_BYTES = 64 << 10 // a bucket's memory buffer, written out when full
};

typedef struct {
  int64_t offset, bytes;
} block;

typedef struct {
  uint8_t *buf; // records not yet written, buf[0, used)
  size_t used, cap;
  block *blocks; // written records, in order
  int n_blocks, cap_blocks;
  int64_t bytes;   // all its records' bytes
  int64_t records; // how many
} bucket;

struct tl_row_shuffle {
  char *path;
  int fd;
  int64_t file_end;
  tl_split_rng pick;    // which bucket a row goes to
  tl_split_rng shuffle; // the order inside a bucket
  bucket top[BUCKETS];
  uint8_t *record; // scratch for one encoded record
  size_t record_cap;
  int64_t max_bytes; // a bucket larger than this is scattered again
};

static void grow(uint8_t **buf, size_t *cap, size_t need) {
  if (need > *cap) {
    *buf = tl_xrealloc(*buf, need);
    *cap = need;
  }
}

static void free_bucket(bucket *b) {
  free(b->buf);
  free(b->blocks);
  memset(b, 0, sizeof *b);
}

tl_row_shuffle *tl_row_shuffle_open(const char *dir, uint64_t seed, uint64_t stream) {
  tl_row_shuffle *s = tl_xcalloc(1, sizeof *s);
  s->path = tl_xstrdup(tl_fmt("%s/rows.buckets", dir));
  s->fd = open(s->path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (s->fd < 0) {
    tl_set_error("%s: cannot create: %s", s->path, strerror(errno));
    tl_row_shuffle_free(s);
    return NULL;
  }
  s->max_bytes = TL_ROW_SHUFFLE_BUCKET_BYTES;
  tl_split_rng_seed(&s->pick, seed, stream);
  tl_split_rng_seed(&s->shuffle, seed, stream + 1);
  return s;
}

// Appends a bucket's buffer to the file as one block.
static tl_status write_block(tl_row_shuffle *s, bucket *b) {
  const uint8_t *p = b->buf;
  for (size_t left = b->used; left > 0;) {
    ssize_t n = pwrite(s->fd, p, left, (off_t)(s->file_end + (p - b->buf)));
    if (n <= 0) {
      tl_set_error("%s: cannot write temporary rows: %s", s->path,
                   n < 0 ? strerror(errno) : "disk full");
      return TL_ERR;
    }
    p += n;
    left -= (size_t)n;
  }
  if (b->n_blocks == b->cap_blocks) {
    b->cap_blocks = b->cap_blocks ? 2 * b->cap_blocks : 16;
    b->blocks = tl_xrealloc(b->blocks, (size_t)b->cap_blocks * sizeof *b->blocks);
  }
  b->blocks[b->n_blocks++] = (block){s->file_end, (int64_t)b->used};
  s->file_end += (int64_t)b->used;
  b->used = 0;
  return TL_OK;
}

// Adds the encoded record rec[n] to a random one of b[k].
static tl_status put_record(tl_row_shuffle *s, bucket *b, int k, const uint8_t *rec, size_t n) {
  bucket *to = &b[tl_split_rng_below(&s->pick, (uint64_t)k)];
  if (to->used + n > BUFFER_BYTES && to->used > 0 && write_block(s, to) != TL_OK) return TL_ERR;
  grow(&to->buf, &to->cap, to->used + n > BUFFER_BYTES ? to->used + n : BUFFER_BYTES);
  memcpy(to->buf + to->used, rec, n);
  to->used += n;
  to->bytes += (int64_t)n;
  to->records++;
  return TL_OK;
}

tl_status tl_row_shuffle_add(tl_row_shuffle *s, const tl_spool_row *h, const int32_t *tokens) {
  grow(&s->record, &s->record_cap, tl_spool_bound(h->length));
  size_t n = tl_spool_encode(h, tokens, s->record);
  return put_record(s, s->top, BUCKETS, s->record, n);
}

static tl_status read_at(tl_row_shuffle *s, uint8_t *to, int64_t offset, int64_t bytes) {
  for (int64_t done = 0; done < bytes;) {
    ssize_t n = pread(s->fd, to + done, (size_t)(bytes - done), (off_t)(offset + done));
    if (n <= 0) {
      tl_set_error("%s: cannot read temporary rows back: %s", s->path,
                   n < 0 ? strerror(errno) : "file cut short");
      return TL_ERR;
    }
    done += n;
  }
  return TL_OK;
}

// Reads a whole bucket, its blocks then its buffer, into a new buffer (the
// caller frees); NULL on a read error.
static uint8_t *load_bucket(tl_row_shuffle *s, const bucket *b) {
  uint8_t *data = tl_xmalloc(b->bytes > 0 ? (size_t)b->bytes : 1);
  int64_t at = 0;
  for (int i = 0; i < b->n_blocks; i++) {
    if (read_at(s, data + at, b->blocks[i].offset, b->blocks[i].bytes) != TL_OK) {
      free(data);
      return NULL;
    }
    at += b->blocks[i].bytes;
  }
  if (b->used > 0) memcpy(data + at, b->buf, b->used);
  return data;
}

// Calls each(rec, size) for the records of data[0, bytes) in order.
typedef tl_status (*record_fn)(tl_row_shuffle *s, const uint8_t *rec, size_t size, void *ctx);

static tl_status walk_records(tl_row_shuffle *s, const uint8_t *data, int64_t bytes,
                              record_fn each, void *ctx) {
  for (int64_t p = 0; p < bytes;) {
    size_t size = bytes - p >= TL_SPOOL_HEAD ? tl_spool_record_size(data + p) : 0;
    if (size == 0 || size > (size_t)(bytes - p)) {
      tl_set_error("%s: temporary rows cut short", s->path);
      return TL_ERR;
    }
    if (each(s, data + p, size, ctx) != TL_OK) return TL_ERR;
    p += (int64_t)size;
  }
  return TL_OK;
}

static tl_status drain_bucket(tl_row_shuffle *s, bucket *b, int max_len, tl_row_fn fn,
                              void *ctx);

static tl_status rescatter_record(tl_row_shuffle *s, const uint8_t *rec, size_t size,
                                  void *ctx) {
  return put_record(s, ctx, BUCKETS, rec, size);
}

// A bucket too large for memory: its records go, still encoded, into BUCKETS
// new random buckets (one block in memory at a time), drained in turn.
static tl_status scatter_again(tl_row_shuffle *s, bucket *b, int max_len, tl_row_fn fn,
                               void *ctx) {
  bucket *sub = tl_xcalloc(BUCKETS, sizeof *sub);
  uint8_t *data = NULL;
  size_t cap = 0;
  tl_status st = TL_OK;
  for (int i = 0; i < b->n_blocks && st == TL_OK; i++) {
    grow(&data, &cap, (size_t)b->blocks[i].bytes);
    st = read_at(s, data, b->blocks[i].offset, b->blocks[i].bytes);
    if (st == TL_OK) st = walk_records(s, data, b->blocks[i].bytes, rescatter_record, sub);
  }
  free(data);
  if (st == TL_OK) st = walk_records(s, b->buf, (int64_t)b->used, rescatter_record, sub);
  free_bucket(b);
  for (int i = 0; i < BUCKETS && st == TL_OK; i++) st = drain_bucket(s, &sub[i], max_len, fn, ctx);
  for (int i = 0; i < BUCKETS; i++) free_bucket(&sub[i]);
  free(sub);
  return st;
}

typedef struct {
  const uint8_t *base; // the bucket's records
  int64_t n, cap;
  int64_t *at; // record offsets from base
} offsets;

static tl_status note_offset(tl_row_shuffle *s, const uint8_t *rec, size_t size, void *ctx) {
  (void)s, (void)size;
  offsets *o = ctx;
  if (o->n == o->cap) {
    o->cap = o->cap ? 2 * o->cap : 1024;
    o->at = tl_xrealloc(o->at, (size_t)o->cap * sizeof *o->at);
  }
  o->at[o->n++] = rec - o->base;
  return TL_OK;
}

// Hands the rows of one bucket to fn in a random order.
static tl_status drain_bucket(tl_row_shuffle *s, bucket *b, int max_len, tl_row_fn fn,
                              void *ctx) {
  // One record (larger than the bound) cannot be split further.
  if (b->bytes > s->max_bytes && b->records > 1) return scatter_again(s, b, max_len, fn, ctx);
  uint8_t *data = load_bucket(s, b);
  if (!data) return TL_ERR;
  offsets o = {.base = data};
  tl_status st = walk_records(s, data, b->bytes, note_offset, &o);
  tl_split_shuffle(o.at, o.n, &s->shuffle);
  int32_t *tokens = tl_xmalloc((size_t)(max_len > 0 ? max_len : 1) * sizeof *tokens);
  tl_spool_row h;
  for (int64_t i = 0; i < o.n && st == TL_OK; i++) {
    // Records are visited in random order: fetch the next ones early.
    for (int k = 1; k <= 2 && i + k < o.n; k++) {
      __builtin_prefetch(data + o.at[i + k]);
      __builtin_prefetch(data + o.at[i + k] + 64);
    }
    size_t avail = (size_t)(b->bytes - o.at[i]);
    if (!tl_spool_decode(data + o.at[i], avail, &h, tokens, max_len, s->path)) st = TL_ERR;
    else st = fn(&h, tokens, ctx);
  }
  free(tokens);
  free(o.at);
  free(data);
  free_bucket(b);
  return st;
}

tl_status tl_row_shuffle_drain(tl_row_shuffle *s, int max_len, tl_row_fn fn, void *ctx) {
  tl_status st = TL_OK;
  for (int i = 0; i < BUCKETS && st == TL_OK; i++) st = drain_bucket(s, &s->top[i], max_len, fn, ctx);
  return st;
}

void tl_row_shuffle_set_bucket_bytes(tl_row_shuffle *s, int64_t max_bytes) {
  s->max_bytes = max_bytes;
}

void tl_row_shuffle_free(tl_row_shuffle *s) {
  if (!s) return;
  for (int i = 0; i < BUCKETS; i++) free_bucket(&s->top[i]);
  if (s->fd >= 0) close(s->fd);
  if (s->path) unlink(s->path);
  free(s->record);
  free(s->path);
  free(s);
}
