// test_spool.c: the builder's temporary row records give back exactly the rows
// written (chained bigrams, specials, large ids, rows longer than one block),
// and a cut or damaged file is reported, not decoded into garbage.
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "data/spool.h"

enum { MAX_LEN = 700, N_ROWS = 40 };

static uint64_t g_state = 88172645463325252u;
static uint32_t next_random(void) {
  g_state ^= g_state << 13;
  g_state ^= g_state >> 7;
  g_state ^= g_state << 17;
  return (uint32_t)g_state;
}

// A row like the tokenizer's: [CLS], runs of chained bigrams from random bytes,
// a [SEP] or an arbitrary id now and then.
static int make_row(int32_t *t) {
  int len = (int)(next_random() % MAX_LEN);
  uint8_t prev = (uint8_t)next_random();
  for (int i = 0; i < len; i++) {
    uint32_t r = next_random();
    if (i == 0) t[i] = 2;
    else if (r % 29 == 0) t[i] = 1;
    else if (r % 31 == 0) t[i] = (int32_t)(next_random() % 65541);
    else {
      uint8_t b = (uint8_t)(r >> 8);
      t[i] = 5 + (prev << 8 | b);
      prev = b;
    }
  }
  return len;
}

Test(spool, rows_come_back_exactly) {
  static int32_t want[N_ROWS][MAX_LEN], got[MAX_LEN];
  tl_spool_row h[N_ROWS];
  FILE *f = tmpfile();
  for (int r = 0; r < N_ROWS; r++) {
    int len = make_row(want[r]);
    h[r] = (tl_spool_row){.flow_id = next_random(), .file_index = r, .label = r % 3,
                          .length = len, .a_end = len / 2};
    cr_assert(tl_spool_write(f, "tmp", &h[r], want[r]) == TL_OK);
  }
  rewind(f);
  tl_spool_row back;
  for (int r = 0; r < N_ROWS; r++) {
    cr_assert(tl_spool_read(f, "tmp", &back, got, MAX_LEN) == 1, "row %d", r);
    cr_assert(memcmp(&back, &h[r], sizeof back) == 0, "row %d header", r);
    cr_assert(memcmp(got, want[r], (size_t)h[r].length * sizeof *got) == 0, "row %d", r);
  }
  cr_assert(tl_spool_read(f, "tmp", &back, got, MAX_LEN) == 0, "end of file");
  fclose(f);
}

Test(spool, chained_bigrams_take_about_a_byte) {
  static int32_t t[MAX_LEN];
  t[0] = 2;
  for (int i = 1; i < 600; i++) t[i] = 5 + ((i - 1) % 256 << 8 | i % 256);
  tl_spool_row h = {.length = 600, .a_end = 600};
  FILE *f = tmpfile();
  cr_assert(tl_spool_write(f, "tmp", &h, t) == TL_OK);
  long size = ftell(f);
  fclose(f);
  // Header, bitmaps (600 bits), two literals ([CLS], the first bigram), and
  // one byte each for the rest; int32 tokens would take 2,400 bytes.
  cr_assert(size < (long)sizeof h + 75 + 6 + 600, "%ld bytes", size);
}

Test(spool, cut_or_damaged_records_are_errors) {
  static int32_t t[MAX_LEN];
  int len = 0;
  while (len < 300) len = make_row(t);
  tl_spool_row h = {.length = len, .a_end = len};
  FILE *f = tmpfile();
  cr_assert(tl_spool_write(f, "rows.spool", &h, t) == TL_OK);
  cr_assert(fflush(f) == 0);
  long size = ftell(f);
  cr_assert(ftruncate(fileno(f), size - 3) == 0);
  rewind(f);
  tl_spool_row back;
  cr_assert(tl_spool_read(f, "rows.spool", &back, t, MAX_LEN) == -1);
  cr_assert(strstr(tl_last_error(), "rows.spool"), "%s", tl_last_error());
  // A length past the reader's row size is corruption too.
  rewind(f);
  cr_assert(tl_spool_read(f, "rows.spool", &back, t, len - 1) == -1);
  fclose(f);
}
