// defrag.h: IPv4 and IPv6 fragment reassembly with bounded memory.
//
// A datagram is keyed by (IP version, source, destination, identification,
// protocol / next header, outer VLAN id, VXLAN VNI). Its fragments' payloads
// are copied in as they come, in any order; repeats that agree with what is
// held are harmless. It is whole when [0, total) is covered without a gap and
// the last fragment (More Fragments = 0) has been seen; it is then returned as
// one ordinary IP packet:
// - IPv4: the offset-0 fragment's header (options as it carried them) with the
//   total length fixed, MF and the offset cleared (DF and the reserved bit kept)
//   and the header checksum recomputed;
// - IPv6: the offset-0 fragment's unfragmentable part (base header and the
//   extension headers before the fragment header) with the fragment header
//   removed, the next-header byte that named it set to the fragment header's
//   next header, and the payload length fixed.
// So a datagram that was fragmented in transit comes back byte for byte as sent.
//
// Bounds: a datagram still pending timeout_s (capture time) after its first
// fragment is dropped; past max_datagrams pending datagrams or max_bytes held
// bytes, the oldest are dropped first. Dropped per reason and counted, by
// fragment: a datagram longer than 65,535 bytes (its length field cannot say
// it), fragments that overlap and disagree (the whole datagram), fragments
// with no payload, fragments cut by the snaplen (the whole datagram). A dropped
// datagram leaves a marker until its timeout, so that its later fragments are
// counted under the same reason rather than starting a datagram that never
// completes. Nothing here reads a transport header: ports come only from the
// whole datagram, parsed again by the caller.
#pragma once
#include <stdint.h>

#include "data/packet.h"

typedef struct {
  double timeout_s;  // a datagram pending this long after its first fragment is dropped
                     // (capture time; default 30; 0: never)
  int64_t max_bytes; // payload and header bytes held at most (default 64 MiB)
  int max_datagrams; // datagrams pending at most (default 16384)
} tl_defrag_options;

// Why fragments were dropped; see tl_defrag_drop_name.
typedef enum {
  TL_DEFRAG_TIMEOUT,   // datagram incomplete after timeout_s
  TL_DEFRAG_EVICTED,   // oldest dropped to stay within max_bytes / max_datagrams
  TL_DEFRAG_EOF,       // incomplete at the end of the file (tl_defrag_flush)
  TL_DEFRAG_OVERLAP,   // overlapping bytes that differ, or two different ends
  TL_DEFRAG_TOO_BIG,   // the datagram would pass 65,535 bytes
  TL_DEFRAG_EMPTY,     // fragment without payload
  TL_DEFRAG_CUT,       // fragment cut by the snaplen: its datagram cannot be rebuilt
  TL_DEFRAG_NUM_DROPS
} tl_defrag_drop;

// Counters, by fragment unless named otherwise. Once flushed:
// fragments == used + sum(dropped).
typedef struct {
  int64_t fragments;   // fragments given to tl_defrag_add
  int64_t reassembled; // whole datagrams returned
  int64_t used;        // fragments in those datagrams (agreeing repeats included)
  int64_t duplicates;  // fragments that brought no byte not already held
  int64_t dropped[TL_DEFRAG_NUM_DROPS];
  int64_t peak_datagrams; // most datagrams pending at once
} tl_defrag_stats;

typedef struct tl_defrag tl_defrag;

// Defaults: 30 s, 64 MiB, 16384 datagrams.
void tl_defrag_options_default(tl_defrag_options *o);

// Readable reason ("timed out", "overlapping and different", ...).
const char *tl_defrag_drop_name(tl_defrag_drop r);

// A reassembler with options o (NULL: defaults). Free with tl_defrag_free.
tl_defrag *tl_defrag_new(const tl_defrag_options *o);
void tl_defrag_free(tl_defrag *d);

// Stores one fragment: info as filled by tl_packet_parse when it returned
// TL_SKIP_FRAGMENT (info->frag and the addresses), ts_ns its capture time.
// Returns 1 when this fragment completed a datagram: *pkt and *len then hold the
// whole IP packet, valid until the next call on d. Returns 0 when the fragment
// is held or dropped (see the stats).
int tl_defrag_add(tl_defrag *d, const tl_packet_info *info, int64_t ts_ns, const uint8_t **pkt,
                  uint32_t *len);

// Runs one parsed frame through the reassembler. why and *info are what
// tl_packet_parse gave for the frame; anything but a fragment comes back as it
// was. A fragment is stored; while nothing completes the return is
// TL_SKIP_FRAGMENT. When a datagram completes, it is parsed again as raw IP
// (tunnels inside it unwrapped) into *info, with the fragment's VLAN, tunnel id
// and tunnel count carried over, *pkt / *len set to it (valid until the next
// call), and the parse's result returned. Frames that are not fragments leave
// *pkt / *len untouched.
tl_skip_reason tl_defrag_frame(tl_defrag *d, tl_skip_reason why, tl_packet_info *info,
                               int64_t ts_ns, const uint8_t **pkt, uint32_t *len);

// Drops every pending datagram (counted as TL_DEFRAG_EOF): state never spans
// files.
void tl_defrag_flush(tl_defrag *d);

const tl_defrag_stats *tl_defrag_stats_get(const tl_defrag *d);
