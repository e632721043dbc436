// test_edge.c: the awkward captures of /work/shared/data/pcaps/_edge. Every file
// is read to its end or refused with a reason naming it, without a crash (the
// ASan build runs this too); link layers, tunnels, fragments and header policies
// are checked against what MANIFEST.tsv, tcpdump and the raw bytes say.
#include <criterion/criterion.h>
#include <dirent.h>
#include <stdio.h>
#include <string.h>

#include "data/capture.h"
#include "data/defrag.h"
#include "data/flow.h"
#include "data/packet.h"

#define EDGE TL_SHARED_DIR "/data/pcaps/_edge"

typedef struct {
  int refused, rc;
  long packets, used, tunnelled, cut, flows, bursts;
  long skipped[TL_SKIP_NUM_REASONS];
  tl_defrag_stats frag; // with reassembly
} tl_edge_result;

// Reads one file through parse, reassembly if asked, and flows (tshark-like:
// no timeouts).
static tl_edge_result run_file(const char *path, int key_vlan, int reassemble) {
  tl_edge_result r = {0};
  tl_capture *c = tl_capture_open(path);
  if (!c) {
    r.refused = 1;
    return r;
  }
  tl_flow_options o;
  tl_flow_options_default(&o);
  o.idle_timeout_s = 0;
  o.close_linger_s = 0;
  o.key_vlan = key_vlan;
  tl_flow_table *t = tl_flow_table_new(&o, NULL, 0);
  tl_defrag *df = reassemble ? tl_defrag_new(NULL) : NULL;
  tl_capture_packet p;
  while ((r.rc = tl_capture_next(c, &p)) == 1) {
    r.packets++;
    tl_packet_info in;
    tl_skip_reason why = tl_packet_parse(p.linktype, p.data, p.caplen, p.wirelen, &in);
    const uint8_t *frame = p.data;
    uint32_t frame_len = p.caplen;
    if (df) why = tl_defrag_frame(df, why, &in, p.ts_ns, &frame, &frame_len);
    if (df && why == TL_SKIP_FRAGMENT) continue; // counted in r.frag
    r.skipped[why]++;
    if (why != TL_SKIP_NONE) continue;
    r.used++;
    r.tunnelled += in.tunnels > 0;
    r.cut += in.cut;
    uint8_t b[128];
    size_t n = tl_packet_bytes(&in, TL_HEADER_ANONYMOUS, 0, frame, frame_len, b, sizeof b);
    cr_assert_eq(tl_flow_table_add(t, &in, p.ts_ns, p.number, b, n), TL_OK);
  }
  tl_capture_close(c);
  if (df) {
    tl_defrag_flush(df);
    r.frag = *tl_defrag_stats_get(df);
    tl_defrag_free(df);
  }
  tl_flow_table_flush(t);
  r.flows = (long)tl_flow_table_stats(t)->flows;
  r.bursts = (long)tl_flow_table_stats(t)->bursts;
  tl_flow_table_free(t);
  return r;
}

static tl_edge_result run_opt(const char *name, int key_vlan, int reassemble) {
  char path[1024];
  snprintf(path, sizeof path, EDGE "/%s", name);
  return run_file(path, key_vlan, reassemble);
}

static tl_edge_result run(const char *name, int key_vlan) { return run_opt(name, key_vlan, 0); }

// Every file: read fully, or stopped / refused with a message naming it.
Test(edge, every_file_read_or_refused_with_reason) {
  DIR *d = opendir(EDGE);
  cr_assert_not_null(d);
  int files = 0, refused = 0;
  for (struct dirent *e; (e = readdir(d));) {
    if (e->d_name[0] == '.') continue;
    char path[1024];
    snprintf(path, sizeof path, EDGE "/%s", e->d_name);
    tl_edge_result r = run_file(path, 0, 1);
    files++;
    if (r.refused || r.rc < 0) {
      refused += r.refused;
      cr_expect(strstr(tl_last_error(), e->d_name) != NULL, "%s: '%s'", e->d_name,
                tl_last_error());
    }
    long sum = 0;
    for (int k = 0; k < TL_SKIP_NUM_REASONS; k++) sum += r.skipped[k];
    // a reassembled datagram is one packet (used or skipped) of several fragments
    sum += (long)(r.frag.fragments - r.frag.reassembled);
    cr_expect_eq(sum, r.packets, "%s: every packet used, skipped for a reason or a fragment",
                 e->d_name);
  }
  closedir(d);
  cr_expect_eq(files, 56);
  cr_expect_eq(refused, 1); // the zero-length file
}

// Link layers: every packet of these files carries IP (tcpdump decodes each).
Test(edge, link_layers_all_used) {
  struct { const char *name; long n; } cases[] = {
      {"zeek__nflog-http.pcap", 13},           {"zeek__openjdk-25.0.2-zeek.org.pcap", 6},
      {"ndpi__someip_sd_sample.pcap", 6},      {"zeek__ntp-no-extensions-mac.pcap", 1},
      {"tcpdump__LINKTYPE_IPV4.pcap", 1},      {"tcpdump__LINKTYPE_RAW_ipv4.pcap", 1},
      {"tcpdump__mptcp-v1.pcap", 20},          {"zeek__radiotap.pcap", 3},
      {"zeek__wlanmon.pcap", 3},               {"zeek__vlan-qinqinq.pcap", 14},
      {"zeek__http-vlan-0.pcap", 14},          {"zeek__pppoe-over-qinq.pcap", 86},
      {"zeek__mixed-vlan-mpls.pcap", 47},      {"scapy__pfcp.pcap", 200},
      {"derived__multi_if_sll-nsec_plus_ether-usec.pcapng", 15},
      {"zeek__gap-data-missing.pcapng", 18},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    tl_edge_result r = run(cases[i].name, 0);
    cr_expect_eq(r.used, cases[i].n, "%s: %ld of %ld used", cases[i].name, r.used, r.packets);
  }
  // QinQ-tagged ARP and SLL2 with two ARP frames: not IP, counted as such
  cr_expect_eq(run("tcpdump__802.1ad_QinQ.pcap", 0).skipped[TL_SKIP_NON_IP], 2);
  cr_expect_eq(run("zeek__linux_dlt_sll2.pcap", 0).skipped[TL_SKIP_NON_IP], 2);
}

// Tunnels: the flow is the inner one (MANIFEST: "tshark flows: http=1").
Test(edge, tunnels_unwrapped) {
  tl_edge_result v = run("zeek__vxlan-encapsulated-http.pcap", 0);
  cr_expect_eq(v.tunnelled, 12);
  cr_expect_eq(v.flows, 1);
  tl_edge_result s = run("ndpi__6in4tunnel.pcap", 0);
  cr_expect_eq(s.tunnelled, 127);
  tl_edge_result g = run("zeek__gtp1_gn_normal_incl_fragmentation.pcap", 0);
  cr_expect_gt(g.tunnelled, 0);
  cr_expect_eq(g.flows, 1);
}

// Same 5-tuples in different VLANs / VNIs: one flow unless asked.
Test(edge, vlan_and_vni_collisions) {
  const char *files[] = {"zeek__vlan-collisions.pcap", "zeek__vxlan-overlapping-http-get.pcap"};
  for (int i = 0; i < 2; i++) {
    cr_expect_eq(run(files[i], 0).flows, 1, "%s", files[i]);
    cr_expect_gt(run(files[i], 1).flows, 1, "%s", files[i]);
  }
}

// Fragments are reassembled (test_defrag.c compares with tshark); off, they are
// counted and skipped, never read for ports.
Test(edge, fragments_reassembled) {
  tl_edge_result a = run_opt("zeek__fragmented-1.pcap", 0, 1);
  cr_expect_eq(a.frag.fragments, 3);
  cr_expect_eq(a.frag.dropped[TL_DEFRAG_OVERLAP], 3); // a UDP header rewritten by overlap
  cr_expect_eq(a.used, 0);
  tl_edge_result b = run_opt("zeek__ipv6-fragmented-dns.pcap", 0, 1);
  cr_expect_eq(b.frag.fragments, 4);
  cr_expect_eq(b.frag.reassembled, 1);
  cr_expect_eq(b.frag.dropped[TL_DEFRAG_EOF], 1); // a lone last fragment
  cr_expect_eq(b.skipped[TL_SKIP_FRAGMENT], 0);
  cr_expect_eq(b.used, 5);
  cr_expect_eq(b.flows, 2);
  tl_edge_result g = run_opt("zeek__gtp1_gn_normal_incl_fragmentation.pcap", 0, 1);
  cr_expect_eq(g.frag.reassembled, 36);
  cr_expect_eq(g.tunnelled, 68); // every GTP-U packet, the rebuilt ones too
  cr_expect_eq(g.flows, 1);
}

Test(edge, fragments_counted_with_reassembly_off) {
  tl_edge_result a = run("zeek__fragmented-1.pcap", 0);
  cr_expect_eq(a.skipped[TL_SKIP_FRAGMENT], 3);
  tl_edge_result b = run("zeek__ipv6-fragmented-dns.pcap", 0);
  cr_expect_eq(b.skipped[TL_SKIP_FRAGMENT], 4);
  cr_expect_eq(b.used, 4);
  cr_expect_eq(b.frag.fragments, 0);
}

// Truncation: snaplen 1 cannot hold an IP header; snaplen 68 holds TCP headers.
Test(edge, snaplen_cut_packets) {
  tl_edge_result a = run("zeek__trunc-hdr.pcap", 0);
  cr_expect_eq(a.skipped[TL_SKIP_TRUNCATED], 1);
  tl_edge_result b = run("zeek__truncated-header.pcap", 0);
  cr_expect_eq(b.used, 24);
  cr_expect_eq(b.cut, 24);
}

// One-direction captures: every flow is a single burst.
Test(edge, half_duplex_flows_are_one_burst) {
  tl_edge_result r = run("zeek__ssh.client-side-half-duplex.pcap", 0);
  cr_expect_eq(r.flows, 20); // MANIFEST: tshark flows ssh=20
  cr_expect_eq(r.bursts, 20);
}

// IPv6 hop-by-hop and routing headers before UDP 53 -> 53 (tcpdump: "53 > 53").
Test(edge, ipv6_extension_headers) {
  tl_capture *c = tl_capture_open(EDGE "/zeek__ipv6-hbh-routing0.pcap");
  cr_assert_not_null(c);
  tl_capture_packet p;
  cr_assert_eq(tl_capture_next(c, &p), 1);
  tl_packet_info in;
  cr_assert_eq(tl_packet_parse(p.linktype, p.data, p.caplen, p.wirelen, &in), TL_SKIP_NONE);
  cr_expect_eq(in.version, 6);
  cr_expect_eq(in.proto, 17);
  cr_expect_eq(in.sport, 53);
  cr_expect_eq(in.dport, 53);
  cr_expect_gt(in.l4_off, 40); // after the extension headers
  tl_capture_close(c);
}

// Header policies on raw bytes, checked against the frame itself.
Test(edge, header_policies) {
  const char *files[] = {EDGE "/tcpdump__LINKTYPE_RAW_ipv4.pcap", EDGE "/zeek__http-vlan-0.pcap"};
  size_t ip_off[] = {0, 18}; // raw IP; Ethernet + one 802.1Q tag
  for (int f = 0; f < 2; f++) {
    tl_capture *c = tl_capture_open(files[f]);
    cr_assert_not_null(c);
    tl_capture_packet p;
    cr_assert_eq(tl_capture_next(c, &p), 1);
    tl_packet_info in;
    cr_assert_eq(tl_packet_parse(p.linktype, p.data, p.caplen, p.wirelen, &in), TL_SKIP_NONE);
    const uint8_t *ip = p.data + ip_off[f];
    size_t ihl = (ip[0] & 15u) * 4u, tot = (size_t)(ip[2] << 8 | ip[3]);
    uint8_t out[2048];

    size_t n = tl_packet_bytes(&in, TL_HEADER_KEEP, 0, p.data, p.caplen, out, sizeof out);
    cr_expect_eq(n, tot);
    cr_expect_eq(memcmp(out, ip, n), 0);

    n = tl_packet_bytes(&in, TL_HEADER_ANONYMOUS, 0, p.data, p.caplen, out, sizeof out);
    cr_assert_eq(n, tot);
    for (size_t i = 0; i < n; i++) {
      int zeroed = (i >= 12 && i < 20) || (i >= ihl && i < ihl + 4);
      cr_expect_eq(out[i], zeroed ? 0 : ip[i], "%s byte %zu", files[f], i);
    }

    n = tl_packet_bytes(&in, TL_HEADER_COMPAT, 1, p.data, p.caplen, out, sizeof out);
    cr_expect(n == p.caplen && !memcmp(out, p.data, n));
    n = tl_packet_bytes(&in, TL_HEADER_COMPAT, 0, p.data, p.caplen, out, sizeof out);
    cr_expect(n == p.caplen - 38 && !memcmp(out, p.data + 38, n));

    n = tl_packet_bytes(&in, TL_HEADER_KEEP, 0, p.data, p.caplen, out, 16); // cap respected
    cr_expect_eq(n, 16);
    tl_capture_close(c);
  }
}

// Bytes the parser must survive: random frames of every link type it knows.
Test(edge, random_frames_never_overread) {
  static const int lts[] = {0, 1, 9, 10, 12, 101, 105, 108, 113, 127, 192, 228, 229,
                            239, 242, 258, 274, 276, 281};
  uint64_t s = 0x12345678;
  for (int it = 0; it < 20000; it++) {
    uint8_t buf[96];
    uint32_t n = (uint32_t)(it % 97);
    for (uint32_t i = 0; i < n; i++) {
      s = s * 6364136223846793005ull + 1442695040888963407ull;
      buf[i] = (uint8_t)(s >> 56);
    }
    // plausible starts so that deeper layers are reached often
    if (n > 20 && it % 3 == 0) buf[0] = 0x45;
    if (n > 14 && it % 3 == 1) buf[12] = 0x08, buf[13] = 0;
    uint8_t *heap = tl_xmalloc(n ? n : 1); // ASan sees any read past n
    memcpy(heap, buf, n);
    tl_packet_info in;
    int lt = lts[it % (int)(sizeof lts / sizeof lts[0])];
    if (tl_packet_parse(lt, heap, n, n, &in) == TL_SKIP_NONE) {
      cr_assert(in.ip >= heap && in.ip + in.ip_len <= heap + n);
      uint8_t out[128];
      tl_packet_bytes(&in, TL_HEADER_ANONYMOUS, 0, heap, n, out, sizeof out);
    }
    free(heap);
  }
}
