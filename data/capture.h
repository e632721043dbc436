// capture.h: reads packets out of capture files, one file at a time.
//
// Formats are decided by the file's magic, never by its name: pcap (both byte
// orders, micro- and nanosecond), pcapng (both byte orders, several interfaces,
// per-interface timestamp resolution) and either of them gzip-compressed.
// libpcap does the reading; pcapng files whose interfaces have different link
// types (which libpcap refuses) are read by a small own block reader that takes
// over where libpcap stopped. Every packet carries its own link type.
#pragma once
#include <stdint.h>

#include "core/log.h"

typedef struct tl_capture tl_capture;

typedef struct {
  const uint8_t *data; // caplen bytes, valid until the next tl_capture_next()
  uint32_t caplen;     // bytes captured
  uint32_t wirelen;    // bytes on the wire (caplen < wirelen: cut by the snaplen)
  int linktype;        // link type of the packet's interface, as libpcap's DLT_* value
  int64_t ts_ns;       // nanoseconds since the epoch (invalid fractions kept as read)
  uint64_t number;     // 1-based packet number in the file, as tshark counts
  int bad_timestamp;   // 1 when the fraction field was out of range
} tl_capture_packet;

// Opens path. Returns NULL with tl_last_error() naming the file and the reason
// (unreadable, empty, not a capture, unsupported format). Free with
// tl_capture_close().
tl_capture *tl_capture_open(const char *path);

// Reads the next packet into *pkt. Returns 1 for a packet, 0 at the clean end of
// the file, -1 on a read error (truncated file, corrupt record length, broken
// block): tl_last_error() names the file and the packet number, and the packets
// read before it stay valid. After 0 or -1 there are no more packets.
int tl_capture_next(tl_capture *cap, tl_capture_packet *pkt);

// Like tl_capture_open, but reads a pcapng file with the own block reader from
// the start (tests compare it with libpcap). NULL for other formats.
tl_capture *tl_capture_open_own(const char *path);

// "pcap", "pcapng" or "pcapng (own reader)", with " gz" appended for gzip files.
const char *tl_capture_format(const tl_capture *cap);

// Closes the file; accepts NULL.
void tl_capture_close(tl_capture *cap);
