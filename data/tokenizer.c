// tokenizer.c: ET-BERT byte bigrams, the native vocabulary and the importer
// for the published vocabulary file (see tokenizer.h).
#include "data/tokenizer.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "data/names.h"

static const char *const g_special_names[TL_TOK_NUM_SPECIAL] = {"[PAD]", "[SEP]", "[CLS]",
                                                                 "[UNK]", "[MASK]"};

tl_tokenizer *tl_tokenizer_native(void) {
  tl_tokenizer *t = tl_xcalloc(1, sizeof *t);
  snprintf(t->name, sizeof t->name, "%s", TL_TOKENIZER_NATIVE);
  t->vocab_size = TL_TOK_VOCAB_SIZE;
  for (int v = 0; v < TL_TOK_NUM_BIGRAMS; v++) t->bigram_id[v] = TL_TOK_NUM_SPECIAL + v;
  return t;
}

void tl_tokenizer_free(tl_tokenizer *t) { free(t); }

size_t tl_tokenize_packet(const tl_tokenizer *t, const uint8_t *bytes, size_t n, int32_t *out,
                          size_t cap) {
  size_t count = tl_tokenize_count(n);
  if (count > cap) count = cap;
  if (!t) { // the native vocabulary, without the 256 KiB table: vectorizes
    for (size_t i = 0; i < count; i++) out[i] = TL_TOK_NUM_SPECIAL + (bytes[i] << 8 | bytes[i + 1]);
    return count;
  }
  for (size_t i = 0; i < count; i++) out[i] = t->bigram_id[bytes[i] << 8 | bytes[i + 1]];
  return count;
}

const char *tl_token_text(int32_t id, char buf[8]) {
  if (id >= 0 && id < TL_TOK_NUM_SPECIAL) return g_special_names[id];
  if (id < TL_TOK_NUM_SPECIAL || id >= TL_TOK_VOCAB_SIZE) return "?";
  snprintf(buf, 8, "%04x", (unsigned)(id - TL_TOK_NUM_SPECIAL));
  return buf;
}

tl_status tl_tokenizer_write_vocab(const char *path) {
  FILE *f = fopen(path, "w");
  if (!f) {
    tl_set_error("%s: cannot write vocabulary: %s", path, strerror(errno));
    return TL_ERR;
  }
  char buf[8];
  for (int32_t id = 0; id < TL_TOK_VOCAB_SIZE; id++) fprintf(f, "%s\n", tl_token_text(id, buf));
  // fclose reports a full disk that buffered writes hid.
  if (ferror(f) | fclose(f)) {
    tl_set_error("%s: write failed: %s", path, strerror(errno));
    return TL_ERR;
  }
  return TL_OK;
}

// The bigram a vocabulary entry names (exactly four hex digits), or -1 for
// anything else: specials, sub-pieces ("0", "dc", "##fe", "34d").
static int entry_bigram(const char *s, size_t len) {
  if (len != 4) return -1;
  int v = 0;
  for (int i = 0; i < 4; i++) {
    int d = tl_hex_digit(s[i]);
    if (d < 0) return -1;
    v = v << 4 | d;
  }
  return v;
}

// Strips the line ending (\n, \r\n) in place and returns the remaining length.
static size_t chomp(char *line, size_t len) {
  while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r')) line[--len] = '\0';
  return len;
}

tl_tokenizer *tl_tokenizer_import(const char *path) {
  FILE *f = fopen(path, "r");
  if (!f) {
    tl_set_error("%s: cannot open vocabulary: %s", path, strerror(errno));
    return NULL;
  }
  tl_tokenizer *t = tl_xcalloc(1, sizeof *t);
  snprintf(t->name, sizeof t->name, "%s", TL_TOKENIZER_PUBLISHED);
  for (int v = 0; v < TL_TOK_NUM_BIGRAMS; v++) t->bigram_id[v] = -1;

  // One entry per line; the line number is the id.
  char *line = NULL;
  size_t line_cap = 0;
  ssize_t got;
  int32_t id = 0;
  while ((got = getline(&line, &line_cap, f)) >= 0) {
    size_t len = chomp(line, (size_t)got);
    if (id < TL_TOK_NUM_SPECIAL && strcmp(line, g_special_names[id]) != 0) {
      tl_set_error("%s:%d: expected the special token %s, found '%.40s'", path, id + 1,
                   g_special_names[id], line);
      goto fail;
    }
    int v = entry_bigram(line, len);
    if (v >= 0 && t->bigram_id[v] < 0) t->bigram_id[v] = id;
    id++;
  }
  if (id < TL_TOK_NUM_SPECIAL) {
    tl_set_error("%s: %d lines, expected at least the %d special tokens", path, id,
                 TL_TOK_NUM_SPECIAL);
    goto fail;
  }
  t->vocab_size = id;

  // Bigrams the file lacks become [UNK]; say how many, it bounds what a model
  // using this vocabulary can tell apart.
  for (int v = 0; v < TL_TOK_NUM_BIGRAMS; v++) {
    if (t->bigram_id[v] >= 0) continue;
    t->bigram_id[v] = TL_TOK_UNK;
    t->n_missing++;
  }
  tl_info("%s: %d entries, %d of %d bigrams missing (mapped to [UNK])", path, id, t->n_missing,
          TL_TOK_NUM_BIGRAMS);
  free(line);
  fclose(f);
  return t;

fail:
  free(line);
  fclose(f);
  free(t);
  return NULL;
}
