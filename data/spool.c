// spool.c: raw binary records in host byte order; they never leave this run.
#include "data/spool.h"

#include <errno.h>
#include <string.h>

tl_status tl_spool_write(FILE *f, const char *path, const tl_spool_row *h, const int32_t *tokens) {
  if (fwrite(h, sizeof *h, 1, f) != 1 ||
      fwrite(tokens, sizeof *tokens, (size_t)h->length, f) != (size_t)h->length) {
    tl_set_error("%s: cannot write temporary rows: %s", path, strerror(errno));
    return TL_ERR;
  }
  return TL_OK;
}

int tl_spool_read(FILE *f, const char *path, tl_spool_row *h, int32_t *tokens, int max_len) {
  size_t got = fread(h, sizeof *h, 1, f);
  if (got == 0 && feof(f)) return 0;
  if (got != 1 || h->length < 0 || h->length > max_len ||
      fread(tokens, sizeof *tokens, (size_t)h->length, f) != (size_t)h->length) {
    tl_set_error("%s: temporary row file is truncated or corrupt", path);
    return -1;
  }
  return 1;
}
