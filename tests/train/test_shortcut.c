// test_shortcut.c: the header-only baseline. Header fields are checked against
// packets written byte by byte here; the classifier against synthetic sets whose
// labels hang on one header field (it must find it) or on payload only (it
// must stay near chance).
#include <criterion/criterion.h>
#include <string.h>

#include "data/tokenizer.h"
#include "train/shortcut.h"

// Feature slots as shortcut.h lists them (the test's own copy of the contract).
enum { VER, HLEN, TOTAL, TOS, ID, FLAGS, TTL, PROTO, L4HLEN, TCPFLAGS, WIN, SPORT, DPORT,
       UDPLEN, PAYLOAD, TCPOPT };

// An IPv4/TCP packet: 20-byte IP header, 24-byte TCP header (MSS option), payload.
static const uint8_t k_ipv4_tcp[] = {
    0x45, 0x10, 0x00, 0x3c, 0x12, 0x34, 0x40, 0x00, 0x40, 0x06, 0xab, 0xcd, // ..proto, csum
    0, 0, 0, 0, 0, 0, 0, 0,                                                // addresses
    0x01, 0xbb, 0xc3, 0x50, 0, 0, 0, 1, 0, 0, 0, 0,                        // ports, seq, ack
    0x60, 0x12, 0x72, 0x10, 0xfe, 0xdc, 0x00, 0x00,                        // off, flags, win
    0x02, 0x04, 0x05, 0xb4,                                                // MSS 1460
    'h',  'e',  'l',  'l',  'o'};

Test(shortcut, ipv4_tcp_fields) {
  float f[TL_SC_PACKET_FEATURES];
  tl_shortcut_packet_features(k_ipv4_tcp, sizeof k_ipv4_tcp, f);
  cr_assert_eq(f[VER], 4);
  cr_assert_eq(f[HLEN], 20);
  cr_assert_eq(f[TOTAL], 60);
  cr_assert_eq(f[TOS], 0x10);
  cr_assert_eq(f[ID], 0x1234);
  cr_assert_eq(f[FLAGS], 2, "DF set");
  cr_assert_eq(f[TTL], 64);
  cr_assert_eq(f[PROTO], 6);
  cr_assert_eq(f[SPORT], 443);
  cr_assert_eq(f[DPORT], 50000);
  cr_assert_eq(f[L4HLEN], 24);
  cr_assert_eq(f[TCPFLAGS], 0x12, "SYN ACK");
  cr_assert_eq(f[WIN], 0x7210);
  cr_assert_eq(f[UDPLEN], -1);
  cr_assert_eq(f[PAYLOAD], 60 - 20 - 24);
  cr_assert_eq(f[TCPOPT], 2);

  // Cut after the TTL: later fields read -1, earlier ones stay.
  tl_shortcut_packet_features(k_ipv4_tcp, 9, f);
  cr_assert_eq(f[TTL], 64);
  cr_assert_eq(f[PROTO], -1);
  cr_assert_eq(f[WIN], -1);
  cr_assert_eq(f[PAYLOAD], -1);
}

Test(shortcut, ipv6_extension_header_udp) {
  uint8_t p[40 + 8 + 8 + 4] = {0};
  p[0] = 0x6a, p[1] = 0xb1, p[2] = 0x23, p[3] = 0x45; // class 0xab, label 0x12345
  p[4] = 0, p[5] = 20;                                // payload length 20
  p[6] = 0;                                           // next: hop-by-hop
  p[7] = 33;                                          // hop limit
  p[40] = 17, p[41] = 0;                              // next: UDP, 8 bytes
  p[48] = 0x00, p[49] = 0x35, p[50] = 0x13, p[51] = 0x88, p[52] = 0, p[53] = 12;
  float f[TL_SC_PACKET_FEATURES];
  tl_shortcut_packet_features(p, sizeof p, f);
  cr_assert_eq(f[VER], 6);
  cr_assert_eq(f[TOS], 0xab);
  cr_assert_eq(f[ID], 0x12345);
  cr_assert_eq(f[TOTAL], 60);
  cr_assert_eq(f[TTL], 33);
  cr_assert_eq(f[HLEN], 48);
  cr_assert_eq(f[PROTO], 17);
  cr_assert_eq(f[SPORT], 53);
  cr_assert_eq(f[DPORT], 5000);
  cr_assert_eq(f[UDPLEN], 12);
  cr_assert_eq(f[L4HLEN], 8);
  cr_assert_eq(f[PAYLOAD], 60 - 48 - 8);
  cr_assert_eq(f[TCPFLAGS], -1);
  cr_assert_eq(f[FLAGS], -1);
}

// Writes [CLS] + each packet's bigrams into row[len] (padding after); returns
// the tokens used.
static int make_row(const uint8_t *const *pkts, const size_t *lens, int n, int32_t *row,
                    int len) {
  int w = 0;
  row[w++] = TL_TOK_CLS;
  for (int k = 0; k < n; k++)
    w += (int)tl_tokenize_packet(NULL, pkts[k], lens[k], row + w, (size_t)(len - w));
  for (int i = w; i < len; i++) row[i] = TL_TOK_PAD;
  return w;
}

Test(shortcut, row_bytes_split_packets) {
  uint8_t a[30], b[21], c[40];
  for (int i = 0; i < 30; i++) a[i] = (uint8_t)(i * 7 + 1);
  for (int i = 0; i < 21; i++) b[i] = (uint8_t)(200 - i);
  for (int i = 0; i < 40; i++) c[i] = (uint8_t)(i * 3);
  a[29] = 0x11, b[0] = 0x45, b[20] = 0x22, c[0] = 0x46; // no overlap across packets
  const uint8_t *pk[] = {a, b, c};
  size_t ln[] = {30, 21, 40};
  int32_t row[128];
  make_row(pk, ln, 3, row, 128);

  tl_shortcut_detok *d = tl_shortcut_detok_new(NULL, 0);
  uint8_t out[256];
  size_t st[6];
  int np = tl_shortcut_row_bytes(d, row, 128, out, sizeof out, st, 5);
  cr_assert_eq(np, 3);
  cr_assert_eq(st[0], 0);
  cr_assert_eq(st[1], 30);
  cr_assert_eq(st[2], 51);
  cr_assert_eq(st[3], 91);
  cr_assert_eq(memcmp(out, a, 30), 0);
  cr_assert_eq(memcmp(out + 30, b, 21), 0);
  cr_assert_eq(memcmp(out + 51, c, 40), 0);
  tl_shortcut_detok_free(d);

  // When packet a happens to end with b's first byte, only a byte cap splits them.
  a[29] = 0x45;
  make_row(pk, ln, 3, row, 128);
  d = tl_shortcut_detok_new(NULL, 0);
  cr_assert_eq(tl_shortcut_row_bytes(d, row, 128, out, sizeof out, st, 5), 2);
  tl_shortcut_detok_free(d);
  d = tl_shortcut_detok_new(NULL, 30); // c (40 bytes) is then cut in two as well
  cr_assert_eq(tl_shortcut_row_bytes(d, row, 128, out, sizeof out, st, 5), 4);
  cr_assert_eq(st[1], 30);
  cr_assert_eq(st[2], 51);
  cr_assert_eq(st[3], 81);
  tl_shortcut_detok_free(d);
}

// A published-style vocabulary where one bigram is missing: its [UNK] takes its
// bytes from the neighbours.
Test(shortcut, unknown_bigram_takes_neighbour_bytes) {
  tl_tokenizer *tok = tl_tokenizer_native();
  tok->bigram_id[0x0203] = TL_TOK_UNK;
  const uint8_t p[] = {0x01, 0x02, 0x03, 0x04, 0x05};
  int32_t row[8];
  row[0] = TL_TOK_CLS;
  size_t nt = tl_tokenize_packet(tok, p, 5, row + 1, 7);
  for (size_t i = 1 + nt; i < 8; i++) row[i] = TL_TOK_PAD;
  cr_assert_eq(row[2], TL_TOK_UNK);
  tl_shortcut_detok *d = tl_shortcut_detok_new(tok, 0);
  uint8_t out[16];
  size_t st[3];
  cr_assert_eq(tl_shortcut_row_bytes(d, row, 8, out, sizeof out, st, 2), 1);
  cr_assert_eq(st[1], 5);
  cr_assert_eq(memcmp(out, p, 5), 0);
  tl_shortcut_detok_free(d);
  tl_tokenizer_free(tok);
}

// --- synthetic sets -------------------------------------------------------------

static uint64_t g_rng = 0x9e3779b97f4a7c15ull;
static uint32_t next_u32(void) {
  g_rng ^= g_rng << 13, g_rng ^= g_rng >> 7, g_rng ^= g_rng << 17;
  return (uint32_t)(g_rng >> 16);
}

// One IPv4/TCP packet of 100 bytes: random header values, then the payload.
// ttl < 0 draws a random TTL; payload_class >= 0 stamps a class pattern into the
// payload (bytes 40 on), else the payload is random.
static void synth_packet(uint8_t *p, int ttl, int payload_class) {
  for (int i = 0; i < 100; i++) p[i] = (uint8_t)next_u32();
  p[0] = 0x45, p[1] = 0;
  int total = 60 + (int)(next_u32() % 1400);
  p[2] = (uint8_t)(total >> 8), p[3] = (uint8_t)total;
  p[6] = 0x40, p[7] = 0;
  p[8] = (uint8_t)(ttl >= 0 ? ttl : 1 + (int)(next_u32() % 254));
  p[9] = 6;
  memset(p + 12, 0, 8);  // addresses zeroed as the anonymous policy does
  memset(p + 20, 0, 4);  // ports too
  p[32] = 0x50;          // 20-byte TCP header
  p[33] = (uint8_t)(next_u32() % 2 ? 0x18 : 0x10);
  if (payload_class >= 0)
    for (int i = 40; i < 100; i++) p[i] = (uint8_t)(payload_class * 50 + (i % 5));
}

typedef struct {
  int32_t *ids, *labels;
  int64_t n;
} synth_set;

// n rows of 128 tokens, K classes; header_label: the TTL carries the class,
// else the payload does and every header field is drawn the same way for all.
static synth_set synth(int64_t n, int K, int header_label) {
  synth_set s = {malloc(n * 128 * sizeof(int32_t)), malloc(n * sizeof(int32_t)), n};
  uint8_t p[100];
  for (int64_t i = 0; i < n; i++) {
    int c = (int)(next_u32() % K);
    s.labels[i] = c;
    if (header_label) synth_packet(p, 30 + 40 * c + (int)(next_u32() % 10), -1);
    else synth_packet(p, -1, c);
    const uint8_t *pk[] = {p};
    size_t ln[] = {100};
    make_row(pk, ln, 1, s.ids + i * 128, 128);
  }
  return s;
}

static tl_shortcut_result audit(int K, int header_label) {
  synth_set tr = synth(600, K, header_label), te = synth(800, K, header_label);
  tl_shortcut_rows trr = {tr.ids, tr.labels, tr.n, 128}, ter = {te.ids, te.labels, te.n, 128};
  tl_shortcut_detok *d = tl_shortcut_detok_new(NULL, 0);
  tl_shortcut_result r;
  cr_assert_eq(tl_shortcut_audit(d, &trr, &ter, K, &r), TL_OK, "%s", tl_last_error());
  tl_shortcut_detok_free(d);
  free(tr.ids), free(tr.labels), free(te.ids), free(te.labels);
  return r;
}

Test(shortcut, finds_a_header_shortcut) {
  tl_shortcut_result r = audit(4, 1);
  cr_assert_gt(r.metrics.macro_f1, 0.95, "macro F1 %.3f", r.metrics.macro_f1);
  cr_assert_str_eq(tl_shortcut_feature_name(r.root_feature), "p1.ttl");
  tl_shortcut_result_free(&r);
}

Test(shortcut, blind_to_payload) {
  // Chance is 1/4; allow for the noise of 800 test rows and an overfitted tree.
  tl_shortcut_result r = audit(4, 0);
  cr_assert_lt(r.metrics.macro_f1, 0.25 + 0.1, "macro F1 %.3f", r.metrics.macro_f1);
  tl_shortcut_result_free(&r);
}

Test(shortcut, tree_separates_and_rejects_bad_labels) {
  // Class = (x0 > 5) + 2 (x1 > 0.5): needs two levels of splits.
  float X[64 * 2];
  int32_t y[64], pred[64];
  for (int i = 0; i < 64; i++) {
    X[2 * i] = (float)(i % 11), X[2 * i + 1] = (float)((i / 3) % 2);
    y[i] = (X[2 * i] > 5) + 2 * (X[2 * i + 1] > 0.5f);
  }
  tl_shortcut_options o;
  tl_shortcut_options_default(&o);
  o.min_leaf = 1;
  tl_shortcut_tree *t = tl_shortcut_fit(X, y, 64, 2, 4, &o);
  cr_assert(t);
  tl_shortcut_predict(t, X, 64, pred);
  for (int i = 0; i < 64; i++) cr_assert_eq(pred[i], y[i], "row %d", i);
  tl_shortcut_tree_free(t);
  y[5] = 4;
  cr_assert_null(tl_shortcut_fit(X, y, 64, 2, 4, &o));
  cr_assert(strstr(tl_last_error(), "row 5"));
}
