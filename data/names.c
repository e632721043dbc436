// names.c: see names.h.
#include "data/names.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "core/log.h"

// Length of the valid UTF-8 sequence at p (1 to 4), or 0 when p does not start one.
static int utf8_sequence(const unsigned char *p) {
  if (p[0] < 0x80) return 1;
  int n = p[0] >= 0xf0 ? 4 : p[0] >= 0xe0 ? 3 : p[0] >= 0xc0 ? 2 : 0;
  if (n == 0 || p[0] > 0xf4) return 0;
  uint32_t cp = p[0] & (0x7f >> n);
  for (int i = 1; i < n; i++) {
    if ((p[i] & 0xc0) != 0x80) return 0; // also stops at the terminating zero
    cp = cp << 6 | (p[i] & 0x3f);
  }
  static const uint32_t smallest[] = {0, 0, 0x80, 0x800, 0x10000};
  if (cp < smallest[n] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return 0;
  return n;
}

int tl_utf8_valid(const char *s) {
  for (const unsigned char *p = (const unsigned char *)s; *p;) {
    int n = utf8_sequence(p);
    if (!n) return 0;
    p += n;
  }
  return 1;
}

char *tl_utf8_escape(const char *s) {
  char *out = tl_xmalloc(4 * strlen(s) + 1), *o = out;
  for (const unsigned char *p = (const unsigned char *)s; *p;) {
    int n = utf8_sequence(p);
    if (n) {
      memcpy(o, p, (size_t)n);
      o += n;
      p += n;
    } else {
      o += sprintf(o, "\\x%02x", *p++);
    }
  }
  *o = 0;
  return out;
}

char *tl_hex_encode(const char *s) {
  size_t n = strlen(s);
  char *out = tl_xmalloc(2 * n + 1);
  for (size_t i = 0; i < n; i++) sprintf(out + 2 * i, "%02x", (unsigned char)s[i]);
  out[2 * n] = 0;
  return out;
}

int tl_hex_digit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

char *tl_hex_decode(const char *hex) {
  size_t n = strlen(hex);
  if (n % 2) return NULL;
  char *out = tl_xmalloc(n / 2 + 1);
  for (size_t i = 0; i < n / 2; i++) {
    int hi = tl_hex_digit(hex[2 * i]), lo = tl_hex_digit(hex[2 * i + 1]);
    if (hi < 0 || lo < 0 || (hi | lo) == 0) {
      free(out);
      return NULL;
    }
    out[i] = (char)(hi << 4 | lo);
  }
  out[n / 2] = 0;
  return out;
}
