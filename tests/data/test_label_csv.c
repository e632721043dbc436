// test_label_csv.c: the (path, label) table of `tl-prep --labels`, as
// spreadsheets write it (data/label_csv.h).
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "data/label_csv.h"

typedef struct {
  char path[8][512], label[8][128];
  int line[8], n;
} rows;

static tl_status collect(void *ctx, const char *path, const char *label, int line) {
  rows *r = ctx;
  cr_assert_lt(r->n, 8);
  snprintf(r->path[r->n], sizeof r->path[0], "%s", path);
  snprintf(r->label[r->n], sizeof r->label[0], "%s", label);
  r->line[r->n++] = line;
  return TL_OK;
}

// Writes text as a CSV in this process's folder and reads it.
static tl_status read_csv(const char *text, rows *r) {
  static char dir[64], path[128];
  snprintf(dir, sizeof dir, "/tmp/tl_test_label_csv_%d", (int)getpid());
  mkdir(dir, 0755);
  snprintf(path, sizeof path, "%s/labels.csv", dir);
  FILE *f = fopen(path, "w");
  fputs(text, f);
  fclose(f);
  memset(r, 0, sizeof *r);
  tl_status st = tl_label_csv_read(path, collect, r);
  unlink(path);
  rmdir(dir);
  return st;
}

Test(label_csv, quoted_cells_hold_separators_and_quotes) {
  rows r;
  cr_assert_eq(read_csv("\xef\xbb\xbfpath,label\r\n"
                        "\"/a.pcap\",\"dns, udp\"\r\n"
                        "\n"
                        "# a comment between rows\n"
                        "  /b.pcap , \"say \"\"hi\"\"\"\n"
                        "/c.pcap,\"two # three\"\n"
                        "/d.pcap,last",
                        &r),
               TL_OK, "%s", tl_last_error());
  cr_assert_eq(r.n, 4);
  cr_expect_str_eq(r.path[0], "/a.pcap");
  cr_expect_str_eq(r.label[0], "dns, udp");
  cr_expect_str_eq(r.path[1], "/b.pcap");
  cr_expect_str_eq(r.label[1], "say \"hi\"");
  cr_expect_str_eq(r.label[2], "two # three");
  cr_expect_eq(r.line[2], 6);
  cr_expect_str_eq(r.label[3], "last", "no newline at the end");
}

Test(label_csv, tsv_header_in_any_order_and_case_relative_paths) {
  rows r;
  cr_assert_eq(read_csv("# exported by a script\nClass\tnote\tFile\nvpn\tx, y\tcaps/a.pcap\n", &r),
               TL_OK, "%s", tl_last_error());
  cr_assert_eq(r.n, 1);
  cr_expect_str_eq(r.label[0], "vpn");
  char want[128];
  snprintf(want, sizeof want, "/tmp/tl_test_label_csv_%d/caps/a.pcap", (int)getpid());
  cr_expect_str_eq(r.path[0], want, "relative to the CSV's folder");
}

Test(label_csv, errors_name_the_line) {
  rows r;
  cr_expect_eq(read_csv("path,label\n/a.pcap,dns\n/b.pcap\n", &r), TL_ERR);
  cr_expect(strstr(tl_last_error(), "labels.csv:3: expected a path and a label"), "%s",
            tl_last_error());
  cr_expect_eq(read_csv("path,label\n/a.pcap,\"dns\n/b.pcap,http\n", &r), TL_ERR);
  cr_expect(strstr(tl_last_error(), "labels.csv:2: a quote opened in the row starting here"),
            "%s", tl_last_error());
  // A quote left open swallows rows up to the next quote: refused, not one class.
  cr_expect_eq(read_csv("path,label\n/a.pcap,\"ntp\n/b.pcap,snmp\n/c.pcap,\"ntp\"\n", &r),
               TL_ERR);
  cr_expect(strstr(tl_last_error(), "labels.csv:2: the row starting here runs to line 4"),
            "%s", tl_last_error());
  cr_expect_eq(r.n, 0);
  cr_expect_eq(read_csv("filename,category\n/a.pcap,dns\n", &r), TL_ERR);
  cr_expect(strstr(tl_last_error(), "labels.csv:1: 'filename' is no file, and the row is no "
                                    "header"), "%s", tl_last_error());
  cr_expect_eq(read_csv("label,comment\n/a.pcap,dns\n", &r), TL_ERR);
  cr_expect(strstr(tl_last_error(), "no path or file column"), "%s", tl_last_error());
  cr_expect_eq(read_csv("", &r), TL_OK, "an empty table is read; tl-prep says no inputs");
  cr_expect_eq(r.n, 0);
}
