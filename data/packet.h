// packet.h: one captured frame -> its IP packet, 5-tuple and model bytes.
//
// Link layers understood (LINKTYPE_* values): Ethernet (1) with stacked 802.1Q /
// 802.1ad tags, MPLS label stacks, PPPoE sessions, 802.1ah PBB and LLC/SNAP;
// Broadcom-tagged Ethernet (281); 802.3br mPackets (274); FDDI (10); BSD
// null/loopback (0, 108); PPP (9, 50); raw IP (12, 14, 101, 228, 229); Linux
// SLL (113) and SLL2 (276); NFLOG (239); IP over InfiniBand (242); 802.11 data
// frames bare (105), with radiotap (127), PPI (192) or Apple PKTAP (258) headers.
//
// Network layer: IPv4 (options) and IPv6 (hop-by-hop, routing, destination,
// fragment, AH, mobility extension headers). Tunnels unwrapped, innermost
// packet wins: IPv4/IPv6 in IP (protocols 4, 41: 6in4, 4in6, ...), GRE (plain,
// with key/sequence, PPTP's enhanced GRE carrying PPP, transparent Ethernet),
// VXLAN (UDP 4789) and GTP-U (UDP 2152). Other tunnels (L2TP, Teredo, IPsec ESP,
// GENEVE) stay as their outer flow and are counted.
//
// Nesting (tags, labels, wrappers, tunnels) is limited to 64 levels (TL_SKIP_TOO_DEEP).
//
// Fragments: a non-first fragment never gives ports. An IPv4/IPv6 fragment,
// first ones included, returns TL_SKIP_FRAGMENT (its transport header would
// describe bytes the packet lacks), with tl_packet_info.frag saying where its
// IP header and payload are, so that data/defrag.h can rebuild the datagram;
// tl-prep then parses the whole datagram again as raw IP (LINKTYPE_RAW).
#pragma once
#include <stddef.h>
#include <stdint.h>

typedef enum {
  TL_HEADER_ANONYMOUS, // addresses and ports zeroed (default)
  TL_HEADER_KEEP,      // IP packet as captured
  TL_HEADER_COMPAT,    // ET-BERT's published fixed offsets (see tl_packet_bytes)
} tl_header_policy;

// Why a frame gives no usable IP packet; counted per reason, never fatal.
typedef enum {
  TL_SKIP_NONE = 0,
  TL_SKIP_LINKTYPE,    // link type not understood
  TL_SKIP_NON_IP,      // ARP, LLDP, 802.11 management, STP, ...
  TL_SKIP_TRUNCATED,   // cut (snaplen or broken) before the transport header ends
  TL_SKIP_BAD_IP,      // IP version, header length or total length nonsense
  TL_SKIP_FRAGMENT,    // IPv4/IPv6 fragment (first or not)
  TL_SKIP_ENCRYPTED,   // protected 802.11 frame
  TL_SKIP_TOO_DEEP,    // tunnels or tags nested beyond the limit
  TL_SKIP_NUM_REASONS
} tl_skip_reason;

// Readable names for the summary ("truncated", "fragment", ...).
const char *tl_skip_reason_name(tl_skip_reason r);

// Where a fragment's pieces are; filled only when tl_packet_parse returns
// TL_SKIP_FRAGMENT (then tl_packet_info's version, addr_len, src and dst are
// the fragment's too). Pointers are into the frame.
typedef struct {
  const uint8_t *ip;     // the fragmented IP header
  uint32_t hdr_len;      // bytes before the payload: IPv4 header; IPv6 up to and
                         // including the fragment extension header
  uint32_t unfrag_len;   // IPv4: hdr_len; IPv6: bytes before the fragment header
  uint32_t nh_off;       // IPv6: offset from ip of the next-header byte naming the
                         // fragment header (6, or inside an extension header)
  const uint8_t *data;   // fragment payload (= ip + hdr_len)
  uint32_t data_len;     // its bytes as the IP length says (the capture may hold fewer)
  uint32_t data_cap;     // of those, how many were captured
  uint32_t offset;       // byte offset of data in the datagram
  uint32_t id;           // IPv4 identification / IPv6 fragment identification
  uint8_t proto;         // IPv4 protocol / next header after the fragment header
  uint8_t more;          // More Fragments flag
} tl_frag_info;

typedef struct {
  const uint8_t *ip;  // innermost IP header, inside the captured frame
  uint32_t ip_len;    // its bytes: IP total length, clipped to what was captured
  uint32_t l4_off;    // transport header offset from ip (0 when not TCP/UDP)
  uint8_t version;    // 4 or 6
  uint8_t proto;      // transport protocol number (after extension headers)
  uint8_t addr_len;   // 4 or 16
  uint8_t tcp_flags;  // TCP flags byte (0 when not TCP)
  uint8_t src[16], dst[16];
  uint16_t sport, dport; // 0 when not TCP/UDP
  uint32_t vlan;         // outermost 802.1Q id (+1, 0 = none), for flow identity on request
  uint32_t tunnel_id;    // VXLAN VNI (+1, 0 = none), for flow identity on request
  uint8_t tunnels;       // tunnels unwrapped on the way
  uint8_t outer_tunnel;  // 1 when the packet is an unknown tunnel kept as its outer flow
  uint8_t cut;           // 1 when caplen < wirelen (kept, but counted)
  tl_frag_info frag;     // TL_SKIP_FRAGMENT only (see above)
} tl_packet_info;

// Parses one frame of the given link type. Fills *info and returns TL_SKIP_NONE,
// or the reason the frame gives no usable IP packet. Never reads beyond caplen.
tl_skip_reason tl_packet_parse(int linktype, const uint8_t *frame, uint32_t caplen,
                               uint32_t wirelen, tl_packet_info *info);

// Writes the model's bytes of a parsed packet into out (at most cap bytes) and
// returns how many were written.
// - ANONYMOUS: the innermost IP packet with addresses and TCP/UDP ports zeroed
//   (checksums left as they are).
// - KEEP: the innermost IP packet unchanged.
// - COMPAT: the published ET-BERT code: the whole frame from the link header for
//   pre-training (for_pretrain != 0), the frame after a fixed 38 bytes otherwise.
size_t tl_packet_bytes(const tl_packet_info *info, tl_header_policy policy, int for_pretrain,
                       const uint8_t *frame, uint32_t caplen, uint8_t *out, size_t cap);

// "anonymous" | "keep" | "compat" -> policy; returns -1 for anything else.
int tl_header_policy_parse(const char *name);
