// capture.c: pcap / pcapng / gzip reading on top of libpcap, plus the small
// pcapng block reader for files whose interfaces mix link types.
#include "data/capture.h"

#include <errno.h>
#include <pcap/pcap.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <zlib.h>

enum { TL_MAX_IFACES = 4096, TL_MAX_BLOCK = 16 << 20 }; // libpcap allows 16 MiB blocks too

typedef struct {
  int linktype;
  uint32_t snaplen;
  int tsresol_pow2; // 1: units are 2^-exp seconds, 0: 10^-exp seconds
  int tsresol_exp;
  int64_t tsoffset_s;
} tl_iface;

struct tl_capture {
  char *path;
  int gz;        // the file is gzip-compressed
  int pcapng;    // the magic says pcapng
  FILE *fp;      // the stream the own reader uses (libpcap owns its own)
  pcap_t *pc;    // libpcap handle, NULL once the own reader has taken over
  int own;       // 1 when the own pcapng reader is active
  int swap;      // own reader: the section's byte order differs from ours
  tl_iface *ifs; // own reader: interfaces of the current section
  int n_ifs;
  uint8_t *buf; // own reader: the current block
  size_t buf_cap;
  uint64_t n;      // packets delivered so far
  uint64_t skip;   // own reader: packets libpcap already delivered
  char format[48];
};

// --- gzip through a FILE*: libpcap reads FILE*s, zlib gives gzFile
static ssize_t gz_cookie_read(void *cookie, char *buf, size_t size) {
  if (size > (1u << 30)) size = 1u << 30;
  int n = gzread((gzFile)cookie, buf, (unsigned)size);
  return n < 0 ? -1 : n;
}

static int gz_cookie_close(void *cookie) { return gzclose((gzFile)cookie) == Z_OK ? 0 : -1; }

// Opens path as a FILE*, decompressing on the fly when it is gzip.
static FILE *open_stream(const char *path, int gz) {
  if (!gz) return fopen(path, "rb");
  gzFile g = gzopen(path, "rb");
  if (!g) return NULL;
  gzbuffer(g, 1 << 17);
  cookie_io_functions_t io = {.read = gz_cookie_read, .close = gz_cookie_close};
  FILE *fp = fopencookie(g, "rb", io);
  if (!fp) gzclose(g);
  return fp;
}

// Reads the first bytes through zlib (which passes plain files through) to learn
// whether the file is compressed and what its magic is.
static tl_status sniff(const char *path, int *gz, uint8_t magic[4]) {
  // A FIFO, socket or device would block or never end: captures are files.
  struct stat st;
  if (stat(path, &st) == 0 && !S_ISREG(st.st_mode)) {
    tl_set_error("%s: not a regular file (%s), not a capture", path,
                 S_ISDIR(st.st_mode) ? "a folder" : S_ISFIFO(st.st_mode) ? "a FIFO"
                                                                         : "a device or socket");
    return TL_ERR;
  }
  gzFile g = gzopen(path, "rb");
  if (!g) {
    tl_set_error("%s: cannot open: %s", path, strerror(errno));
    return TL_ERR;
  }
  int n = gzread(g, magic, 4);
  *gz = !gzdirect(g);
  gzclose(g);
  if (n < 0) {
    tl_set_error("%s: cannot read it (a folder, or unreadable)", path);
    return TL_ERR;
  }
  if (n == 0) {
    tl_set_error("%s: empty file (0 bytes), not a capture", path);
    return TL_ERR;
  }
  if (n < 4) {
    tl_set_error("%s: %d bytes, too short to be a capture", path, n);
    return TL_ERR;
  }
  return TL_OK;
}

static int magic_is_pcap(uint32_t m) {
  return m == 0xa1b2c3d4u || m == 0xd4c3b2a1u || m == 0xa1b23c4du || m == 0x4d3cb2a1u;
}

tl_capture *tl_capture_open(const char *path) {
  uint8_t mg[4];
  int gz = 0;
  if (sniff(path, &gz, mg) != TL_OK) return NULL;

  // Decide the format by the magic, never by the name.
  uint32_t m = (uint32_t)mg[0] << 24 | mg[1] << 16 | mg[2] << 8 | mg[3];
  int pcapng = m == 0x0a0d0d0au;
  if (!pcapng && !magic_is_pcap(m)) {
    tl_set_error("%s: not a pcap or pcapng file (starts with %02x %02x %02x %02x)", path,
                 mg[0], mg[1], mg[2], mg[3]);
    return NULL;
  }

  FILE *fp = open_stream(path, gz);
  if (!fp) {
    tl_set_error("%s: cannot open: %s", path, strerror(errno));
    return NULL;
  }
  char errbuf[PCAP_ERRBUF_SIZE] = "";
  pcap_t *pc = pcap_fopen_offline_with_tstamp_precision(fp, PCAP_TSTAMP_PRECISION_NANO, errbuf);
  if (!pc) {
    fclose(fp);
    tl_set_error("%s: libpcap refuses it: %s", path, errbuf);
    return NULL;
  }

  tl_capture *cap = tl_xcalloc(1, sizeof *cap);
  cap->path = tl_xstrdup(path);
  cap->gz = gz;
  cap->pcapng = pcapng;
  cap->pc = pc;
  snprintf(cap->format, sizeof cap->format, "%s%s", pcapng ? "pcapng" : "pcap", gz ? " gz" : "");
  return cap;
}

const char *tl_capture_format(const tl_capture *cap) { return cap->format; }

void tl_capture_close(tl_capture *cap) {
  if (!cap) return;
  if (cap->pc) pcap_close(cap->pc);
  if (cap->fp) fclose(cap->fp);
  free(cap->ifs);
  free(cap->buf);
  free(cap->path);
  free(cap);
}

// --- own pcapng block reader ------------------------------------------------

static uint32_t rd32(const tl_capture *c, const uint8_t *p) {
  uint32_t v;
  memcpy(&v, p, 4);
  return c->swap ? __builtin_bswap32(v) : v;
}

static uint16_t rd16(const tl_capture *c, const uint8_t *p) {
  uint16_t v;
  memcpy(&v, p, 2);
  return c->swap ? __builtin_bswap16(v) : v;
}

// Why: libpcap stops at the first interface whose link type differs from the
// first one; the own reader resumes from the start and skips what it delivered.
static tl_status switch_to_own_reader(tl_capture *c, const char *why) {
  if (why) why = tl_fmt("%s", why);
  pcap_close(c->pc);
  c->pc = NULL;
  c->fp = open_stream(c->path, c->gz);
  if (!c->fp) {
    tl_set_error("%s: cannot reopen: %s", c->path, strerror(errno));
    return TL_ERR;
  }
  c->own = 1;
  c->skip = c->n;
  snprintf(c->format, sizeof c->format, "pcapng (own reader)%s", c->gz ? " gz" : "");
  if (why) tl_info("%s: libpcap refuses its mixed interfaces (%s); using the own pcapng reader",
                   c->path, why);
  return TL_OK;
}

tl_capture *tl_capture_open_own(const char *path) {
  tl_capture *c = tl_capture_open(path);
  if (c && !c->pcapng) {
    tl_set_error("%s: not a pcapng file, the own reader reads only pcapng", path);
    tl_capture_close(c);
    return NULL;
  }
  if (c && switch_to_own_reader(c, NULL) != TL_OK) {
    tl_capture_close(c);
    return NULL;
  }
  return c;
}

static int block_error(tl_capture *c, const char *what) {
  tl_set_error("%s: packet %llu: %s", c->path, (unsigned long long)c->n + 1, what);
  return -1;
}

// Reads one whole block into c->buf; returns its type, 0 at a clean EOF, -1 on error.
static int64_t read_block(tl_capture *c, uint32_t *len_out) {
  uint8_t hdr[12];
  size_t got = fread(hdr, 1, 8, c->fp);
  if (got == 0) return 0;
  if (got < 8) return block_error(c, "file ends inside a pcapng block header");
  uint32_t type;
  memcpy(&type, hdr, 4);
  if (type == 0x0a0d0d0au) { // a section header: learn the byte order first
    if (fread(hdr + 8, 1, 4, c->fp) != 4)
      return block_error(c, "file ends inside a section header");
    uint32_t bom;
    memcpy(&bom, hdr + 8, 4);
    if (bom != 0x1a2b3c4du && bom != 0x4d3c2b1au)
      return block_error(c, "section header with a bad byte-order magic");
    c->swap = bom == 0x4d3c2b1au;
    c->n_ifs = 0;
  }
  uint32_t len = rd32(c, hdr + 4);
  uint32_t head = type == 0x0a0d0d0au ? 12 : 8;
  if (len < 12 || len % 4 || len > TL_MAX_BLOCK)
    return block_error(c, tl_fmt("pcapng block length %u out of range (12..%u, multiple of 4)",
                                 len, (unsigned)TL_MAX_BLOCK));
  if (len > c->buf_cap) {
    c->buf = tl_xrealloc(c->buf, len);
    c->buf_cap = len;
  }
  memcpy(c->buf, hdr, head);
  if (fread(c->buf + head, 1, len - head, c->fp) != len - head)
    return block_error(c, "file ends inside a pcapng block");
  if (rd32(c, c->buf + len - 4) != len)
    return block_error(c, "pcapng block's trailing length differs from its leading one");
  *len_out = len;
  return c->swap ? __builtin_bswap32(type) : type;
}

// The DLT value libpcap reports for a file's LINKTYPE value (they differ for a few).
static int linktype_to_dlt(int lt) {
  switch (lt) {
  case 100: return 11; // ATM RFC 1483
  case 101: return 12; // raw IP
  case 102: return 15; // SLIP BSD/OS
  case 103: return 16; // PPP BSD/OS
  case 106: return 19; // ATM CLIP
  default: return lt;
  }
}

// Parses an interface description block: link type, snaplen, if_tsresol, if_tsoffset.
static int add_iface(tl_capture *c, uint32_t len) {
  if (len < 20) return block_error(c, "interface block too short");
  if (c->n_ifs >= TL_MAX_IFACES) return block_error(c, "more than 4096 interfaces");
  if (!c->ifs) c->ifs = tl_xcalloc(TL_MAX_IFACES, sizeof *c->ifs);
  tl_iface *f = &c->ifs[c->n_ifs++];
  *f = (tl_iface){.linktype = linktype_to_dlt(rd16(c, c->buf + 8)), .snaplen = rd32(c, c->buf + 12),
                  .tsresol_exp = 6};
  // Options: code, length, value padded to 4 bytes.
  for (uint32_t o = 16; o + 4 <= len - 4;) {
    uint16_t code = rd16(c, c->buf + o), olen = rd16(c, c->buf + o + 2);
    if (code == 0 || o + 4 + olen > len - 4) break;
    const uint8_t *v = c->buf + o + 4;
    if (code == 9 && olen >= 1) {
      f->tsresol_pow2 = v[0] >> 7;
      f->tsresol_exp = v[0] & 0x7f;
    } else if (code == 14 && olen >= 8) {
      uint64_t off;
      memcpy(&off, v, 8);
      f->tsoffset_s = (int64_t)(c->swap ? __builtin_bswap64(off) : off);
    }
    o += 4 + ((olen + 3u) & ~3u);
  }
  return 0;
}

// Converts a pcapng timestamp in the interface's units to nanoseconds.
static int64_t iface_ns(const tl_iface *f, uint64_t t) {
  int64_t ns;
  if (f->tsresol_pow2) {
    int e = f->tsresol_exp > 63 ? 63 : f->tsresol_exp;
    uint64_t whole = t >> e, frac = t & ((1ull << e) - 1);
    ns = (int64_t)(whole * 1000000000ull + (uint64_t)((__uint128_t)frac * 1000000000u >> e));
  } else if (f->tsresol_exp <= 9) {
    uint64_t mul = 1;
    for (int i = f->tsresol_exp; i < 9; i++) mul *= 10;
    ns = (int64_t)(t * mul);
  } else {
    uint64_t div = 1;
    for (int i = 9; i < f->tsresol_exp && i < 28; i++) div *= 10;
    ns = (int64_t)(t / div);
  }
  return ns + f->tsoffset_s * 1000000000ll;
}

// Fills pkt from an enhanced, simple or obsolete packet block; 1 if it holds a packet.
static int packet_block(tl_capture *c, int64_t type, uint32_t len, tl_capture_packet *pkt) {
  const uint8_t *b = c->buf;
  uint32_t ifid = 0, caplen, wirelen, off;
  uint64_t ts = 0;
  if (type == 6 || type == 2) { // enhanced, or obsolete (16-bit interface id)
    if (len < 32) return block_error(c, "packet block too short");
    ifid = type == 6 ? rd32(c, b + 8) : rd16(c, b + 8);
    ts = (uint64_t)rd32(c, b + 12) << 32 | rd32(c, b + 16);
    caplen = rd32(c, b + 20);
    wirelen = rd32(c, b + 24);
    off = 28;
  } else { // simple packet block: interface 0, no timestamp
    if (len < 16) return block_error(c, "simple packet block too short");
    wirelen = rd32(c, b + 8);
    caplen = len - 16 < wirelen ? len - 16 : wirelen;
    off = 12;
  }
  if (ifid >= (uint32_t)c->n_ifs)
    return block_error(c, tl_fmt("packet on interface %u, but only %d described", ifid,
                                 c->n_ifs));
  if (caplen > len - off - 4)
    return block_error(c, tl_fmt("captured length %u does not fit its %u-byte block", caplen,
                                 len));
  const tl_iface *f = &c->ifs[ifid];
  if (type == 3 && f->snaplen && caplen > f->snaplen) caplen = f->snaplen;
  *pkt = (tl_capture_packet){.data = b + off, .caplen = caplen, .wirelen = wirelen,
                             .linktype = f->linktype, .ts_ns = iface_ns(f, ts)};
  return 1;
}

// Returns the next packet of the own reader (1), 0 at the end, -1 on error.
static int own_next(tl_capture *c, tl_capture_packet *pkt) {
  for (;;) {
    uint32_t len = 0;
    int64_t type = read_block(c, &len);
    if (type <= 0) return (int)type;
    if (type == 1) {
      if (add_iface(c, len) < 0) return -1;
      continue;
    }
    if (type != 6 && type != 3 && type != 2) continue; // statistics, names, secrets...
    int r = packet_block(c, type, len, pkt);
    if (r <= 0) return r;
    if (c->skip > 0) { // libpcap delivered this one already
      c->skip--;
      continue;
    }
    return 1;
  }
}

// --- libpcap path -----------------------------------------------------------

int tl_capture_next(tl_capture *c, tl_capture_packet *pkt) {
  if (c->own) {
    int r = own_next(c, pkt);
    if (r == 1) {
      pkt->number = ++c->n;
      pkt->bad_timestamp = 0;
    }
    return r;
  }
  if (!c->pc) return 0;

  struct pcap_pkthdr *h;
  const u_char *data;
  int r = pcap_next_ex(c->pc, &h, &data);
  if (r == 1) {
    long frac = (long)h->ts.tv_usec; // nanoseconds: opened with nanosecond precision
    *pkt = (tl_capture_packet){.data = data, .caplen = h->caplen, .wirelen = h->len,
                               .linktype = pcap_datalink(c->pc),
                               .ts_ns = (int64_t)h->ts.tv_sec * 1000000000ll + frac,
                               .number = ++c->n,
                               .bad_timestamp = frac < 0 || frac >= 1000000000l};
    return 1;
  }
  if (r == PCAP_ERROR_BREAK) return 0;

  // Why: a pcapng whose interfaces mix link types is valid; libpcap just can't.
  const char *err = pcap_geterr(c->pc);
  if (c->pcapng && strstr(err, "an interface has a")) {
    if (switch_to_own_reader(c, err) != TL_OK) return -1;
    return tl_capture_next(c, pkt);
  }
  tl_set_error("%s: packet %llu: %s", c->path, (unsigned long long)c->n + 1, err);
  pcap_close(c->pc);
  c->pc = NULL;
  return -1;
}
