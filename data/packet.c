// packet.c: link-layer normalisation, IP/transport parsing and header policy.
//
// Each layer is one small function that checks its length against what was
// captured, then hands the rest to the next layer. A parse context carries the
// nesting depth so that stacked tags and tunnels cannot recurse without bound.
#include "data/packet.h"

#include <string.h>

enum { TL_MAX_DEPTH = 64 }; // nested tags, labels, wrappers and tunnels

typedef struct {
  tl_packet_info *info;
  int depth;
} tl_pctx;

static tl_skip_reason parse_link(tl_pctx *c, int linktype, const uint8_t *p, uint32_t n);
static tl_skip_reason parse_ethertype(tl_pctx *c, uint16_t et, const uint8_t *p, uint32_t n);
static tl_skip_reason parse_ip(tl_pctx *c, const uint8_t *p, uint32_t n);

static const char *const g_skip_names[TL_SKIP_NUM_REASONS] = {
    "none",           "unsupported link type", "not IP",
    "truncated",      "bad IP header",         "IP fragment",
    "encrypted 802.11", "nested too deep"};

const char *tl_skip_reason_name(tl_skip_reason r) {
  return r >= 0 && r < TL_SKIP_NUM_REASONS ? g_skip_names[r] : "?";
}

int tl_header_policy_parse(const char *name) {
  if (!name) return -1;
  if (!strcmp(name, "anonymous")) return TL_HEADER_ANONYMOUS;
  if (!strcmp(name, "keep")) return TL_HEADER_KEEP;
  if (!strcmp(name, "compat")) return TL_HEADER_COMPAT;
  return -1;
}

static inline uint16_t be16(const uint8_t *p) { return (uint16_t)(p[0] << 8 | p[1]); }
static inline uint16_t le16(const uint8_t *p) { return (uint16_t)(p[1] << 8 | p[0]); }
static inline uint32_t le32(const uint8_t *p) {
  return (uint32_t)p[3] << 24 | (uint32_t)p[2] << 16 | (uint32_t)p[1] << 8 | p[0];
}
static inline uint32_t be32(const uint8_t *p) {
  return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

// Why: every nested header (tag, label, tunnel, wrapper) costs one level.
static int deeper(tl_pctx *c) { return ++c->depth > TL_MAX_DEPTH; }

// --- link layers ------------------------------------------------------------

// LLC/SNAP (aa aa 03, OUI, ethertype) as used by 802.3 length frames, FDDI, 802.11.
static tl_skip_reason parse_llc(tl_pctx *c, const uint8_t *p, uint32_t n) {
  if (n < 3) return TL_SKIP_TRUNCATED;
  if (p[0] != 0xaa || p[1] != 0xaa || p[2] != 0x03) return TL_SKIP_NON_IP; // STP, IPX, ...
  if (n < 8) return TL_SKIP_TRUNCATED;
  return parse_ethertype(c, be16(p + 6), p + 8, n - 8);
}

static tl_skip_reason parse_ether(tl_pctx *c, const uint8_t *p, uint32_t n) {
  if (n < 14) return TL_SKIP_TRUNCATED;
  uint16_t et = be16(p + 12);
  if (et < 0x0600) return parse_llc(c, p + 14, n - 14); // 802.3 length field
  return parse_ethertype(c, et, p + 14, n - 14);
}

// PPP protocol field (after an optional ff 03 address/control pair).
static tl_skip_reason parse_ppp(tl_pctx *c, const uint8_t *p, uint32_t n) {
  if (n >= 2 && p[0] == 0xff && p[1] == 0x03) p += 2, n -= 2;
  if (n < 1) return TL_SKIP_TRUNCATED;
  uint16_t proto;
  if (p[0] & 1) { // compressed one-byte protocol field
    proto = p[0];
    p += 1, n -= 1;
  } else {
    if (n < 2) return TL_SKIP_TRUNCATED;
    proto = be16(p);
    p += 2, n -= 2;
  }
  if (proto == 0x21 || proto == 0x57) return parse_ip(c, p, n);
  return TL_SKIP_NON_IP; // LCP, IPCP, CCP, ...
}

// MPLS label stack, then IPv4/IPv6 by the version nibble, or a pseudowire
// control word (first nibble 0) followed by Ethernet.
static tl_skip_reason parse_mpls(tl_pctx *c, const uint8_t *p, uint32_t n) {
  for (;;) {
    if (n < 4) return TL_SKIP_TRUNCATED;
    if (deeper(c)) return TL_SKIP_TOO_DEEP;
    int bottom = p[2] & 1;
    p += 4, n -= 4;
    if (bottom) break;
  }
  if (n < 1) return TL_SKIP_TRUNCATED;
  int nib = p[0] >> 4;
  if (nib == 4 || nib == 6) return parse_ip(c, p, n);
  if (nib == 0 && n >= 4) return parse_ether(c, p + 4, n - 4);
  return TL_SKIP_NON_IP;
}

static tl_skip_reason parse_ethertype(tl_pctx *c, uint16_t et, const uint8_t *p, uint32_t n) {
  if (deeper(c)) return TL_SKIP_TOO_DEEP;
  switch (et) {
  case 0x0800:
  case 0x86dd:
    return parse_ip(c, p, n);
  case 0x8100: // 802.1Q, 802.1ad and the older QinQ ethertypes
  case 0x88a8:
  case 0x9100:
  case 0x9200:
    if (n < 4) return TL_SKIP_TRUNCATED;
    if (!c->info->vlan) c->info->vlan = (be16(p) & 0x0fffu) + 1u;
    return parse_ethertype(c, be16(p + 2), p + 4, n - 4);
  case 0x8847: // MPLS unicast and multicast
  case 0x8848:
    return parse_mpls(c, p, n);
  case 0x88e7: // 802.1ah provider backbone bridge: I-TAG, then a whole Ethernet frame
    if (n < 4) return TL_SKIP_TRUNCATED;
    return parse_ether(c, p + 4, n - 4);
  case 0x8864: // PPPoE session: 6-byte header, then the PPP protocol field
    if (n < 6) return TL_SKIP_TRUNCATED;
    return parse_ppp(c, p + 6, n - 6);
  default:
    return TL_SKIP_NON_IP;
  }
}

// 802.11 data frame: header (24, +6 with four addresses, +2 QoS, +4 HT
// control), then LLC/SNAP. Management, control and protected frames give no IP.
static tl_skip_reason parse_80211(tl_pctx *c, const uint8_t *p, uint32_t n) {
  if (n < 24) return TL_SKIP_TRUNCATED;
  uint16_t fc = le16(p);
  int type = (fc >> 2) & 3, subtype = (fc >> 4) & 15;
  if (type != 2 || (subtype & 4)) return TL_SKIP_NON_IP; // not data, or null data
  if (fc & 0x4000) return TL_SKIP_ENCRYPTED;
  uint32_t h = 24;
  if (((fc >> 8) & 3) == 3) h += 6;
  if (subtype & 8) h += 2 + ((fc & 0x8000) ? 4 : 0);
  if (n < h) return TL_SKIP_TRUNCATED;
  return parse_llc(c, p + h, n - h);
}

// NFLOG: 4-byte header, then TLVs (little-endian length and type); type 9 holds
// the packet.
static tl_skip_reason parse_nflog(tl_pctx *c, const uint8_t *p, uint32_t n) {
  if (n < 4) return TL_SKIP_TRUNCATED;
  uint32_t off = 4;
  while (off + 4 <= n) {
    uint32_t len = le16(p + off), type = le16(p + off + 2) & 0x7fff;
    if (len < 4) return TL_SKIP_TRUNCATED;
    if (type == 9) {
      uint32_t avail = n - off - 4, body = len - 4;
      return parse_ip(c, p + off + 4, body < avail ? body : avail);
    }
    off += (len + 3u) & ~3u;
  }
  return TL_SKIP_NON_IP; // no payload TLV
}

// BSD null/loopback: a 4-byte address family in the capturing host's order.
static tl_skip_reason parse_null(tl_pctx *c, const uint8_t *p, uint32_t n, int big) {
  if (n < 4) return TL_SKIP_TRUNCATED;
  uint32_t fam = big ? be32(p) : le32(p);
  if (!big && fam > 0xffff) fam = be32(p); // written by the other byte order
  if (fam == 2 || fam == 24 || fam == 28 || fam == 30) return parse_ip(c, p + 4, n - 4);
  return TL_SKIP_NON_IP;
}

// Headers that only wrap another link type: PPI (192) and PKTAP (258).
static tl_skip_reason parse_wrapper(tl_pctx *c, int linktype, const uint8_t *p, uint32_t n) {
  if (deeper(c)) return TL_SKIP_TOO_DEEP;
  if (n < 8) return TL_SKIP_TRUNCATED;
  uint32_t hlen = linktype == 192 ? le16(p + 2) : le32(p);
  int inner = (int)le32(p + 4);
  if (hlen < 8 || hlen > n) return TL_SKIP_TRUNCATED;
  return parse_link(c, inner, p + hlen, n - hlen);
}

// 802.3br mPackets: 7 preamble bytes and a start-mPacket delimiter, then Ethernet.
static tl_skip_reason parse_mpacket(tl_pctx *c, const uint8_t *p, uint32_t n) {
  if (n < 8) return TL_SKIP_TRUNCATED;
  uint8_t smd = p[7];
  if (smd == 0xd5 || smd == 0xe6 || smd == 0x4c || smd == 0x7f || smd == 0xb3)
    return parse_ether(c, p + 8, n - 8);
  return TL_SKIP_NON_IP; // continuation fragment or verify/respond frame
}

static tl_skip_reason parse_link(tl_pctx *c, int linktype, const uint8_t *p, uint32_t n) {
  switch (linktype) {
  case 1: return parse_ether(c, p, n);
  case 0: return parse_null(c, p, n, 0);
  case 108: return parse_null(c, p, n, 1);
  case 9:
  case 50: return parse_ppp(c, p, n);
  case 12:
  case 14:
  case 101:
  case 228:
  case 229: return parse_ip(c, p, n);
  case 10: // FDDI: frame control and two addresses, then LLC
    return n < 13 ? TL_SKIP_TRUNCATED : parse_llc(c, p + 13, n - 13);
  case 105: return parse_80211(c, p, n);
  case 127: // radiotap: its own length, then 802.11
    if (n < 4 || le16(p + 2) > n) return TL_SKIP_TRUNCATED;
    return parse_80211(c, p + le16(p + 2), n - le16(p + 2));
  case 113: // Linux SLL: protocol at 14
    return n < 16 ? TL_SKIP_TRUNCATED : parse_ethertype(c, be16(p + 14), p + 16, n - 16);
  case 276: // Linux SLL2: protocol first
    return n < 20 ? TL_SKIP_TRUNCATED : parse_ethertype(c, be16(p), p + 20, n - 20);
  case 239: return parse_nflog(c, p, n);
  case 242: // IP over InfiniBand: 40 bytes of addresses, ethertype, reserved
    return n < 44 ? TL_SKIP_TRUNCATED : parse_ethertype(c, be16(p + 40), p + 44, n - 44);
  case 274: return parse_mpacket(c, p, n);
  case 281: // Broadcom switch tag between the source address and the ethertype
    return n < 18 ? TL_SKIP_TRUNCATED : parse_ethertype(c, be16(p + 16), p + 18, n - 18);
  case 192:
  case 258: return parse_wrapper(c, linktype, p, n);
  default: return TL_SKIP_LINKTYPE;
  }
}

// --- tunnels ----------------------------------------------------------------

// GRE: flags and version, optional checksum/key/sequence (and PPTP's ack), then
// the payload's ethertype (IP, transparent Ethernet, or PPP for PPTP).
static tl_skip_reason parse_gre(tl_pctx *c, const uint8_t *p, uint32_t n) {
  if (n < 4) return TL_SKIP_TRUNCATED;
  uint16_t flags = be16(p), proto = be16(p + 2);
  uint32_t h = 4;
  if ((flags & 7) == 1) { // enhanced GRE (PPTP): key always present
    h += 4;
    if (flags & 0x1000) h += 4;
    if (flags & 0x0080) h += 4;
  } else {
    if (flags & 0x8000) h += 4;
    if (flags & 0x2000) h += 4; // key: not in the flow key (it may differ per direction)
    if (flags & 0x1000) h += 4;
  }
  if (n < h) return TL_SKIP_TRUNCATED;
  p += h, n -= h;
  if (proto == 0x880b) return n == 0 ? TL_SKIP_NON_IP : parse_ppp(c, p, n);
  if (proto == 0x6558) return parse_ether(c, p, n);
  return parse_ethertype(c, proto, p, n);
}

// GTP-U G-PDU: 8-byte header, 4 more with E/S/PN, then extension headers.
static int gtp_inner(const uint8_t *p, uint32_t n) {
  if (n < 8 || (p[0] >> 5) != 1 || !(p[0] & 0x10) || p[1] != 0xff) return -1;
  uint32_t h = 8;
  if (p[0] & 7) {
    if (n < 12) return -1;
    uint8_t next = p[11];
    h = 12;
    while (next) { // each extension: length in 4-byte units, last byte = next type
      if (n < h + 1 || p[h] == 0) return -1;
      uint32_t len = p[h] * 4u;
      if (n < h + len) return -1;
      next = p[h + len - 1];
      h += len;
    }
  }
  return (int)h;
}

// Unwraps the UDP tunnels tl knows; returns TL_SKIP_NUM_REASONS when the
// datagram is not one of them (it then stays an ordinary UDP packet).
static tl_skip_reason udp_tunnel(tl_pctx *c, const uint8_t *p, uint32_t n, uint16_t sport,
                                 uint16_t dport) {
  if ((dport == 4789 || sport == 4789) && n >= 16 && (p[0] & 0x08)) {
    c->info->tunnel_id = (be32(p + 4) >> 8) + 1;
    c->info->tunnels++;
    return parse_ether(c, p + 8, n - 8);
  }
  int h;
  // GTP-U: the TEID differs per direction, so it stays out of the flow key.
  if ((dport == 2152 || sport == 2152) && (h = gtp_inner(p, n)) > 0 && (uint32_t)h < n &&
      (p[h] >> 4 == 4 || p[h] >> 4 == 6)) {
    c->info->tunnels++;
    return parse_ip(c, p + h, n - (uint32_t)h);
  }
  if (dport == 1701 || sport == 1701 || dport == 3544 || sport == 3544 || dport == 6081 ||
      sport == 6081)
    c->info->outer_tunnel = 1; // L2TP, Teredo, GENEVE: kept as the outer flow
  return TL_SKIP_NUM_REASONS;
}

// Transport header at ip + off; unwraps tunnels found there.
static tl_skip_reason parse_transport(tl_pctx *c, const uint8_t *ip, uint32_t len,
                                      uint32_t off, uint8_t proto) {
  tl_packet_info *in = c->info;
  const uint8_t *p = ip + off;
  uint32_t n = len - off;
  in->proto = proto;
  in->l4_off = 0;
  in->sport = in->dport = 0;
  in->tcp_flags = 0;
  if (proto == 6 || proto == 17) {
    if (n < (proto == 6 ? 20u : 8u)) return TL_SKIP_TRUNCATED;
    in->l4_off = off;
    in->sport = be16(p);
    in->dport = be16(p + 2);
    if (proto == 6) in->tcp_flags = p[13];
    if (proto == 17) {
      tl_skip_reason r = udp_tunnel(c, p + 8, n - 8, in->sport, in->dport);
      if (r != TL_SKIP_NUM_REASONS) return r;
    }
    return TL_SKIP_NONE;
  }
  if (proto == 4 || proto == 41) { // IP in IP: 6in4, 4in6, 4in4, 6in6
    in->tunnels++;
    return parse_ip(c, p, n);
  }
  if (proto == 47) {
    in->tunnels++;
    tl_skip_reason r = parse_gre(c, p, n);
    if (r == TL_SKIP_NON_IP || r == TL_SKIP_TRUNCATED) { // keepalive, PPTP control...
      in->tunnels--;
      return TL_SKIP_NON_IP;
    }
    return r;
  }
  if (proto == 50 || proto == 115) in->outer_tunnel = 1; // ESP, L2TPv3
  return TL_SKIP_NONE; // ICMP, ESP, SCTP, ...: a flow without ports
}

// --- network layer ----------------------------------------------------------

// Records a fragment for the reassembler (data/defrag.h): its addresses and
// where its header and payload lie. Ports are never read from it.
static tl_skip_reason note_fragment(tl_pctx *c, const uint8_t *p, uint32_t n, uint32_t tot,
                                    tl_frag_info f) {
  tl_packet_info *in = c->info;
  int v6 = p[0] >> 4 == 6;
  in->version = v6 ? 6 : 4;
  in->addr_len = v6 ? 16 : 4;
  memset(in->src, 0, 16);
  memset(in->dst, 0, 16);
  memcpy(in->src, p + (v6 ? 8 : 12), in->addr_len);
  memcpy(in->dst, p + (v6 ? 24 : 16), in->addr_len);
  f.ip = p;
  f.data = p + f.hdr_len;
  f.data_len = tot - f.hdr_len;
  f.data_cap = (n < tot ? n : tot) - f.hdr_len;
  in->frag = f;
  return TL_SKIP_FRAGMENT;
}

static tl_skip_reason parse_ipv4(tl_pctx *c, const uint8_t *p, uint32_t n) {
  if (n < 20) return TL_SKIP_TRUNCATED;
  uint32_t ihl = (p[0] & 15u) * 4u, tot = be16(p + 2);
  if (ihl < 20) return TL_SKIP_BAD_IP;
  if (n < ihl) return TL_SKIP_TRUNCATED;
  if (tot == 0) tot = n; // TSO super-frames leave the total length at 0
  if (tot < ihl) return TL_SKIP_BAD_IP;
  uint32_t len = tot < n ? tot : n;
  uint16_t fl = be16(p + 6);
  if (fl & 0x3fff) { // MF set or offset != 0
    tl_frag_info f = {.hdr_len = ihl, .unfrag_len = ihl, .offset = (fl & 0x1fffu) * 8u,
                      .id = be16(p + 4), .proto = p[9], .more = (fl & 0x2000) != 0};
    return note_fragment(c, p, n, tot, f);
  }

  tl_packet_info *in = c->info;
  in->ip = p;
  in->ip_len = len;
  in->version = 4;
  in->addr_len = 4;
  memset(in->src, 0, 16);
  memset(in->dst, 0, 16);
  memcpy(in->src, p + 12, 4);
  memcpy(in->dst, p + 16, 4);
  return parse_transport(c, p, len, ihl, p[9]);
}

static tl_skip_reason parse_ipv6(tl_pctx *c, const uint8_t *p, uint32_t n) {
  if (n < 40) return TL_SKIP_TRUNCATED;
  uint32_t plen = be16(p + 4), tot = plen ? 40 + plen : n; // 0: jumbogram or TSO
  uint32_t len = tot < n ? tot : n;
  uint8_t next = p[6];
  uint32_t off = 40, nh_off = 6;

  // Why: ports sit after the extension headers, and a fragment header means
  // the transport header may describe bytes this packet does not carry.
  for (int i = 0; i < 16; i++) {
    if (next == 0 || next == 43 || next == 60 || next == 135 || next == 139 || next == 140) {
      if (len < off + 2) return TL_SKIP_TRUNCATED;
      next = p[off];
      nh_off = off;
      off += (p[off + 1] + 1u) * 8u;
    } else if (next == 51) { // AH: length in 4-byte units, minus 2
      if (len < off + 2) return TL_SKIP_TRUNCATED;
      next = p[off];
      nh_off = off;
      off += (p[off + 1] + 2u) * 4u;
    } else if (next == 44) {
      if (len < off + 8) return TL_SKIP_TRUNCATED;
      uint16_t fo = be16(p + off + 2);
      if (fo != 0) { // offset or M flag set
        tl_frag_info f = {.hdr_len = off + 8, .unfrag_len = off, .nh_off = nh_off,
                          .offset = fo & 0xfff8u, .id = be32(p + off + 4), .proto = p[off],
                          .more = fo & 1};
        return note_fragment(c, p, len, tot, f);
      }
      next = p[off];
      nh_off = off;
      off += 8;
    } else {
      break;
    }
  }
  if (off > len) return TL_SKIP_TRUNCATED;

  tl_packet_info *in = c->info;
  in->ip = p;
  in->ip_len = len;
  in->version = 6;
  in->addr_len = 16;
  memcpy(in->src, p + 8, 16);
  memcpy(in->dst, p + 24, 16);
  return parse_transport(c, p, len, off, next);
}

static tl_skip_reason parse_ip(tl_pctx *c, const uint8_t *p, uint32_t n) {
  if (deeper(c)) return TL_SKIP_TOO_DEEP;
  if (n < 1) return TL_SKIP_TRUNCATED;
  int v = p[0] >> 4;
  if (v == 4) return parse_ipv4(c, p, n);
  if (v == 6) return parse_ipv6(c, p, n);
  return TL_SKIP_BAD_IP;
}

tl_skip_reason tl_packet_parse(int linktype, const uint8_t *frame, uint32_t caplen,
                               uint32_t wirelen, tl_packet_info *info) {
  memset(info, 0, sizeof *info);
  info->cut = caplen < wirelen;
  tl_pctx c = {.info = info};
  return parse_link(&c, linktype, frame, caplen);
}

// --- header policy ----------------------------------------------------------

// Zeroes [off, off+len) of out where it was copied (out holds n bytes).
static void zero_range(uint8_t *out, size_t n, size_t off, size_t len) {
  if (off >= n) return;
  memset(out + off, 0, off + len > n ? n - off : len);
}

size_t tl_packet_bytes(const tl_packet_info *info, tl_header_policy policy, int for_pretrain,
                       const uint8_t *frame, uint32_t caplen, uint8_t *out, size_t cap) {
  // ET-BERT's published code: whole frame to pre-train, frame[38:] to fine-tune.
  if (policy == TL_HEADER_COMPAT) {
    size_t start = for_pretrain ? 0 : 38;
    size_t n = caplen > start ? caplen - start : 0;
    if (n > cap) n = cap;
    memcpy(out, frame + start, n);
    return n;
  }
  size_t n = info->ip_len < cap ? info->ip_len : cap;
  memcpy(out, info->ip, n);
  if (policy == TL_HEADER_KEEP) return n;

  // Anonymous: addresses (IPv4 12..19, IPv6 8..39) and TCP/UDP ports.
  if (info->version == 4) zero_range(out, n, 12, 8);
  else zero_range(out, n, 8, 32);
  if (info->l4_off) zero_range(out, n, info->l4_off, 4);
  return n;
}
