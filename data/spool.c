// spool.c: binary records in host byte order; they never leave this run.
//
// A record is its payload size (4 bytes), the row header, then the tokens in
// blocks of up to BLOCK tokens: a bitmap (bit set: a literal token) and the
// block's bytes. Most tokens are byte bigrams that continue the previous one
// (bigram "b c" after "a b"), so they are stored as their one new byte; any
// other token is a 3-byte literal. That keeps temporary files near a byte per
// token instead of four: their disk traffic was a quarter of tl-prep's time.
#include "data/spool.h"

#include <string.h>

enum { BLOCK = 256, FIRST_BIGRAM = 5, LITERAL_LIMIT = 1 << 24 };

// Set bits of every byte value, for counting a block's literals.
static const uint8_t g_bits[256] = {
#define B2(n) n, n + 1, n + 1, n + 2
#define B4(n) B2(n), B2(n + 1), B2(n + 1), B2(n + 2)
#define B6(n) B4(n), B4(n + 1), B4(n + 1), B4(n + 2)
    B6(0), B6(1), B6(1), B6(2)};

// Whether token t is bigram "b c" following bigram "a b" (prev).
static int continues(int32_t prev, int32_t t) {
  return prev >= FIRST_BIGRAM && t >= FIRST_BIGRAM &&
         ((t - FIRST_BIGRAM) >> 8) == ((prev - FIRST_BIGRAM) & 0xff);
}

size_t tl_spool_bound(int length) {
  size_t n = length > 0 ? (size_t)length : 0;
  return TL_SPOOL_HEAD + (n + 7) / 8 + 3 * n;
}

// Encodes tokens[0, n) (n <= BLOCK), prev being the token before them (-1 at
// the start); returns the bytes written to out (bitmap first).
static size_t encode_block(const int32_t *tokens, int n, int32_t prev, uint8_t *out) {
  size_t map_bytes = (size_t)(n + 7) / 8, k = map_bytes;
  memset(out, 0, map_bytes);
  for (int i = 0; i < n; i++) {
    int32_t t = tokens[i];
    // The new byte is written either way; a literal adds two and flags itself.
    out[k++] = (uint8_t)(t - FIRST_BIGRAM);
    if (!continues(prev, t)) {
      TL_ASSERTF(t >= 0 && t < LITERAL_LIMIT, "spool: token %d out of range", (int)t);
      out[i / 8] |= (uint8_t)(1u << (i % 8));
      out[k - 1] = (uint8_t)t;
      out[k++] = (uint8_t)(t >> 8);
      out[k++] = (uint8_t)(t >> 16);
    }
    prev = t;
  }
  return k;
}

size_t tl_spool_encode(const tl_spool_row *h, const int32_t *tokens, uint8_t *out) {
  size_t k = TL_SPOOL_HEAD;
  for (int at = 0; at < h->length; at += BLOCK) {
    int n = h->length - at < BLOCK ? h->length - at : BLOCK;
    k += encode_block(tokens + at, n, at > 0 ? tokens[at - 1] : -1, out + k);
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

// Decodes one block of n tokens from p (end: one past the record); returns the
// byte after it, or NULL when the block overruns the record or is invalid.
static const uint8_t *decode_block(const uint8_t *p, const uint8_t *end, int32_t *tokens, int n,
                                   int32_t prev) {
  size_t map_bytes = (size_t)(n + 7) / 8;
  if ((size_t)(end - p) < map_bytes) return NULL;
  const uint8_t *map = p;
  int literals = 0;
  for (size_t i = 0; i < map_bytes; i++) literals += g_bits[map[i]];
  p += map_bytes;
  if ((size_t)(end - p) < (size_t)(n + 2 * literals)) return NULL;
  for (int i = 0; i < n; i++) {
    // Eight continuations in a row (most of a packet): each token is the
    // byte before it and its own, no bit to test.
    if (i % 8 == 0 && i + 8 <= n && map[i / 8] == 0 && prev >= FIRST_BIGRAM) {
      int32_t last = (prev - FIRST_BIGRAM) & 0xff;
      for (int j = 0; j < 8; j++) tokens[i + j] = FIRST_BIGRAM + ((j ? p[j - 1] : last) << 8 | p[j]);
      p += 8;
      i += 7;
      prev = tokens[i];
      continue;
    }
    int32_t t;
    if (map[i / 8] & (1u << (i % 8))) {
      t = (int32_t)(p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16);
      p += 3;
    } else {
      if (prev < FIRST_BIGRAM) return NULL; // a continuation needs a bigram before it
      t = FIRST_BIGRAM + (((prev - FIRST_BIGRAM) & 0xff) << 8 | *p++);
    }
    tokens[i] = prev = t;
  }
  return p;
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
  for (int at = 0; ok && at < h->length; at += BLOCK) {
    int n = h->length - at < BLOCK ? h->length - at : BLOCK;
    p = decode_block(p, end, tokens + at, n, at > 0 ? tokens[at - 1] : -1);
    ok = p != NULL;
  }
  if (!ok || p != end) {
    tl_set_error("%s: temporary row record is cut short or corrupt", path);
    return 0;
  }
  return size;
}
