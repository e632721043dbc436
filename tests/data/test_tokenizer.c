// test_tokenizer.c: byte bigrams, the native vocabulary file and the importer
// for published-style vocabularies.
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "data/tokenizer.h"

// Writes text to a fresh temporary file and returns its path (static buffer).
static const char *write_temp(const char *text) {
  static char path[64];
  snprintf(path, sizeof path, "/tmp/tl-test-vocab-XXXXXX");
  int fd = mkstemp(path);
  cr_assert(fd >= 0);
  FILE *f = fdopen(fd, "w");
  fputs(text, f);
  fclose(f);
  return path;
}

Test(tokenizer, bigrams_overlap_with_stride_one) {
  const uint8_t bytes[] = {0xdc, 0xfe, 0x18, 0x34};
  int32_t out[8];
  size_t n = tl_tokenize_packet(NULL, bytes, sizeof bytes, out, 8);
  cr_assert_eq(n, 3);
  const char *want[] = {"dcfe", "fe18", "1834"};
  char buf[8];
  for (int i = 0; i < 3; i++) cr_assert_str_eq(tl_token_text(out[i], buf), want[i]);
  // The id formula of the contract: 5 + (b0 << 8 | b1).
  cr_assert_eq(out[0], 5 + 0xdcfe);
  cr_assert_eq(out[2], 5 + 0x1834);
}

Test(tokenizer, short_packets_and_cap) {
  const uint8_t bytes[] = {0x45, 0x00, 0x01, 0xff, 0x00};
  int32_t out[8] = {-7, -7, -7, -7, -7, -7, -7, -7};
  cr_assert_eq(tl_tokenize_packet(NULL, bytes, 0, out, 8), 0);
  cr_assert_eq(tl_tokenize_packet(NULL, bytes, 1, out, 8), 0);
  cr_assert_eq(out[0], -7, "a one-byte packet writes nothing");
  cr_assert_eq(tl_tokenize_packet(NULL, bytes, 5, out, 2), 2);
  cr_assert_eq(out[2], -7, "cap respected");
  cr_assert_eq(out[1], 5 + 0x0001);
  cr_assert_eq(tl_tokenize_count(1), 0);
  cr_assert_eq(tl_tokenize_count(64), 63);
}

Test(tokenizer, native_table_matches_formula) {
  tl_tokenizer *t = tl_tokenizer_native();
  cr_assert_eq(t->vocab_size, 65541);
  cr_assert_str_eq(t->name, "etbert-bigram");
  const uint8_t bytes[] = {0x00, 0x00, 0xff, 0xff, 0x12};
  int32_t a[4], b[4];
  size_t n = tl_tokenize_packet(t, bytes, 5, a, 4);
  tl_tokenize_packet(NULL, bytes, 5, b, 4);
  cr_assert_eq(n, 4);
  cr_assert_eq(a[0], 5);
  cr_assert_eq(a[2], 65540);
  cr_assert_eq(memcmp(a, b, sizeof a), 0);
  tl_tokenizer_free(t);
}

Test(tokenizer, vocab_file_lists_every_id) {
  char path[] = "/tmp/tl-test-vocab-out-XXXXXX";
  int fd = mkstemp(path);
  close(fd);
  cr_assert_eq(tl_tokenizer_write_vocab(path), TL_OK);
  FILE *f = fopen(path, "r");
  char line[32];
  int n = 0;
  const char *specials[] = {"[PAD]", "[SEP]", "[CLS]", "[UNK]", "[MASK]"};
  while (fgets(line, sizeof line, f)) {
    line[strcspn(line, "\n")] = '\0';
    if (n < 5) {
      cr_assert_str_eq(line, specials[n]);
    } else {
      // Parse the hex text back and check it names bigram id - 5.
      unsigned v = 0;
      cr_assert_eq(strlen(line), 4, "line %d", n);
      cr_assert_eq(sscanf(line, "%4x", &v), 1);
      cr_assert_eq((int)v, n - 5, "line %d is %s", n, line);
    }
    n++;
  }
  fclose(f);
  cr_assert_eq(n, 65541);
  unlink(path);
}

Test(tokenizer, import_published_style_vocabulary) {
  // Specials, single digits, WordPiece continuations, three bigrams, an
  // upper-case duplicate (the first entry wins) and a CRLF line.
  const char *vocab = "[PAD]\n[SEP]\n[CLS]\n[UNK]\n[MASK]\n"
                      "0\n##a\ndcfe\n##34\n34d\nfe18\nDCFE\n1834\nab\nabcd\r\n";
  const char *path = write_temp(vocab);
  tl_tokenizer *t = tl_tokenizer_import(path);
  cr_assert_not_null(t, "%s", tl_last_error());
  cr_assert_str_eq(t->name, "etbert-published");
  cr_assert_eq(t->vocab_size, 15);
  cr_assert_eq(t->n_missing, 65536 - 4);

  const uint8_t bytes[] = {0xdc, 0xfe, 0x18, 0x34, 0x00, 0xab, 0xcd};
  int32_t out[8];
  size_t n = tl_tokenize_packet(t, bytes, sizeof bytes, out, 8);
  cr_assert_eq(n, 6);
  int32_t want[] = {7, 10, 12, TL_TOK_UNK, TL_TOK_UNK, 14};
  for (int i = 0; i < 6; i++) cr_assert_eq(out[i], want[i], "token %d: %d", i, out[i]);
  tl_tokenizer_free(t);
  unlink(path);
}

Test(tokenizer, import_rejects_bad_files) {
  const char *path = write_temp("[PAD]\n[CLS]\n[SEP]\n[UNK]\n[MASK]\n0000\n");
  cr_assert_null(tl_tokenizer_import(path));
  cr_assert(strstr(tl_last_error(), path) != NULL, "%s", tl_last_error());
  cr_assert(strstr(tl_last_error(), ":2:") != NULL, "names the line: %s", tl_last_error());
  unlink(path);

  const char *short_path = write_temp("[PAD]\n[SEP]\n");
  cr_assert_null(tl_tokenizer_import(short_path));
  unlink(short_path);

  cr_assert_null(tl_tokenizer_import("/nonexistent/vocab.txt"));
  cr_assert(strstr(tl_last_error(), "/nonexistent/vocab.txt") != NULL);
}
