// test_defrag.c: IP fragment reassembly. Synthetic IPv4 and IPv6 UDP datagrams,
// built and cut into fragments here, must come back byte for byte; the drop
// rules (timeout, caps, overlaps that differ, size, empty) are counted; and
// three real captures are compared with tshark's reassembly.
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "data/capture.h"
#include "data/defrag.h"
#include "data/flow.h"
#include "data/packet.h"
#include "data/prep.h"

#define PCAPS TL_SHARED_DIR "/data/pcaps"
#define SEC 1000000000ll

static void put16(uint8_t *p, uint32_t v) {
  p[0] = (uint8_t)(v >> 8);
  p[1] = (uint8_t)v;
}

// One's-complement sum of n bytes (RFC 1071), folded, not inverted.
static uint32_t ones_sum(const uint8_t *p, size_t n, uint32_t s) {
  for (size_t i = 0; i + 1 < n; i += 2) s += (uint32_t)(p[i] << 8 | p[i + 1]);
  if (n & 1) s += (uint32_t)p[n - 1] << 8;
  while (s >> 16) s = (s & 0xffff) + (s >> 16);
  return s;
}

static void v4_checksum(uint8_t *h) {
  put16(h + 10, 0);
  put16(h + 10, ~ones_sum(h, (h[0] & 15u) * 4u, 0) & 0xffff);
}

// The test's own datagrams: IPv4 (with one 4-byte option) or IPv6 (with a
// hop-by-hop header) carrying UDP 1234 -> 53 and `body` payload bytes.
typedef struct {
  uint8_t b[70000];
  uint32_t len, hdr; // whole packet; unfragmentable part (IPv4 header, IPv6 + HBH)
  int v6;
} tl_dgram_t;

static void make_dgram(tl_dgram_t *d, int v6, uint32_t body, uint8_t seed) {
  memset(d, 0, sizeof *d);
  d->v6 = v6;
  uint8_t *h = d->b;
  if (!v6) {
    d->hdr = 24;
    h[0] = 0x46; // IHL 6: a 4-byte option (NOP x3, EOL)
    put16(h + 4, 0x1234);
    h[6] = 0x40; // DF kept through reassembly
    h[8] = 64, h[9] = 17;
    memcpy(h + 12, "\x0a\x00\x00\x01\x0a\x00\x00\x02", 8);
    h[20] = h[21] = h[22] = 1;
  } else {
    d->hdr = 48;
    h[0] = 0x60;
    h[6] = 0, h[7] = 64; // next header: hop-by-hop
    h[8] = 0x20, h[9] = 0x01, h[23] = 1;
    h[24] = 0x20, h[25] = 0x01, h[39] = 2;
    h[40] = 17, h[41] = 0, h[42] = 1, h[43] = 4; // HBH: UDP next, PadN of 4
  }
  uint8_t *u = h + d->hdr;
  put16(u, 1234), put16(u + 2, 53), put16(u + 4, 8 + body);
  for (uint32_t i = 0; i < body; i++) u[8 + i] = (uint8_t)(seed + i * 7 + (i >> 8));
  d->len = d->hdr + 8 + body;
  if (!v6) put16(h + 2, d->len), v4_checksum(h);
  else put16(h + 4, d->len - 40);
}

// Fragment [off, off + n) of d's fragmentable part into f; returns its length.
static uint32_t make_frag(const tl_dgram_t *d, uint32_t off, uint32_t n, int more, uint32_t id,
                          uint8_t *f) {
  memcpy(f, d->b, d->hdr);
  uint32_t at = d->hdr;
  if (!d->v6) {
    put16(f + 6, 0x4000u | (more ? 0x2000u : 0) | off / 8);
    put16(f + 4, id);
  } else {
    f[40] = 44; // HBH's next header is now the fragment header
    f[at] = 17, f[at + 1] = 0;
    put16(f + at + 2, off | (more ? 1u : 0));
    f[at + 4] = (uint8_t)(id >> 24), f[at + 5] = (uint8_t)(id >> 16);
    f[at + 6] = (uint8_t)(id >> 8), f[at + 7] = (uint8_t)id;
    at += 8;
  }
  memcpy(f + at, d->b + d->hdr + off, n);
  if (!d->v6) put16(f + 2, at + n), v4_checksum(f);
  else put16(f + 4, at + n - 40);
  return at + n;
}

// Parses one fragment (raw IP) and gives it to the reassembler.
static int feed(tl_defrag *df, const uint8_t *f, uint32_t n, int64_t ts, const uint8_t **pkt,
                uint32_t *len) {
  tl_packet_info in;
  cr_assert_eq(tl_packet_parse(101, f, n, n, &in), TL_SKIP_FRAGMENT);
  cr_assert_eq(in.sport, 0, "never ports from a fragment");
  return tl_defrag_add(df, &in, ts, pkt, len);
}

// Cuts d into pieces of `step` bytes and feeds them in the order given by
// order[] (indices; -1 ends); returns how many feeds completed a datagram and
// copies the last whole packet into out.
static int feed_pieces(tl_defrag *df, const tl_dgram_t *d, uint32_t step, const int *order,
                       uint32_t id, uint8_t *out, uint32_t *out_len) {
  uint32_t total = d->len - d->hdr;
  int done = 0;
  static uint8_t f[70000];
  for (int k = 0; order[k] >= 0; k++) {
    uint32_t off = (uint32_t)order[k] * step;
    uint32_t n = off + step < total ? step : total - off;
    uint32_t fl = make_frag(d, off, n, off + n < total, id, f);
    const uint8_t *pkt;
    uint32_t len;
    if (feed(df, f, fl, k, &pkt, &len)) {
      done++;
      memcpy(out, pkt, len);
      *out_len = len;
    }
  }
  return done;
}

// 1 when pkt is d's datagram as sent with IPv4 identification id (IPv6 keeps
// the id in the fragment header, which reassembly removes).
static int same_dgram(const uint8_t *pkt, uint32_t len, const tl_dgram_t *d, uint32_t id) {
  static tl_dgram_t want;
  want = *d;
  if (!d->v6) put16(want.b + 4, id), v4_checksum(want.b);
  return len == d->len && !memcmp(pkt, want.b, len);
}

static int64_t dropped_sum(const tl_defrag_stats *s) {
  int64_t n = 0;
  for (int k = 0; k < TL_DEFRAG_NUM_DROPS; k++) n += s->dropped[k];
  return n;
}

static uint8_t g_out[70000];

Test(defrag, in_order_reversed_and_repeated_match_the_datagram) {
  const int in_order[] = {0, 1, 2, 3, 4, -1}, reversed[] = {4, 3, 2, 1, 0, -1},
            repeated[] = {0, 2, 2, 1, 4, 3, -1};
  const int *orders[] = {in_order, reversed, repeated};
  for (int v6 = 0; v6 < 2; v6++) {
    for (int o = 0; o < 3; o++) {
      static tl_dgram_t d;
      make_dgram(&d, v6, 1100, (uint8_t)(o + 3 * v6));
      tl_defrag *df = tl_defrag_new(NULL);
      uint32_t len = 0;
      cr_expect_eq(feed_pieces(df, &d, 232, orders[o], 77, g_out, &len), 1, "v6 %d order %d",
                   v6, o);
      cr_expect_eq(len, d.len);
      cr_expect(same_dgram(g_out, len, &d, 77), "v6 %d order %d: bytes differ", v6, o);
      const tl_defrag_stats *s = tl_defrag_stats_get(df);
      cr_expect_eq(s->reassembled, 1);
      cr_expect_eq(s->duplicates, o == 2);
      cr_expect_eq(s->used, s->fragments);
      tl_defrag_free(df);
    }
  }
}

// The whole packet parses as UDP 1234 -> 53 with the frame's context kept.
Test(defrag, frame_reparses_the_datagram) {
  static tl_dgram_t d;
  static uint8_t f[2][2000];
  make_dgram(&d, 0, 1500, 1);
  uint32_t n0 = make_frag(&d, 0, 1024, 1, 9, f[0]);
  uint32_t n1 = make_frag(&d, 1024, d.len - d.hdr - 1024, 0, 9, f[1]);
  tl_defrag *df = tl_defrag_new(NULL);
  tl_packet_info in;
  const uint8_t *pkt = NULL;
  uint32_t len = 0;
  tl_skip_reason why = tl_packet_parse(101, f[1], n1, n1, &in);
  in.vlan = 5; // as if an outer tag was seen
  cr_expect_eq(tl_defrag_frame(df, why, &in, 0, &pkt, &len), TL_SKIP_FRAGMENT);
  why = tl_packet_parse(101, f[0], n0, n0, &in);
  in.vlan = 5;
  cr_assert_eq(tl_defrag_frame(df, why, &in, 1, &pkt, &len), TL_SKIP_NONE);
  cr_expect_eq(len, d.len);
  cr_expect_eq(in.sport, 1234);
  cr_expect_eq(in.dport, 53);
  cr_expect_eq(in.ip_len, d.len);
  cr_expect_eq(in.vlan, 5);
  // not a fragment: unchanged
  pkt = NULL;
  cr_expect_eq(tl_defrag_frame(df, TL_SKIP_NON_IP, &in, 2, &pkt, &len), TL_SKIP_NON_IP);
  cr_expect_null(pkt);
  tl_defrag_free(df);
}

Test(defrag, missing_piece_expires_or_ends_with_the_file) {
  for (int v6 = 0; v6 < 2; v6++) {
    static tl_dgram_t d;
    make_dgram(&d, v6, 900, 2);
    tl_defrag *df = tl_defrag_new(NULL); // 30 s
    const int order[] = {0, 1, 3, -1};    // piece 2 never comes
    uint32_t len;
    cr_expect_eq(feed_pieces(df, &d, 232, order, 1, g_out, &len), 0);
    // another datagram's fragment 31 s later: the first one times out
    static uint8_t f[2000];
    uint32_t n = make_frag(&d, 0, 232, 1, 2, f);
    const uint8_t *pkt;
    cr_expect_eq(feed(df, f, n, 31 * SEC, &pkt, &len), 0);
    const tl_defrag_stats *s = tl_defrag_stats_get(df);
    cr_expect_eq(s->dropped[TL_DEFRAG_TIMEOUT], 3);
    tl_defrag_flush(df);
    cr_expect_eq(s->dropped[TL_DEFRAG_EOF], 1);
    cr_expect_eq(s->reassembled, 0);
    cr_expect_eq(dropped_sum(s), s->fragments);
    tl_defrag_free(df);
  }
}

// One datagram seen on two VLANs (or in two VXLAN segments), its copies'
// fragments interleaved: each copy is whole on its own, none waits for a piece
// the other copy already gave.
static int feed_on(tl_defrag *df, const uint8_t *f, uint32_t n, int64_t ts, uint32_t vlan,
                   uint32_t vni) {
  tl_packet_info in;
  cr_assert_eq(tl_packet_parse(101, f, n, n, &in), TL_SKIP_FRAGMENT);
  in.vlan = vlan;
  in.tunnel_id = vni;
  const uint8_t *pkt;
  uint32_t len;
  return tl_defrag_add(df, &in, ts, &pkt, &len);
}

Test(defrag, copies_on_two_links_reassemble_apart) {
  static tl_dgram_t d;
  static uint8_t f[2][2000];
  make_dgram(&d, 0, 900, 8);
  uint32_t n0 = make_frag(&d, 0, 464, 1, 11, f[0]);
  uint32_t n1 = make_frag(&d, 464, d.len - d.hdr - 464, 0, 11, f[1]);
  const uint32_t links[2][2] = {{1 + 10, 0}, {0, 1 + 7}}; // VLAN 10 / 20, VNI 7 / 8
  for (int k = 0; k < 2; k++) {
    tl_defrag *df = tl_defrag_new(NULL);
    uint32_t vlan = links[k][0], vni = links[k][1];
    cr_expect_eq(feed_on(df, f[0], n0, 0, vlan, vni), 0);
    cr_expect_eq(feed_on(df, f[0], n0, 1, vlan + (vlan > 0), vni + (vni > 0)), 0);
    cr_expect_eq(feed_on(df, f[1], n1, 2, vlan, vni), 1, "link kind %d: first copy", k);
    cr_expect_eq(feed_on(df, f[1], n1, 3, vlan + (vlan > 0), vni + (vni > 0)), 1,
                 "link kind %d: second copy", k);
    const tl_defrag_stats *s = tl_defrag_stats_get(df);
    cr_expect_eq(s->reassembled, 2);
    cr_expect_eq(s->duplicates, 0);
    tl_defrag_free(df);
  }
}

Test(defrag, overlaps_that_differ_drop_the_datagram) {
  for (int v6 = 0; v6 < 2; v6++) {
    static tl_dgram_t d, other;
    make_dgram(&d, v6, 900, 3);
    make_dgram(&other, v6, 900, 4); // same layout, other payload bytes
    static uint8_t f[2000];
    tl_defrag *df = tl_defrag_new(NULL);
    const uint8_t *pkt;
    uint32_t len;
    uint32_t n = make_frag(&d, 0, 400, 1, 5, f);
    cr_expect_eq(feed(df, f, n, 0, &pkt, &len), 0);
    n = make_frag(&other, 200, 400, 1, 5, f); // overlaps [200, 400) with other bytes
    cr_expect_eq(feed(df, f, n, 1, &pkt, &len), 0);
    n = make_frag(&d, 400, d.len - d.hdr - 400, 0, 5, f); // would have completed it
    cr_expect_eq(feed(df, f, n, 2, &pkt, &len), 0);
    const tl_defrag_stats *s = tl_defrag_stats_get(df);
    cr_expect_eq(s->dropped[TL_DEFRAG_OVERLAP], 3);
    cr_expect_eq(s->reassembled, 0);

    // an overlap that agrees is fine
    n = make_frag(&d, 0, 400, 1, 6, f);
    feed(df, f, n, 3, &pkt, &len);
    n = make_frag(&d, 200, 400, 1, 6, f);
    feed(df, f, n, 4, &pkt, &len);
    n = make_frag(&d, 600, d.len - d.hdr - 600, 0, 6, f);
    cr_expect_eq(feed(df, f, n, 5, &pkt, &len), 1);
    cr_expect(same_dgram(pkt, len, &d, 6));
    tl_defrag_free(df);
  }
}

Test(defrag, size_limit_and_empty_fragments) {
  static tl_dgram_t d;
  make_dgram(&d, 0, 600, 5);
  static uint8_t f[2000];
  tl_defrag *df = tl_defrag_new(NULL);
  const uint8_t *pkt;
  uint32_t len;
  // the last piece at offset 65,000: 24 + 65,000 + 600 bytes do not fit 16 bits
  uint32_t n = make_frag(&d, 0, 600, 0, 7, f);
  put16(f + 6, 65000 / 8), v4_checksum(f);
  cr_expect_eq(feed(df, f, n, 0, &pkt, &len), 0);
  n = make_frag(&d, 0, 8, 1, 7, f); // its first piece: counted with it
  cr_expect_eq(feed(df, f, n, 1, &pkt, &len), 0);
  n = make_frag(&d, 8, 0, 1, 8, f); // no payload
  cr_expect_eq(feed(df, f, n, 2, &pkt, &len), 0);
  const tl_defrag_stats *s = tl_defrag_stats_get(df);
  cr_expect_eq(s->dropped[TL_DEFRAG_TOO_BIG], 2);
  cr_expect_eq(s->dropped[TL_DEFRAG_EMPTY], 1);
  // the largest that fits: 24 + 65,511 = 65,535 (body 65,503 after UDP's 8)
  static tl_dgram_t big;
  make_dgram(&big, 0, 65503, 6);
  const int order[] = {7, 0, 1, 2, 3, 4, 5, 6, -1};
  static uint8_t out[70000];
  cr_expect_eq(feed_pieces(df, &big, 8192, order, 9, out, &len), 1);
  cr_expect(len == 65535 && same_dgram(out, len, &big, 9));
  tl_defrag_free(df);
}

Test(defrag, caps_drop_the_oldest_first) {
  tl_defrag_options o;
  tl_defrag_options_default(&o);
  o.max_datagrams = 2;
  tl_defrag *df = tl_defrag_new(&o);
  static tl_dgram_t d;
  make_dgram(&d, 1, 500, 7);
  static uint8_t f[2000];
  const uint8_t *pkt;
  uint32_t len, n;
  for (uint32_t id = 1; id <= 3; id++) { // three first pieces: id 1 goes
    n = make_frag(&d, 0, 256, 1, id, f);
    feed(df, f, n, id, &pkt, &len);
  }
  const tl_defrag_stats *s = tl_defrag_stats_get(df);
  cr_expect_eq(s->dropped[TL_DEFRAG_EVICTED], 1);
  cr_expect_eq(s->peak_datagrams, 2);
  n = make_frag(&d, 256, d.len - d.hdr - 256, 0, 3, f);
  cr_expect_eq(feed(df, f, n, 4, &pkt, &len), 1, "the newest still completes");
  tl_defrag_free(df);

  // a byte cap below two datagrams' buffers keeps one
  o.max_datagrams = 100;
  o.max_bytes = 6000;
  df = tl_defrag_new(&o);
  for (uint32_t id = 1; id <= 2; id++) {
    n = make_frag(&d, 256, 256, 1, id, f);
    feed(df, f, n, id, &pkt, &len);
  }
  s = tl_defrag_stats_get(df);
  cr_expect_eq(s->dropped[TL_DEFRAG_EVICTED], 0);
  make_dgram(&d, 1, 3500, 8);
  n = make_frag(&d, 2048, 1024, 1, 9, f); // grows a third buffer to 4 KiB
  feed(df, f, n, 3, &pkt, &len);
  cr_expect_eq(s->dropped[TL_DEFRAG_EVICTED], 2);
  tl_defrag_flush(df);
  cr_expect_eq(dropped_sum(s), s->fragments);
  tl_defrag_free(df);
}

// A first fragment cut by the snaplen cannot be rebuilt: its datagram is dropped.
Test(defrag, cut_fragments_drop_the_datagram) {
  static tl_dgram_t d;
  make_dgram(&d, 0, 900, 9);
  static uint8_t f[2000];
  tl_defrag *df = tl_defrag_new(NULL);
  uint32_t n = make_frag(&d, 0, 512, 1, 3, f);
  tl_packet_info in;
  cr_assert_eq(tl_packet_parse(101, f, 100, n, &in), TL_SKIP_FRAGMENT);
  const uint8_t *pkt;
  uint32_t len;
  cr_expect_eq(tl_defrag_add(df, &in, 0, &pkt, &len), 0);
  n = make_frag(&d, 512, d.len - d.hdr - 512, 0, 3, f);
  cr_expect_eq(feed(df, f, n, 1, &pkt, &len), 0);
  cr_expect_eq(tl_defrag_stats_get(df)->dropped[TL_DEFRAG_CUT], 2);
  tl_defrag_free(df);
}

// --- real captures against tshark ---------------------------------------------

// Expected values from tshark 4.x (reassembly on by default), run once by hand:
//   fragments:   tshark -n -r F -Y "ip.flags.mf==1 || ip.frag_offset>0 || ipv6.fraghdr" | wc -l
//   datagrams:   tshark -n -r F -Y "ip.reassembled.length || ipv6.reassembled.length"
//                  -T fields -e ip.reassembled.length -e ipv6.reassembled.length
//                  (lines, and the sum of the lengths: payload bytes after the IP header)
//   conflicting: tshark -n -r F -Y "ip.fragment.overlap.conflict" (datagrams tshark
//                  rebuilds although fragments overlap with other bytes; tl drops them)
//   tcp/udp packets and flows of the innermost transport: tshark -n -r F -T fields
//                  -e tcp.stream -e udp.stream (GTP: tcp.stream, the inner flow)
//   cut first fragments: tshark -n -r F -Y "ip.flags.mf==1 && ip.frag_offset==0 && udp"
//                  (tshark reads UDP from first fragments cut by the snaplen, one
//                  udp.stream each here; tl never reads ports from a fragment)
typedef struct {
  const char *name;
  int fragments, datagrams, conflicting, datagram_bytes; // bytes: sum of reassembled.length
  int packets, flows; // transport packets and flows with reassembly (innermost layer)
  int cut_first;      // of those, cut first fragments (a packet and a flow each)
} tl_tshark_frag;

static const tl_tshark_frag g_tshark[] = {
    {"_edge/zeek__fragmented-1.pcap", 3, 1, 1, 164, 1, 1, 0},
    {"_edge/zeek__ipv6-fragmented-dns.pcap", 4, 1, 0, 3238, 5, 2, 0},
    {"_edge/zeek__gtp1_gn_normal_incl_fragmentation.pcap", 76, 36, 0, 36 * 1496, 68, 1, 0},
    {"dns/zeek__dns-edns-ecs.pcap", 8, 4, 0, 1710 + 1498 + 1710 + 1738, 85, 69, 0},
    // the only other capture with fragments: first fragments cut by the snaplen
    {"dns/ndpi__badpackets.pcap", 93, 0, 0, 0, 93, 93, 93},
};

// 1 when the TCP/UDP checksum of a parsed packet verifies (0 when none to check).
static int transport_checksum_ok(const tl_packet_info *in) {
  uint32_t l4 = in->l4_off, n = in->ip_len - l4;
  uint8_t pseudo[40] = {0};
  uint32_t pl = 0;
  if (in->version == 4) {
    memcpy(pseudo, in->ip + 12, 8);
    pseudo[9] = in->proto;
    put16(pseudo + 10, n);
    pl = 12;
  } else {
    memcpy(pseudo, in->ip + 8, 32);
    put16(pseudo + 34, n);
    pseudo[39] = in->proto;
    pl = 40;
  }
  return ones_sum(in->ip + l4, n, ones_sum(pseudo, pl, 0)) == 0xffff;
}

typedef struct {
  long fragments, datagrams, packets, flows, checksums_ok, bytes;
  tl_defrag_stats st;
} tl_cap_result;

// tl-prep's path: parse, reassemble, flows (no timeouts, like tshark).
static tl_cap_result run_capture(const tl_tshark_frag *t, int reassemble) {
  tl_cap_result r = {0};
  tl_capture *c = tl_capture_open(tl_fmt(PCAPS "/%s", t->name));
  cr_assert_not_null(c, "%s", tl_last_error());
  tl_flow_options o;
  tl_flow_options_default(&o);
  o.idle_timeout_s = 0, o.close_linger_s = 0;
  tl_flow_table *ft = tl_flow_table_new(&o, NULL, 0);
  tl_defrag *df = reassemble ? tl_defrag_new(NULL) : NULL;
  tl_capture_packet p;
  while (tl_capture_next(c, &p) == 1) {
    tl_packet_info in;
    tl_skip_reason why = tl_packet_parse(p.linktype, p.data, p.caplen, p.wirelen, &in);
    r.fragments += why == TL_SKIP_FRAGMENT;
    const uint8_t *pkt = NULL;
    uint32_t len = 0;
    if (df) why = tl_defrag_frame(df, why, &in, p.ts_ns, &pkt, &len);
    if (why != TL_SKIP_NONE || (in.proto != 6 && in.proto != 17)) continue;
    r.packets++;
    if (pkt) { // a whole datagram: its size and its inner checksum
      r.datagrams++;
      uint32_t hdr = pkt[0] >> 4 == 4 ? (pkt[0] & 15u) * 4u : 40;
      r.bytes += len - hdr;
      r.checksums_ok += transport_checksum_ok(&in);
    }
    uint8_t b[64];
    size_t n = tl_packet_bytes(&in, TL_HEADER_ANONYMOUS, 0, p.data, p.caplen, b, sizeof b);
    cr_assert_eq(tl_flow_table_add(ft, &in, p.ts_ns, p.number, b, n), TL_OK);
  }
  tl_capture_close(c);
  if (df) {
    tl_defrag_flush(df);
    r.st = *tl_defrag_stats_get(df);
  }
  tl_flow_table_flush(ft);
  r.flows = (long)tl_flow_table_stats(ft)->flows;
  tl_flow_table_free(ft);
  tl_defrag_free(df);
  return r;
}

Test(defrag, captures_match_tshark) {
  for (size_t i = 0; i < sizeof g_tshark / sizeof g_tshark[0]; i++) {
    const tl_tshark_frag *t = &g_tshark[i];
    tl_cap_result r = run_capture(t, 1);
    int want = t->datagrams - t->conflicting;
    cr_expect_eq(r.fragments, t->fragments, "%s: fragments", t->name);
    cr_expect_eq(r.st.fragments, t->fragments, "%s", t->name);
    cr_expect_eq(r.st.reassembled, want, "%s: datagrams %lld, tshark %d (%d conflicting)",
                 t->name, (long long)r.st.reassembled, t->datagrams, t->conflicting);
    cr_expect_eq(r.datagrams, want, "%s", t->name);
    if (!t->conflicting)
      cr_expect_eq(r.bytes, t->datagram_bytes, "%s: datagram bytes", t->name);
    cr_expect_eq(r.checksums_ok, want, "%s: inner TCP/UDP checksums over rebuilt bytes",
                 t->name);
    cr_expect_eq(r.st.dropped[TL_DEFRAG_OVERLAP] > 0, t->conflicting > 0, "%s", t->name);
    cr_expect_eq(r.packets, t->packets - t->conflicting - t->cut_first, "%s: tcp/udp packets",
                 t->name);
    cr_expect_eq(r.flows, t->flows - (t->conflicting ? 1 : 0) - t->cut_first, "%s: flows",
                 t->name);
    cr_expect_eq(r.st.dropped[TL_DEFRAG_CUT] > 0, t->cut_first > 0, "%s", t->name);
    cr_expect_eq(r.st.used + dropped_sum(&r.st), r.st.fragments, "%s", t->name);

    // reassembly off: every fragment left out, nothing else changes
    tl_cap_result off = run_capture(t, 0);
    cr_expect_eq(off.fragments, t->fragments, "%s", t->name);
    cr_expect_eq(off.packets, r.packets - want, "%s", t->name);
    cr_expect_eq(off.datagrams, 0);
  }
}

// --- tl-prep's summary ----------------------------------------------------------

// Runs tl-prep (pretrain) over the fragment captures; returns the summary text.
static char *prep_summary(int reassemble, tl_prep_counts *c) {
  tl_prep_options o;
  tl_prep_options_default(&o, TL_TASK_PRETRAIN);
  const char *files[] = {"_edge/zeek__ipv6-fragmented-dns.pcap",
                         "_edge/zeek__gtp1_gn_normal_incl_fragmentation.pcap"};
  o.in = tl_xmalloc(2 * sizeof *o.in);
  for (int i = 0; i < 2; i++) o.in[i] = tl_xstrdup(tl_fmt(PCAPS "/%s", files[i]));
  o.n_in = 2;
  o.out_dir = tl_xstrdup(tl_fmt("/tmp/tl_test_defrag_%d", (int)getpid()));
  o.progress = 0;
  o.reassemble = reassemble;
  FILE *f = tmpfile();
  cr_assert_eq(tl_prep_run(&o, f, c), TL_OK, "%s", tl_last_error());
  long n = ftell(f);
  char *text = tl_xcalloc((size_t)n + 1, 1);
  rewind(f);
  cr_assert_eq(fread(text, 1, (size_t)n, f), (size_t)n);
  fclose(f);
  cr_assert_eq(system(tl_fmt("rm -rf '%s'", o.out_dir)), 0);
  tl_prep_options_free(&o);
  return text;
}

Test(defrag, prep_summary_counts_fragments) {
  tl_prep_counts c;
  char *on = prep_summary(1, &c);
  // 4 + 76 fragments; 1 + 36 datagrams from 3 + 72 of them; 1 + 4 left at file ends
  cr_expect(strstr(on, "fragments 80 arrived, 37 datagrams reassembled from 75 of them") &&
                strstr(on, "dropped: end of file 5"),
            "%s", on);
  cr_expect(strstr(on, "skipped  none") != NULL, "%s", on);
  cr_expect_eq(c.packets_used, 5 + 68);
  free(on);
  char *off = prep_summary(0, &c);
  cr_expect(strstr(off, "IP fragment 80") && strstr(off, "fragments 80 skipped"), "%s", off);
  cr_expect_eq(c.packets_used, 4 + 32);
  free(off);
}

// Random fragments (offsets, lengths, flags, ids, cut captures) never read out
// of bounds (the ASan build runs this) and every fragment is accounted for.
Test(defrag, random_fragments_are_accounted_for) {
  tl_defrag_options o;
  tl_defrag_options_default(&o);
  o.max_datagrams = 8;
  o.max_bytes = 1 << 16;
  tl_defrag *df = tl_defrag_new(&o);
  static tl_dgram_t d[2];
  make_dgram(&d[0], 0, 3000, 1);
  make_dgram(&d[1], 1, 3000, 2);
  static uint8_t f[4000];
  uint64_t s = 0x9e3779b97f4a7c15ull;
  long whole = 0;
  for (int it = 0; it < 20000; it++) {
    s = s * 6364136223846793005ull + 1442695040888963407ull;
    uint32_t x = (uint32_t)(s >> 32);
    const tl_dgram_t *g = &d[x & 1];
    uint32_t total = g->len - g->hdr;
    uint32_t off = ((x >> 1) % (total / 8 + 2)) * 8, n = (x >> 12) % 1200;
    if (off > total) off = total;
    if (off + n > total) n = total - off;
    uint32_t len = make_frag(g, off, n, (x >> 23) & 1 || off + n < total, (x >> 24) & 3, f);
    uint8_t *heap = tl_xmalloc(len); // ASan sees any read past the capture
    memcpy(heap, f, len);
    uint32_t cap = (x >> 26) & 15 ? len : len - (x >> 30) % (len < 4 ? 1 : 4); // 1 in 16 cut
    tl_packet_info in;
    tl_skip_reason why = tl_packet_parse(101, heap, cap, len, &in);
    const uint8_t *pkt = NULL;
    uint32_t plen = 0;
    if (why == TL_SKIP_FRAGMENT) cr_assert_eq(in.sport, 0);
    why = tl_defrag_frame(df, why, &in, it * (SEC / 4), &pkt, &plen); // markers last 120 rounds
    if (pkt) {
      whole++;
      cr_assert(plen == g->len || why != TL_SKIP_NONE || in.ip_len <= plen);
    }
    free(heap);
  }
  tl_defrag_flush(df);
  const tl_defrag_stats *st = tl_defrag_stats_get(df);
  cr_expect_eq(st->used + dropped_sum(st), st->fragments);
  cr_expect_eq(st->reassembled, whole);
  cr_expect_gt(st->reassembled, 0);
  tl_defrag_free(df);
}
