// test_capture.c: the capture reader against references it does not share code
// with: capinfos' packet counts in MANIFEST.tsv, tshark's timestamps, zlib, and
// libpcap itself (for the own pcapng reader).
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include "data/capture.h"

#define PCAPS TL_SHARED_DIR "/data/pcaps"

static long count_packets(const char *path, int *rc_out) {
  tl_capture *c = tl_capture_open(path);
  if (!c) {
    *rc_out = -2;
    return -1;
  }
  tl_capture_packet p;
  long n = 0;
  int rc;
  while ((rc = tl_capture_next(c, &p)) == 1) n++;
  *rc_out = rc;
  tl_capture_close(c);
  return n;
}

// Splits a TSV line in place, keeping empty fields; returns the field count.
static int tsv_fields(char *line, char **f, int max) {
  int n = 0;
  line[strcspn(line, "\r\n")] = 0;
  for (char *p = line; n < max;) {
    f[n++] = p;
    char *t = strchr(p, '\t');
    if (!t) break;
    *t = 0;
    p = t + 1;
  }
  return n;
}

// Every file of the shared set: the packet count capinfos wrote in MANIFEST.tsv
// ("N", "N+error" for files that end badly, "error" where capinfos gave up).
Test(capture, manifest_packet_counts) {
  FILE *f = fopen(PCAPS "/MANIFEST.tsv", "r");
  cr_assert_not_null(f);
  char line[8192];
  int files = 0;
  fgets(line, sizeof line, f); // header
  while (fgets(line, sizeof line, f)) {
    char *fl[16];
    if (tsv_fields(line, fl, 16) < 7) continue;
    const char *rel = fl[0], *pk = fl[6]; // path ... packets
    char path[2048];
    snprintf(path, sizeof path, PCAPS "/%s", rel);
    int rc;
    long n = count_packets(path, &rc);
    files++;
    if (!strcmp(pk, "error")) { // capinfos could not read it: we may, or refuse
      cr_expect(rc == 0 || rc == -2, "%s: rc %d", rel, rc);
      continue;
    }
    long want = atol(pk);
    if (strstr(pk, "+error")) {
      cr_expect_eq(rc, -1, "%s: expected a read error after %ld packets, rc %d", rel, want, rc);
      cr_expect_eq(n, want, "%s: %ld packets, capinfos %ld", rel, n, want);
    } else if (want == 0) {
      cr_expect(rc == 0 || rc == -2, "%s: empty file gives rc %d", rel, rc);
    } else {
      cr_expect_eq(rc, 0, "%s: %s", rel, tl_last_error());
      cr_expect_eq(n, want, "%s: %ld packets, capinfos %ld", rel, n, want);
    }
  }
  fclose(f);
  cr_expect_gt(files, 700);
}

Test(capture, format_by_magic_not_name) {
  tl_capture *c = tl_capture_open(PCAPS "/_edge/ndpi__dns.pcap");
  cr_assert_not_null(c);
  cr_expect_str_eq(tl_capture_format(c), "pcapng");
  tl_capture_close(c);
  c = tl_capture_open(PCAPS "/_edge/ndpi__bets.pcapng");
  cr_assert_not_null(c);
  cr_expect_str_eq(tl_capture_format(c), "pcap");
  tl_capture_close(c);
}

Test(capture, refusals_name_the_file_and_reason) {
  struct { const char *path, *want; } cases[] = {
      {PCAPS "/_edge/derived__zero_length.pcap", "empty"},
      {PCAPS "/MANIFEST.tsv", "not a pcap or pcapng"},
      {PCAPS "/_edge", "a folder"},
      {PCAPS "/no/such/file.pcap", "cannot open"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    cr_expect_null(tl_capture_open(cases[i].path), "%s opened", cases[i].path);
    cr_expect(strstr(tl_last_error(), cases[i].want) != NULL, "%s", tl_last_error());
    cr_expect(strstr(tl_last_error(), cases[i].path) != NULL, "%s", tl_last_error());
  }
}

// Bad records stop the file with the packet number; earlier packets stay good.
Test(capture, bad_records_stop_with_packet_number) {
  struct { const char *name; long good; const char *num; } cases[] = {
      {"derived__corrupt_reclen__ndpi_google_ssl.pcap", 2, "packet 3"},
      {"derived__truncated_midpacket__ndpi_tls_long_cert.pcap", 107, "packet 108"},
      {"derived__truncated_midblock__ndpi_quic-33.pcapng", 1, "packet 2"},
      {"ndpi__fuzz-2021-10-13.pcap", 1, "packet 2"},
      {"scapy__bad_rsn_parsing_overrides_ssid.pcap", 1, "packet 2"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    char path[1024];
    snprintf(path, sizeof path, PCAPS "/_edge/%s", cases[i].name);
    int rc;
    long n = count_packets(path, &rc);
    cr_expect_eq(n, cases[i].good, "%s: %ld", cases[i].name, n);
    cr_expect_eq(rc, -1);
    cr_expect(strstr(tl_last_error(), cases[i].num) && strstr(tl_last_error(), cases[i].name),
              "%s", tl_last_error());
  }
}

// Reads the idx-th (1-based) packet of a file.
static int nth(const char *path, int idx, tl_capture_packet *out, uint8_t *copy, size_t cap) {
  tl_capture *c = tl_capture_open(path);
  if (!c) return 0;
  tl_capture_packet p;
  int found = 0;
  while (tl_capture_next(c, &p) == 1) {
    if ((int)p.number == idx) {
      *out = p;
      if (copy) memcpy(copy, p.data, p.caplen < cap ? p.caplen : cap);
      found = 1;
      break;
    }
  }
  tl_capture_close(c);
  return found;
}

// Timestamps and link types as tshark shows them (frame.time_epoch,
// frame.interface_id, frame.len).
Test(capture, timestamps_and_interfaces_match_tshark) {
  struct { const char *name; int idx; int64_t ts; int lt; uint32_t len; } cases[] = {
      // pcapng, interface 1 Ethernet in microseconds, interface 0 SLL in nanoseconds
      {"derived__multi_if_sll-nsec_plus_ether-usec.pcapng", 1, 1071580904891921000, 1, 74},
      {"derived__multi_if_sll-nsec_plus_ether-usec.pcapng", 8, 1071580905184698000, 1, 349},
      {"derived__multi_if_sll-nsec_plus_ether-usec.pcapng", 13, 1418145369924505488, 113, 76},
      {"derived__multi_if_sll-nsec_plus_ether-usec.pcapng", 15, 1418145370052115157, 113, 68},
      // big-endian pcapng with obsolete packet blocks
      // (LINKTYPE_RAW 101 in the file; libpcap reports it as DLT_RAW, 12)
      {"scapy__pfcp.pcap", 1, 1586191795010193000, 12, 63},
      {"scapy__pfcp.pcap", 2, 1586191795012852000, 12, 142},
      // nanosecond pcap
      {"tcpdump__tcp-handshake-nano.pcap", 3, 1418145370052115157, 113, 0},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    char path[1024];
    snprintf(path, sizeof path, PCAPS "/_edge/%s", cases[i].name);
    tl_capture_packet p;
    cr_assert(nth(path, cases[i].idx, &p, NULL, 0), "%s #%d missing", cases[i].name,
              cases[i].idx);
    cr_expect_eq(p.ts_ns, cases[i].ts, "%s #%d: ts %lld", cases[i].name, cases[i].idx,
                 (long long)p.ts_ns);
    cr_expect_eq(p.linktype, cases[i].lt, "%s #%d: lt %d", cases[i].name, cases[i].idx,
                 p.linktype);
    if (cases[i].len) cr_expect_eq(p.wirelen, cases[i].len);
  }
}

Test(capture, invalid_timestamp_fractions_are_flagged) {
  const char *files[] = {PCAPS "/_edge/tcpdump__timestamp_invalid_nano.pcap",
                         PCAPS "/_edge/tcpdump__timestamp_invalid_micro.pcap"};
  for (int i = 0; i < 2; i++) {
    tl_capture_packet p;
    cr_assert(nth(files[i], 1, &p, NULL, 0));
    cr_expect_eq(p.bad_timestamp, 0, "%s #1", files[i]);
    cr_assert(nth(files[i], 2, &p, NULL, 0));
    cr_expect_eq(p.bad_timestamp, 1, "%s #2 (fraction 1e9 / 1e6)", files[i]);
  }
}

// gzip: the same packets as the file zlib decompresses to a plain temp file.
Test(capture, gzip_equals_decompressed) {
  const char *gz = PCAPS "/_edge/zeek__tls-fragmented-handshake.pcap.gz";
  char tmp[] = "/tmp/tl_test_gz_XXXXXX";
  int fd = mkstemp(tmp);
  cr_assert(fd >= 0);
  gzFile g = gzopen(gz, "rb");
  cr_assert_not_null(g);
  char buf[65536];
  for (int n; (n = gzread(g, buf, sizeof buf)) > 0;) cr_assert_eq(write(fd, buf, (size_t)n), n);
  gzclose(g);
  close(fd);

  tl_capture *a = tl_capture_open(gz), *b = tl_capture_open(tmp);
  cr_assert(a && b);
  cr_expect_str_eq(tl_capture_format(a), "pcap gz");
  static uint8_t keep[262144];
  tl_capture_packet pa, pb;
  long n = 0;
  for (;;) {
    int ra = tl_capture_next(a, &pa);
    if (ra == 1) memcpy(keep, pa.data, pa.caplen);
    int rb = tl_capture_next(b, &pb);
    cr_assert_eq(ra, rb);
    if (ra != 1) break;
    cr_assert_eq(pa.caplen, pb.caplen);
    cr_assert_eq(pa.ts_ns, pb.ts_ns);
    cr_assert_eq(memcmp(keep, pb.data, pb.caplen), 0, "packet %ld differs", n + 1);
    n++;
  }
  cr_expect_eq(n, 416); // MANIFEST.tsv
  tl_capture_close(a);
  tl_capture_close(b);
  unlink(tmp);
}

// The own pcapng reader gives what libpcap gives, on every pcapng libpcap reads.
Test(capture, own_pcapng_reader_equals_libpcap) {
  FILE *f = fopen(PCAPS "/MANIFEST.tsv", "r");
  cr_assert_not_null(f);
  char line[8192];
  int compared = 0;
  static uint8_t keep[262144];
  while (fgets(line, sizeof line, f)) {
    char rel[1024];
    if (sscanf(line, "%1023[^\t]", rel) != 1 || !strstr(line, "\tpcapng")) continue;
    char path[2048];
    snprintf(path, sizeof path, PCAPS "/%s", rel);
    tl_capture *a = tl_capture_open(path), *b = tl_capture_open_own(path);
    if (!a || !b) {
      tl_capture_close(a);
      tl_capture_close(b);
      continue;
    }
    tl_capture_packet pa, pb;
    for (;;) {
      int ra = tl_capture_next(a, &pa);
      if (ra == 1) memcpy(keep, pa.data, pa.caplen);
      int rb = tl_capture_next(b, &pb);
      cr_assert_eq(ra, rb, "%s: libpcap %d, own %d at packet %llu", rel, ra, rb,
                   (unsigned long long)pb.number);
      if (ra != 1) break;
      cr_assert(pa.caplen == pb.caplen && pa.wirelen == pb.wirelen && pa.ts_ns == pb.ts_ns &&
                    pa.linktype == pb.linktype && !memcmp(keep, pb.data, pb.caplen),
                "%s: packet %llu differs", rel, (unsigned long long)pa.number);
    }
    tl_capture_close(a);
    tl_capture_close(b);
    compared++;
  }
  fclose(f);
  cr_expect_gt(compared, 100);
}

static void put32(uint8_t *p, uint32_t v) { memcpy(p, &v, 4); }

// A pcapng whose packet block claims a length that is not a multiple of 4, and one
// that claims 2 GiB: an error naming the packet, no giant allocation.
Test(capture, own_reader_rejects_bad_block_lengths) {
  uint32_t lens[] = {0x2d, 0x7ffffff0};
  for (int k = 0; k < 2; k++) {
    uint8_t f[28 + 20 + 16] = {0};
    put32(f, 0x0a0d0d0a), put32(f + 4, 28), put32(f + 8, 0x1a2b3c4d);
    f[12] = 1; // version 1.0
    memset(f + 16, 0xff, 8); // section length unknown
    put32(f + 24, 28);
    put32(f + 28, 1), put32(f + 32, 20), f[36] = 1; // IDB, Ethernet
    put32(f + 44, 20);
    put32(f + 48, 6), put32(f + 52, lens[k]);       // EPB with a broken length
    char tmp[] = "/tmp/tl_test_ng_XXXXXX";
    int fd = mkstemp(tmp);
    cr_assert_eq(write(fd, f, sizeof f), (ssize_t)sizeof f);
    close(fd);
    tl_capture *c = tl_capture_open_own(tmp);
    cr_assert_not_null(c, "%s", tl_last_error());
    tl_capture_packet p;
    cr_expect_eq(tl_capture_next(c, &p), -1);
    cr_expect(strstr(tl_last_error(), "packet 1") && strstr(tl_last_error(), "block length"),
              "%s", tl_last_error());
    tl_capture_close(c);
    unlink(tmp);
  }
}
