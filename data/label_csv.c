// label_csv.c: see label_csv.h.
#include "data/label_csv.h"

#include <csv.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

enum { MAX_CELLS = 64 };

typedef struct {
  const char *path;
  char dir[4096]; // the CSV's folder: relative paths start there
  tl_label_row_fn row;
  void *ctx;
  char *cells[MAX_CELLS];
  int n_cells;
  int line;         // the line being fed
  int row_line;     // the line the current row starts on
  int rows;         // rows seen, the header included
  int at_row_start; // no row begun: a '#' line here is a comment
  int path_col, label_col;
  tl_status st;
} tl_label_csv;

static int find_col(const tl_label_csv *r, const char *a, const char *b) {
  for (int i = 0; i < r->n_cells; i++)
    if (!strcasecmp(r->cells[i], a) || !strcasecmp(r->cells[i], b)) return i;
  return -1;
}

static void on_cell(void *s, size_t len, void *ctx) {
  tl_label_csv *r = ctx;
  if (r->n_cells == MAX_CELLS) return; // columns past the 64th are not ours
  char *cell = tl_xmalloc(len + 1);
  memcpy(cell, s, len);
  cell[len] = 0;
  r->cells[r->n_cells++] = cell;
}

static int is_file(const char *path) {
  struct stat st;
  return stat(path, &st) == 0;
}

// The capture path a cell names, relative ones from the CSV's folder. Caller frees.
static char *resolve(const tl_label_csv *r, const char *cell) {
  return tl_xstrdup(cell[0] == '/' ? cell : tl_fmt("%s/%s", r->dir, cell));
}

// The first row: a header when it names a label column; otherwise data, unless
// its "path" is no file at all, which is far likelier a header with other names.
static tl_status first_row(tl_label_csv *r, int *is_header) {
  *is_header = find_col(r, "label", "class") >= 0;
  if (*is_header) {
    r->path_col = find_col(r, "path", "file");
    r->label_col = find_col(r, "label", "class");
    if (r->path_col < 0) {
      tl_set_error("%s:%d: the header has a label column but no path or file column", r->path,
                   r->line);
      return TL_ERR;
    }
    return TL_OK;
  }
  if (r->n_cells < 2) return TL_OK; // on_row names what is missing
  char *p = resolve(r, r->cells[0]);
  tl_status st = TL_OK;
  if (!is_file(p)) {
    tl_set_error("%s:%d: '%s' is no file, and the row is no header (expected columns named "
                 "path or file, and label or class)", r->path, r->line, r->cells[0]);
    st = TL_ERR;
  }
  free(p);
  return st;
}

static void on_row(int term, void *ctx) {
  tl_label_csv *r = ctx;
  r->at_row_start = 1;
  int header = 0;
  if (r->st == TL_OK && r->rows++ == 0) r->st = first_row(r, &header);
  if (r->st == TL_OK && !header) {
    int pc = r->path_col, lc = r->label_col;
    if (r->n_cells <= pc || r->n_cells <= lc || !r->cells[pc][0] || !r->cells[lc][0]) {
      tl_set_error("%s:%d: expected a path and a label", r->path, r->line);
      r->st = TL_ERR;
    } else if (strpbrk(r->cells[pc], "\r\n") || strpbrk(r->cells[lc], "\r\n")) {
      // Legal CSV, but no path or class name holds a line break: far likelier a
      // quote left open that swallowed the rows after it.
      tl_set_error("%s:%d: the row starting here runs to line %d: a quoted cell holds a line "
                   "break (is a quote not closed?)", r->path, r->row_line, r->line);
      r->st = TL_ERR;
    } else {
      char *path = resolve(r, r->cells[pc]);
      r->st = r->row(r->ctx, path, r->cells[lc], r->line);
      free(path);
    }
  }
  for (int i = 0; i < r->n_cells; i++) free(r->cells[i]);
  r->n_cells = 0;
}

static int is_blank(unsigned char c) { return c == ' '; }

tl_status tl_label_csv_read(const char *csv_path, tl_label_row_fn row, void *ctx) {
  FILE *f = fopen(csv_path, "r");
  if (!f) {
    tl_set_error("%s: cannot open the label file", csv_path);
    return TL_ERR;
  }
  tl_label_csv r = {.path = csv_path, .row = row, .ctx = ctx, .at_row_start = 1,
                    .path_col = 0, .label_col = 1, .st = TL_OK};
  snprintf(r.dir, sizeof r.dir, "%s", csv_path);
  char *slash = strrchr(r.dir, '/');
  if (slash) *slash = 0;
  else snprintf(r.dir, sizeof r.dir, ".");
  struct csv_parser p;
  csv_init(&p, CSV_APPEND_NULL);
  csv_set_space_func(&p, is_blank); // a tab is a separator in TSV, never padding
  char buf[8192];
  int line_start = 1, skip_line = 0, delim_chosen = 0;
  while (r.st == TL_OK && fgets(buf, sizeof buf, f)) {
    char *s = buf;
    if (line_start) {
      r.line++;
      if (r.line == 1 && !strncmp(s, "\xef\xbb\xbf", 3)) s += 3; // a UTF-8 byte order mark
      // Between rows, a comment or a blank line; inside a quoted cell, data.
      const char *first = s + strspn(s, " ");
      skip_line = r.at_row_start && (*first == '#' || !first[strspn(first, "\r\n")]);
    }
    line_start = strchr(s, '\n') != NULL;
    if (skip_line) continue;
    if (!delim_chosen++) csv_set_delim(&p, strchr(s, '\t') ? '\t' : ',');
    size_t n = strlen(s);
    if (r.at_row_start) r.row_line = r.line;
    r.at_row_start = 0;
    if (csv_parse(&p, s, n, on_cell, on_row, &r) != n) {
      tl_set_error("%s:%d: %s", csv_path, r.line, csv_strerror(csv_error(&p)));
      r.st = TL_ERR;
    }
  }
  // At the end an open quote is left in the parser's state; strict mode names it.
  csv_set_opts(&p, CSV_APPEND_NULL | CSV_STRICT | CSV_STRICT_FINI);
  if (r.st == TL_OK && csv_fini(&p, on_cell, on_row, &r) != 0) {
    tl_set_error("%s:%d: a quote opened in the row starting here is never closed", csv_path,
                 r.row_line);
    r.st = TL_ERR;
  }
  for (int i = 0; i < r.n_cells; i++) free(r.cells[i]);
  csv_free(&p);
  fclose(f);
  return r.st;
}
