// test_flow.c: flows and bursts. Hand-made packet sequences whose flows and
// bursts are counted by hand, and real captures against tshark's counts
// (tests/fixtures/tshark_counts.tsv, made by make_tshark_counts.py).
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "data/capture.h"
#include "data/flow.h"
#include "data/packet.h"

#define SEC 1000000000ll

// A TCP/UDP packet from host a:pa to host b:pb (IPv4 10.0.0.a -> 10.0.0.b).
static tl_packet_info pkt(int proto, int a, int pa, int b, int pb, int flags) {
  tl_packet_info in = {0};
  in.version = 4;
  in.addr_len = 4;
  in.proto = (uint8_t)proto;
  in.src[0] = 10, in.src[3] = (uint8_t)a;
  in.dst[0] = 10, in.dst[3] = (uint8_t)b;
  in.sport = (uint16_t)pa;
  in.dport = (uint16_t)pb;
  in.tcp_flags = (uint8_t)flags;
  return in;
}

// Records what the table reports.
typedef struct {
  int n_pkts, dirs[64];
  uint64_t ids[64];
  uint8_t first_byte[64];
  int n_bursts, burst_len[64];
  uint8_t burst_bytes[64][16];
  int n_flows, flow_len[64];
  uint64_t flow_ids[64];
} tl_rec;

static tl_status on_packet(void *ctx, uint64_t id, int dir, const uint8_t *b, size_t n) {
  tl_rec *r = ctx;
  if (r->n_pkts < 64) {
    r->dirs[r->n_pkts] = dir;
    r->ids[r->n_pkts] = id;
    r->first_byte[r->n_pkts] = n ? b[0] : 0;
  }
  r->n_pkts++;
  return TL_OK;
}

static tl_status on_burst(void *ctx, uint64_t id, const uint8_t *const *p, const size_t *l,
                          int n) {
  tl_rec *r = ctx;
  if (r->n_bursts < 64) {
    r->burst_len[r->n_bursts] = n;
    for (int i = 0; i < n && i < 16; i++) r->burst_bytes[r->n_bursts][i] = p[i][0];
  }
  r->n_bursts++;
  return TL_OK;
}

static tl_status on_flow(void *ctx, uint64_t id, const uint8_t *const *p, const size_t *l,
                         int n) {
  tl_rec *r = ctx;
  if (r->n_flows < 64) {
    r->flow_len[r->n_flows] = n;
    r->flow_ids[r->n_flows] = id;
  }
  r->n_flows++;
  return TL_OK;
}

static tl_flow_table *table(tl_flow_options *o, tl_rec *r) {
  memset(r, 0, sizeof *r);
  tl_flow_sink s = {.ctx = r, .on_packet = on_packet, .on_burst = on_burst,
                    .on_flow = on_flow};
  return tl_flow_table_new(o, &s, 100);
}

// Adds a packet whose one model byte is `tag` (to follow it through).
static void add(tl_flow_table *t, tl_packet_info in, int64_t ts, uint64_t num, uint8_t tag) {
  cr_assert_eq(tl_flow_table_add(t, &in, ts, num, &tag, 1), TL_OK);
}

static tl_flow_options opts(void) {
  tl_flow_options o;
  tl_flow_options_default(&o);
  return o;
}

Test(flow, directions_and_bursts) {
  tl_flow_options o = opts();
  tl_rec r;
  tl_flow_table *t = table(&o, &r);
  // a->b, a->b, b->a, a->b, a->b, a->b: bursts [1,2] [3] [4,5,6]
  int from_a[] = {1, 1, 0, 1, 1, 1};
  for (int i = 0; i < 6; i++) {
    tl_packet_info in = from_a[i] ? pkt(6, 1, 1234, 2, 80, 0x10) : pkt(6, 2, 80, 1, 1234, 0x10);
    add(t, in, i * SEC / 10, (uint64_t)i + 1, (uint8_t)(i + 1));
  }
  cr_assert_eq(tl_flow_table_flush(t), TL_OK);
  const tl_flow_stats *s = tl_flow_table_stats(t);
  cr_expect_eq(s->flows, 1);
  cr_expect_eq(s->bursts, 3);
  cr_expect_eq(r.n_pkts, 6);
  for (int i = 0; i < 6; i++) cr_expect_eq(r.dirs[i], !from_a[i]);
  cr_expect_eq(r.ids[0], 100); // the first id asked for
  cr_assert_eq(r.n_bursts, 3);
  cr_expect_eq(r.burst_len[0], 2);
  cr_expect_eq(r.burst_len[1], 1);
  cr_expect_eq(r.burst_len[2], 3);
  cr_expect_eq(r.burst_bytes[2][0], 4);
  cr_expect_eq(r.burst_bytes[2][2], 6);
  // flow sample: the first 5 packets, reported once it had them
  cr_assert_eq(r.n_flows, 1);
  cr_expect_eq(r.flow_len[0], 5);
  tl_flow_table_free(t);
}

Test(flow, burst_keeps_first_packets_only) {
  tl_flow_options o = opts();
  o.burst_packets = 3;
  tl_rec r;
  tl_flow_table *t = table(&o, &r);
  for (int i = 0; i < 10; i++) add(t, pkt(17, 1, 5, 2, 53, 0), i, (uint64_t)i + 1, (uint8_t)i);
  tl_flow_table_flush(t);
  cr_expect_eq(tl_flow_table_stats(t)->bursts, 1);
  cr_expect_eq(r.burst_len[0], 3);
  cr_expect_eq(r.flow_len[0], 5);
  tl_flow_table_free(t);
}

Test(flow, idle_timeout_splits_flows) {
  tl_flow_options o = opts();
  o.idle_timeout_s = 60;
  tl_rec r;
  tl_flow_table *t = table(&o, &r);
  int64_t ts[] = {0, 10 * SEC, 100 * SEC, 150 * SEC};
  for (int i = 0; i < 4; i++) add(t, pkt(17, 1, 5, 2, 53, 0), ts[i], (uint64_t)i + 1, 0);
  tl_flow_table_flush(t);
  const tl_flow_stats *s = tl_flow_table_stats(t);
  cr_expect_eq(s->flows, 2);
  cr_expect_eq(s->ended[TL_FLOW_END_IDLE], 1);
  cr_expect_eq(s->ended[TL_FLOW_END_EOF], 1);
  cr_expect_eq(r.ids[1], 100);
  cr_expect_eq(r.ids[2], 101);
  tl_flow_table_free(t);

  o.idle_timeout_s = 0; // never
  t = table(&o, &r);
  for (int i = 0; i < 4; i++) add(t, pkt(17, 1, 5, 2, 53, 0), ts[i], (uint64_t)i + 1, 0);
  tl_flow_table_flush(t);
  cr_expect_eq(tl_flow_table_stats(t)->flows, 1);
  tl_flow_table_free(t);
}

Test(flow, tcp_fin_rst_linger_and_port_reuse) {
  tl_flow_options o = opts();
  o.close_linger_s = 2;
  tl_rec r;
  tl_flow_table *t = table(&o, &r);
  int64_t ms = SEC / 1000;
  // handshake, FIN both ways, final ACK inside the linger: one flow
  add(t, pkt(6, 1, 999, 2, 80, 0x02), 0, 1, 0);
  add(t, pkt(6, 2, 80, 1, 999, 0x12), 1 * ms, 2, 0);
  add(t, pkt(6, 1, 999, 2, 80, 0x11), 2 * ms, 3, 0);
  add(t, pkt(6, 2, 80, 1, 999, 0x11), 3 * ms, 4, 0);
  add(t, pkt(6, 1, 999, 2, 80, 0x10), 4 * ms, 5, 0);
  // a new SYN on the closed 5-tuple: a second flow at once
  add(t, pkt(6, 1, 999, 2, 80, 0x02), 10 * ms, 6, 0);
  add(t, pkt(6, 2, 80, 1, 999, 0x04), 11 * ms, 7, 0); // RST closes it
  // a stray ACK after the linger: a third flow
  add(t, pkt(6, 1, 999, 2, 80, 0x10), 5 * SEC, 8, 0);
  tl_flow_table_flush(t);
  const tl_flow_stats *s = tl_flow_table_stats(t);
  cr_expect_eq(s->flows, 3);
  cr_expect_eq(s->ended[TL_FLOW_END_CLOSED], 2);
  cr_expect_eq(s->ended[TL_FLOW_END_EOF], 1);
  cr_expect_eq(r.ids[4], 100);
  cr_expect_eq(r.ids[5], 101);
  cr_expect_eq(r.ids[7], 102);
  tl_flow_table_free(t);
}

Test(flow, table_size_is_bounded) {
  tl_flow_options o = opts();
  o.max_flows = 3;
  tl_rec r;
  tl_flow_table *t = table(&o, &r);
  for (int i = 0; i < 20; i++) add(t, pkt(17, 1, 1000 + i, 2, 53, 0), i, (uint64_t)i + 1, 0);
  tl_flow_table_flush(t);
  const tl_flow_stats *s = tl_flow_table_stats(t);
  cr_expect_eq(s->flows, 20);
  cr_expect_eq(s->peak_flows, 3);
  cr_expect_eq(s->ended[TL_FLOW_END_EVICTED], 17);
  cr_expect_eq(r.n_flows, 20); // every flow still reported its sample
  tl_flow_table_free(t);
}

// Out-of-order input: flows and bursts follow timestamps, not file order.
Test(flow, reorder_window_restores_time_order) {
  tl_flow_options o = opts();
  tl_rec r;
  tl_flow_table *t = table(&o, &r);
  // time order: a b a b (4 bursts); file order: a a b b (would be 2)
  add(t, pkt(17, 1, 5, 2, 53, 0), 1, 1, 'x');
  add(t, pkt(17, 1, 5, 2, 53, 0), 3, 2, 'y');
  add(t, pkt(17, 2, 53, 1, 5, 0), 2, 3, 'z');
  add(t, pkt(17, 2, 53, 1, 5, 0), 4, 4, 'w');
  tl_flow_table_flush(t);
  const tl_flow_stats *s = tl_flow_table_stats(t);
  cr_expect_eq(s->bursts, 4);
  cr_expect_eq(s->reordered, 1);
  cr_expect_eq(s->late, 0);
  cr_expect_eq(r.first_byte[0], 'x');
  cr_expect_eq(r.first_byte[1], 'z');
  cr_expect_eq(r.first_byte[2], 'y');
  tl_flow_table_free(t);

  o.reorder_window = 0; // no window: file order, and the late packet is counted
  t = table(&o, &r);
  add(t, pkt(17, 1, 5, 2, 53, 0), 1, 1, 'x');
  add(t, pkt(17, 1, 5, 2, 53, 0), 3, 2, 'y');
  add(t, pkt(17, 2, 53, 1, 5, 0), 2, 3, 'z');
  add(t, pkt(17, 2, 53, 1, 5, 0), 4, 4, 'w');
  tl_flow_table_flush(t);
  cr_expect_eq(tl_flow_table_stats(t)->bursts, 2);
  cr_expect_eq(tl_flow_table_stats(t)->late, 1);
  tl_flow_table_free(t);
}

Test(flow, vlan_in_key_only_on_request) {
  for (int key_vlan = 0; key_vlan < 2; key_vlan++) {
    tl_flow_options o = opts();
    o.key_vlan = key_vlan;
    tl_rec r;
    tl_flow_table *t = table(&o, &r);
    tl_packet_info a = pkt(6, 1, 999, 2, 80, 0x10), b = a;
    a.vlan = 11;
    b.vlan = 12;
    add(t, a, 1, 1, 0);
    add(t, b, 2, 2, 0);
    tl_flow_table_flush(t);
    cr_expect_eq(tl_flow_table_stats(t)->flows, 1 + key_vlan);
    tl_flow_table_free(t);
  }
}

Test(flow, ids_continue_across_files) {
  tl_flow_options o = opts();
  tl_rec r;
  tl_flow_table *t = table(&o, &r);
  add(t, pkt(17, 1, 5, 2, 53, 0), 1, 1, 0);
  tl_flow_table_flush(t);
  add(t, pkt(17, 1, 5, 2, 53, 0), 1, 1, 0); // same tuple, next file: a new flow
  tl_flow_table_flush(t);
  cr_expect_eq(r.flow_ids[0], 100);
  cr_expect_eq(r.flow_ids[1], 101);
  cr_expect_eq(tl_flow_table_next_id(t), 102);
  tl_flow_table_free(t);
}

// --- real captures against tshark ---------------------------------------------

// tshark's semantics: no timeouts, TCP/UDP packets only (one IP layer).
static void count_file(const char *path, long *frames, long *pkts, long *flows, long *bursts) {
  tl_flow_options o = opts();
  o.idle_timeout_s = 0;
  o.close_linger_s = 0;
  o.max_flows = 1 << 20;
  tl_flow_table *t = tl_flow_table_new(&o, NULL, 0);
  tl_capture *c = tl_capture_open(path);
  cr_assert_not_null(c, "%s", tl_last_error());
  tl_capture_packet p;
  *frames = *pkts = 0;
  while (tl_capture_next(c, &p) == 1) {
    ++*frames;
    tl_packet_info in;
    if (tl_packet_parse(p.linktype, p.data, p.caplen, p.wirelen, &in) != TL_SKIP_NONE) continue;
    if (in.tunnels || (in.proto != 6 && in.proto != 17)) continue;
    ++*pkts;
    uint8_t b[64];
    size_t n = tl_packet_bytes(&in, TL_HEADER_ANONYMOUS, 0, p.data, p.caplen, b, sizeof b);
    cr_assert_eq(tl_flow_table_add(t, &in, p.ts_ns, p.number, b, n), TL_OK);
  }
  tl_capture_close(c);
  tl_flow_table_flush(t);
  *flows = (long)tl_flow_table_stats(t)->flows;
  *bursts = (long)tl_flow_table_stats(t)->bursts;
  tl_flow_table_free(t);
}

Test(flow, counts_match_tshark) {
  FILE *f = fopen(TL_SOURCE_DIR "/tests/fixtures/tshark_counts.tsv", "r");
  cr_assert_not_null(f);
  char line[4096];
  int files = 0;
  fgets(line, sizeof line, f);
  while (fgets(line, sizeof line, f)) {
    char rel[1024], path[2048];
    long fr, pk, fl, bu, a, b, c, d;
    if (sscanf(line, "%1023s %ld %ld %ld %ld", rel, &fr, &pk, &fl, &bu) != 5) continue;
    snprintf(path, sizeof path, TL_SHARED_DIR "/data/pcaps/%s", rel);
    count_file(path, &a, &b, &c, &d);
    cr_expect(a == fr && b == pk && c == fl && d == bu,
              "%s: frames %ld/%ld tcp+udp packets %ld/%ld flows %ld/%ld bursts %ld/%ld (tl/tshark)",
              rel, a, fr, b, pk, c, fl, d, bu);
    files++;
  }
  fclose(f);
  cr_expect_geq(files, 10);
}

// min_payload: pure ACKs (TCP header, no data) never reach on_packet, but bursts
// still see them.
Test(flow, min_payload_filters_packet_samples) {
  static uint8_t ip[20 + 20 + 10]; // IPv4 header, TCP header (data offset 5), data
  ip[20 + 12] = 5 << 4;
  tl_flow_options o = opts();
  o.min_payload = 1;
  tl_rec r;
  tl_flow_table *t = table(&o, &r);
  uint32_t lens[] = {40, 50, 40, 41}; // ACK, 10 data bytes, ACK, 1 data byte
  for (int i = 0; i < 4; i++) {
    tl_packet_info in = pkt(6, 1, 1234, 2, 80, 0x10);
    in.ip = ip, in.ip_len = lens[i], in.l4_off = 20;
    add(t, in, i, (uint64_t)i + 1, (uint8_t)i);
  }
  // UDP: an empty datagram (8-byte header only) and one with 4 bytes.
  for (int i = 0; i < 2; i++) {
    tl_packet_info in = pkt(17, 3, 5353, 4, 53, 0);
    in.ip = ip, in.ip_len = 28 + 4 * i, in.l4_off = 20;
    add(t, in, 10 + i, (uint64_t)i + 5, (uint8_t)(10 + i));
  }
  cr_assert_eq(tl_flow_table_flush(t), TL_OK);
  cr_expect_eq(r.n_pkts, 3);
  cr_expect_eq(r.first_byte[0], 1);
  cr_expect_eq(r.first_byte[1], 3);
  cr_expect_eq(r.first_byte[2], 11);
  cr_expect_eq(tl_flow_table_stats(t)->small_payload, 3);
  cr_expect_eq(r.flow_len[0], 2, "flow samples take only the data packets");
  cr_expect_eq(tl_flow_table_stats(t)->bursts, 2, "bursts still see every packet");
  tl_flow_table_free(t);
}

// With min_payload, a flow sample is the first K packets that carry payload.
Test(flow, min_payload_flow_samples_skip_empty_packets) {
  static uint8_t ip[20 + 20 + 10];
  ip[20 + 12] = 5 << 4;
  tl_flow_options o = opts();
  o.min_payload = 1;
  o.flow_packets = 2;
  tl_rec r;
  tl_flow_table *t = table(&o, &r);
  uint32_t lens[] = {40, 40, 40, 50, 40, 45, 50}; // handshake, data, ACK, data, data
  for (int i = 0; i < 7; i++) {
    tl_packet_info in = pkt(6, 1, 1234, 2, 80, 0x10);
    in.ip = ip, in.ip_len = lens[i], in.l4_off = 20;
    add(t, in, i, (uint64_t)i + 1, (uint8_t)i);
  }
  cr_assert_eq(tl_flow_table_flush(t), TL_OK);
  cr_assert_eq(r.n_flows, 1);
  cr_expect_eq(r.flow_len[0], 2);
  cr_expect_eq(tl_flow_table_stats(t)->bursts, 1, "bursts still see every packet");
  tl_flow_table_free(t);
}
