// flow.h: bidirectional flows and bursts over parsed packets, in time order.
//
// Packets go in as they are read; a bounded reorder window (a min-heap of the
// last W packets by timestamp) restores time order for files whose packets are
// slightly out of order. Packets then join flows keyed by the unordered pair of
// (address, port) ends plus the transport protocol; VLAN ids and tunnel ids join
// the key only on request. A flow ends at an idle timeout, a short linger after
// TCP FIN in both directions or RST (or at once when a new SYN reuses its
// 5-tuple), when the table is full (least recently seen first), or at the end of
// the file. A burst is a maximal run of consecutive packets of one flow in one
// direction. Memory is bounded by max_flows and the per-flow kept bytes.
#pragma once
#include <stddef.h>
#include <stdint.h>

#include "core/log.h"
#include "data/packet.h"

typedef struct {
  double idle_timeout_s;  // a flow silent this long ends (0: never)
  double close_linger_s;  // a closed TCP flow (FIN both ways, RST) ends this long after
                          // its last packet (0: only at the idle timeout / end of file)
  int max_flows;          // flows held at once; beyond it the least recently seen ends
  int key_vlan;           // 1: VLAN id and tunnel id are part of a flow's identity
  int reorder_window;     // packets held back to restore time order (0: none)
  size_t keep_bytes;      // model bytes kept per packet (longer ones are cut)
  int burst_packets;      // packets kept per burst for on_burst (more are counted only)
  int flow_packets;       // first K packets kept per flow for on_flow
  int min_payload;        // on_packet and flow samples skip packets with fewer transport
                          // payload bytes (pure ACKs carry no class information);
                          // bursts and flow identity still see every packet
} tl_flow_options;

// Defaults: idle 60 s, linger 2 s, 100000 flows, no VLAN key, window 4096,
// 64 bytes, 8 packets per burst, 5 packets per flow.
void tl_flow_options_default(tl_flow_options *opt);

typedef enum {
  TL_FLOW_END_CLOSED,  // TCP FIN both ways or RST, then the linger, or a new SYN
  TL_FLOW_END_IDLE,    // idle timeout
  TL_FLOW_END_EVICTED, // table full
  TL_FLOW_END_EOF,     // end of the file
  TL_FLOW_END_NUM
} tl_flow_end;

typedef struct {
  int64_t packets;             // packets that joined a flow
  int64_t flows;               // flows started
  int64_t bursts;              // bursts completed
  int64_t ended[TL_FLOW_END_NUM];
  int64_t reordered;           // packets that arrived earlier than one already seen
  int64_t late;                // of those, packets older than the window could repair
  int64_t peak_flows;          // most flows held at once
  int64_t small_payload;       // packets kept from on_packet by min_payload
} tl_flow_stats;

// What the table reports. Any callback may be NULL. Byte pointers are valid
// during the call only. A callback returning TL_ERR stops the table: add() and
// flush() then return TL_ERR.
typedef struct {
  void *ctx;
  // Every packet in time order with its flow's id and direction (0: the
  // direction of the flow's first packet).
  tl_status (*on_packet)(void *ctx, uint64_t flow_id, int dir, const uint8_t *bytes,
                         size_t n);
  // A completed burst: its first burst_packets packets.
  tl_status (*on_burst)(void *ctx, uint64_t flow_id, const uint8_t *const *pkts,
                        const size_t *lens, int n_pkts);
  // A flow's first flow_packets packets, once it has them or when it ends.
  tl_status (*on_flow)(void *ctx, uint64_t flow_id, const uint8_t *const *pkts,
                       const size_t *lens, int n_pkts);
} tl_flow_sink;

typedef struct tl_flow_table tl_flow_table;

// Makes an empty table. first_flow_id is the id the first flow gets; ids then
// count up across files. Free with tl_flow_table_free().
tl_flow_table *tl_flow_table_new(const tl_flow_options *opt, const tl_flow_sink *sink,
                                 uint64_t first_flow_id);

// Adds one parsed packet (info from tl_packet_parse, TL_SKIP_NONE) whose model
// bytes are bytes[n] (cut to keep_bytes here). number breaks timestamp ties.
tl_status tl_flow_table_add(tl_flow_table *t, const tl_packet_info *info, int64_t ts_ns,
                            uint64_t number, const uint8_t *bytes, size_t n);

// End of a file: drains the reorder window and ends every flow (bursts and flow
// samples are reported). The table is then empty and ready for the next file.
tl_status tl_flow_table_flush(tl_flow_table *t);

const tl_flow_stats *tl_flow_table_stats(const tl_flow_table *t);
uint64_t tl_flow_table_next_id(const tl_flow_table *t);
void tl_flow_table_free(tl_flow_table *t); // accepts NULL
