// spool.c: binary records in host byte order; they never leave this run.
//
// A record is its payload size (4 bytes), the row header, then the tokens as
// runs. Most tokens are byte bigrams that continue the previous one (bigram
// "b c" after "a b"), so a run is a token followed by the bigrams that chain
// from it: its length (a varint), the first token (3 bytes), then one new byte
// per chained bigram. A packet's tokens are one run, and a row takes about a
// byte per token instead of four: the temporary data's disk traffic was a
// quarter of tl-prep's time. Both loops over a run's bytes are branch-free.
#include "data/spool.h"

#include <string.h>

enum { FIRST_BIGRAM = 5, LITERAL_LIMIT = 1 << 24, MAX_VARINT = 5 };

// Whether token t is bigram "b c" following bigram "a b" (prev).
static inline int continues(int32_t prev, int32_t t) {
  return prev >= FIRST_BIGRAM && t >= FIRST_BIGRAM &&
         ((t - FIRST_BIGRAM) >> 8) == ((prev - FIRST_BIGRAM) & 0xff);
}

size_t tl_spool_bound(int length) {
  size_t n = length > 0 ? (size_t)length : 0;
  // Worst case: every token its own run (one length byte and three bytes).
  return TL_SPOOL_HEAD + 4 * n + MAX_VARINT;
}

static size_t put_varint(uint8_t *out, uint32_t v) {
  size_t k = 0;
  for (; v >= 0x80; v >>= 7) out[k++] = (uint8_t)(v | 0x80);
  out[k++] = (uint8_t)v;
  return k;
}

// Reads a varint at p (before end); NULL when it overruns or is too long.
static const uint8_t *get_varint(const uint8_t *p, const uint8_t *end, uint32_t *v) {
  *v = 0;
  for (int shift = 0; p < end && shift < 7 * MAX_VARINT; shift += 7) {
    uint8_t b = *p++;
    *v |= (uint32_t)(b & 0x7f) << shift;
    if (!(b & 0x80)) return p;
  }
  return NULL;
}

// Appends the run tokens[0, n) (each after the first chains from the one
// before) to out; returns the bytes written.
static size_t encode_run(const int32_t *tokens, int n, uint8_t *out) {
  int32_t t = tokens[0];
  TL_ASSERTF(t >= 0 && t < LITERAL_LIMIT, "spool: token %d out of range", (int)t);
  size_t k = put_varint(out, (uint32_t)n);
  out[k++] = (uint8_t)t;
  out[k++] = (uint8_t)(t >> 8);
  out[k++] = (uint8_t)(t >> 16);
  for (int j = 1; j < n; j++) out[k + (size_t)j - 1] = (uint8_t)(tokens[j] - FIRST_BIGRAM);
  return k + (size_t)(n - 1);
}

size_t tl_spool_encode(const tl_spool_row *h, const int32_t *tokens, uint8_t *out) {
  size_t k = TL_SPOOL_HEAD;
  for (int at = 0; at < h->length;) {
    int end = at + 1;
    while (end < h->length && continues(tokens[end - 1], tokens[end])) end++;
    k += encode_run(tokens + at, end - at, out + k);
    at = end;
  }
  uint32_t payload = (uint32_t)(k - TL_SPOOL_HEAD);
  memcpy(out, &payload, 4);
  memcpy(out + 4, h, sizeof *h);
  return k;
}

size_t tl_spool_record_size(const uint8_t *rec) {
  uint32_t payload;
  memcpy(&payload, rec, 4);
  return TL_SPOOL_HEAD + (size_t)payload;
}

// Decodes one run at p (before end) into tokens[0, room); returns the byte
// after it and its length in *n, or NULL when it is invalid or overruns.
static const uint8_t *decode_run(const uint8_t *p, const uint8_t *end, int32_t *tokens,
                                 int room, int *n) {
  uint32_t len;
  p = get_varint(p, end, &len);
  if (!p || len == 0 || len > (uint32_t)room || (size_t)(end - p) < 3 + (size_t)len - 1)
    return NULL;
  int32_t t = (int32_t)(p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16);
  if (len > 1 && t < FIRST_BIGRAM) return NULL; // a chain starts from a bigram
  p += 3;
  tokens[0] = t;
  // Each chained bigram is the byte before it and its own.
  uint8_t last = (uint8_t)(t - FIRST_BIGRAM);
  if (len > 1) tokens[1] = FIRST_BIGRAM + (last << 8 | p[0]);
  for (uint32_t j = 2; j < len; j++) tokens[j] = FIRST_BIGRAM + (p[j - 2] << 8 | p[j - 1]);
  *n = (int)len;
  return p + len - 1;
}

size_t tl_spool_decode(const uint8_t *rec, size_t avail, tl_spool_row *h, int32_t *tokens,
                       int max_len, const char *path) {
  size_t size = avail >= TL_SPOOL_HEAD ? tl_spool_record_size(rec) : 0;
  int ok = size > 0 && size <= avail;
  if (ok) {
    memcpy(h, rec + 4, sizeof *h);
    ok = h->length >= 0 && h->length <= max_len;
  }
  const uint8_t *p = rec + TL_SPOOL_HEAD, *end = rec + size;
  for (int at = 0, n = 0; ok && at < h->length; at += n) {
    p = decode_run(p, end, tokens + at, h->length - at, &n);
    ok = p != NULL;
  }
  if (!ok || p != end) {
    tl_set_error("%s: temporary row record is cut short or corrupt", path);
    return 0;
  }
  return size;
}
