// spool.c: binary records in host byte order; they never leave this run.
//
// A record is the header, then the tokens in blocks of up to BLOCK tokens:
// a bitmap (bit set: a literal token) and the block's bytes. Most tokens are
// byte bigrams that continue the previous one (bigram "b c" after "a b"), so
// they are stored as their one new byte; any other token is a 3-byte literal.
// That keeps the spool and the shuffle buckets near a byte per token instead of
// four: their disk traffic was a quarter of tl-prep's time.
#include "data/spool.h"

#include <errno.h>
#include <string.h>

#include "data/tokenizer.h"

enum { BLOCK = 256, FIRST_BIGRAM = 5, LITERAL_LIMIT = 1 << 24 };

// Whether token t is bigram "b c" following bigram "a b" (prev).
static int continues(int32_t prev, int32_t t) {
  return prev >= FIRST_BIGRAM && t >= FIRST_BIGRAM &&
         ((t - FIRST_BIGRAM) >> 8) == ((prev - FIRST_BIGRAM) & 0xff);
}

// Encodes tokens[0, n) (n <= BLOCK), prev being the token before them (-1 at
// the start); returns the bytes written to out (bitmap first).
static size_t encode_block(const int32_t *tokens, int n, int32_t prev, uint8_t *out) {
  size_t map_bytes = (size_t)(n + 7) / 8, k = map_bytes;
  memset(out, 0, map_bytes);
  for (int i = 0; i < n; i++) {
    int32_t t = tokens[i];
    TL_ASSERTF(t >= 0 && t < LITERAL_LIMIT, "spool: token %d out of range", (int)t);
    if (continues(prev, t)) {
      out[k++] = (uint8_t)(t - FIRST_BIGRAM);
    } else {
      out[i / 8] |= (uint8_t)(1u << (i % 8));
      out[k++] = (uint8_t)t;
      out[k++] = (uint8_t)(t >> 8);
      out[k++] = (uint8_t)(t >> 16);
    }
    prev = t;
  }
  return k;
}

tl_status tl_spool_write(FILE *f, const char *path, const tl_spool_row *h, const int32_t *tokens) {
  uint8_t buf[BLOCK / 8 + 3 * BLOCK];
  int ok = fwrite(h, sizeof *h, 1, f) == 1;
  for (int at = 0; ok && at < h->length; at += BLOCK) {
    int n = h->length - at < BLOCK ? h->length - at : BLOCK;
    size_t k = encode_block(tokens + at, n, at > 0 ? tokens[at - 1] : -1, buf);
    ok = fwrite(buf, 1, k, f) == k;
  }
  if (!ok) {
    tl_set_error("%s: cannot write temporary rows: %s", path, strerror(errno));
    return TL_ERR;
  }
  return TL_OK;
}

// Reads and decodes one block of n tokens into tokens; 0 on a short read.
static int read_block(FILE *f, int32_t *tokens, int n, int32_t prev) {
  uint8_t map[BLOCK / 8], bytes[3 * BLOCK];
  size_t map_bytes = (size_t)(n + 7) / 8;
  if (fread(map, 1, map_bytes, f) != map_bytes) return 0;
  int literals = 0;
  for (size_t i = 0; i < map_bytes; i++) literals += __builtin_popcount(map[i]);
  size_t want = (size_t)(n + 2 * literals);
  if (fread(bytes, 1, want, f) != want) return 0;
  const uint8_t *p = bytes;
  for (int i = 0; i < n; i++) {
    int32_t t;
    if (map[i / 8] & (1u << (i % 8))) {
      t = (int32_t)(p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16);
      p += 3;
    } else {
      if (prev < FIRST_BIGRAM) return 0; // a continuation needs a bigram before it
      t = FIRST_BIGRAM + (((prev - FIRST_BIGRAM) & 0xff) << 8 | *p++);
    }
    tokens[i] = prev = t;
  }
  return 1;
}

int tl_spool_read(FILE *f, const char *path, tl_spool_row *h, int32_t *tokens, int max_len) {
  size_t got = fread(h, sizeof *h, 1, f);
  if (got == 0 && feof(f)) return 0;
  int ok = got == 1 && h->length >= 0 && h->length <= max_len;
  for (int at = 0; ok && at < h->length; at += BLOCK) {
    int n = h->length - at < BLOCK ? h->length - at : BLOCK;
    ok = read_block(f, tokens + at, n, at > 0 ? tokens[at - 1] : -1);
  }
  if (!ok) {
    tl_set_error("%s: temporary row file is truncated or corrupt", path);
    return -1;
  }
  return 1;
}
