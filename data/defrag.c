// defrag.c: IP fragment reassembly (see defrag.h for the rules).
//
// Pending datagrams sit in a chained hash table and, oldest first, in a doubly
// linked age list, so that expiry and eviction look only at the list's head.
// Each datagram holds a payload buffer grown to the furthest byte seen and the
// sorted, merged byte ranges that are filled.
#include "data/defrag.h"

#include <stdlib.h>
#include <string.h>

#include "core/log.h"

enum {
  TL_DEFRAG_BUCKETS = 4096,       // power of two
  TL_DEFRAG_MAX_LEN = 65535,      // IPv4 total length / IPv6 payload length limit
  TL_DEFRAG_OUT = 65535 + 40 + 8, // largest packet built (IPv6 header + payload)
};

// The link it came over is part of a datagram's identity: the same datagram
// seen on two VLANs (a capture at a router) or the same inner addresses in two
// VXLAN segments are separate datagrams, each whole on its own.
typedef struct {
  uint8_t version, proto;
  uint32_t id;
  uint32_t vlan, tunnel_id;
  uint8_t src[16], dst[16];
} tl_frag_key;

typedef struct {
  uint32_t a, b; // [a, b) filled
} tl_frag_range;

typedef struct tl_dgram {
  tl_frag_key key;
  int64_t t0;                      // first fragment's capture time
  uint8_t *hdr;                    // offset-0 fragment's header (unfragmentable part)
  uint32_t hdr_len, nh_off;        // its bytes; IPv6: where its next-header byte is
  uint8_t *data;                   // payload bytes, [0, cap)
  uint32_t cap, total;             // total: datagram payload bytes once the end is seen
  int has_total, n_frags;
  int dead;                        // 1 + tl_defrag_drop once dropped (a marker, no data)
  tl_frag_range *ranges;
  int n_ranges, cap_ranges;
  struct tl_dgram *hnext, *older, *newer;
} tl_dgram;

struct tl_defrag {
  tl_defrag_options o;
  tl_dgram *buckets[TL_DEFRAG_BUCKETS];
  tl_dgram *oldest, *newest;
  int n_pending;
  int64_t held; // bytes in hdr and data buffers
  tl_defrag_stats st;
  uint8_t *out; // the last whole packet
};

static const char *const g_drop_names[TL_DEFRAG_NUM_DROPS] = {
    "timed out", "evicted", "end of file", "overlapping and different",
    "over 65535 bytes", "empty", "cut by snaplen"};

const char *tl_defrag_drop_name(tl_defrag_drop r) {
  return r >= 0 && r < TL_DEFRAG_NUM_DROPS ? g_drop_names[r] : "?";
}

void tl_defrag_options_default(tl_defrag_options *o) {
  o->timeout_s = 30;
  o->max_bytes = 64ll << 20;
  o->max_datagrams = 16384;
}

tl_defrag *tl_defrag_new(const tl_defrag_options *o) {
  tl_defrag *d = tl_xcalloc(1, sizeof *d);
  if (o) d->o = *o;
  else tl_defrag_options_default(&d->o);
  d->out = tl_xmalloc(TL_DEFRAG_OUT);
  return d;
}

const tl_defrag_stats *tl_defrag_stats_get(const tl_defrag *d) { return &d->st; }

// --- the table --------------------------------------------------------------

static tl_frag_key make_key(const tl_packet_info *in) {
  tl_frag_key k;
  memset(&k, 0, sizeof k); // padding too, so that keys compare with memcmp
  k.version = in->version;
  k.proto = in->frag.proto;
  k.id = in->frag.id;
  k.vlan = in->vlan;
  k.tunnel_id = in->tunnel_id;
  memcpy(k.src, in->src, 16);
  memcpy(k.dst, in->dst, 16);
  return k;
}

static uint32_t key_hash(const tl_frag_key *k) {
  const uint8_t *p = (const uint8_t *)k;
  uint32_t h = 2166136261u; // FNV-1a
  for (size_t i = 0; i < sizeof *k; i++) h = (h ^ p[i]) * 16777619u;
  return h & (TL_DEFRAG_BUCKETS - 1);
}

static tl_dgram *find(tl_defrag *d, const tl_frag_key *k) {
  for (tl_dgram *g = d->buckets[key_hash(k)]; g; g = g->hnext)
    if (!memcmp(&g->key, k, sizeof *k)) return g;
  return NULL;
}

// Releases a datagram's buffers (it stays in the table).
static void release_data(tl_defrag *d, tl_dgram *g) {
  d->held -= (int64_t)g->cap + g->hdr_len;
  free(g->data);
  free(g->hdr);
  free(g->ranges);
  g->data = g->hdr = NULL;
  g->ranges = NULL;
  g->cap = g->hdr_len = 0;
  g->n_ranges = g->cap_ranges = 0;
}

static void unlink_dgram(tl_defrag *d, tl_dgram *g) {
  tl_dgram **pp = &d->buckets[key_hash(&g->key)];
  while (*pp != g) pp = &(*pp)->hnext;
  *pp = g->hnext;
  if (g->older) g->older->newer = g->newer;
  else d->oldest = g->newer;
  if (g->newer) g->newer->older = g->older;
  else d->newest = g->older;
  d->n_pending--;
  release_data(d, g);
  free(g);
}

// Drops a datagram's fragments for reason r; it stays as a marker (no data)
// until it times out, so that its later fragments are counted the same way.
static void drop_dgram(tl_defrag *d, tl_dgram *g, tl_defrag_drop r) {
  d->st.dropped[r] += g->n_frags;
  g->n_frags = 0;
  g->dead = 1 + (int)r;
  release_data(d, g);
}

// Drops the oldest datagram for reason r (a marker just goes).
static void drop_oldest(tl_defrag *d, tl_defrag_drop r) {
  tl_dgram *g = d->oldest;
  if (!g->dead) d->st.dropped[r] += g->n_frags;
  unlink_dgram(d, g);
}

// Why: pending state is bounded in time by the capture clock.
static void expire(tl_defrag *d, int64_t ts_ns) {
  if (d->o.timeout_s <= 0) return;
  int64_t limit = (int64_t)(d->o.timeout_s * 1e9);
  while (d->oldest && ts_ns - d->oldest->t0 > limit) drop_oldest(d, TL_DEFRAG_TIMEOUT);
}

static tl_dgram *create(tl_defrag *d, const tl_frag_key *k, int64_t ts_ns) {
  // Room first: the oldest datagrams go.
  while (d->oldest && d->n_pending >= (d->o.max_datagrams > 0 ? d->o.max_datagrams : 1))
    drop_oldest(d, TL_DEFRAG_EVICTED);
  tl_dgram *g = tl_xcalloc(1, sizeof *g);
  g->key = *k;
  g->t0 = ts_ns;
  uint32_t h = key_hash(k);
  g->hnext = d->buckets[h];
  d->buckets[h] = g;
  g->older = d->newest;
  if (d->newest) d->newest->newer = g;
  else d->oldest = g;
  d->newest = g;
  if (++d->n_pending > d->st.peak_datagrams) d->st.peak_datagrams = d->n_pending;
  return g;
}

void tl_defrag_flush(tl_defrag *d) {
  while (d->oldest) drop_oldest(d, TL_DEFRAG_EOF);
}

void tl_defrag_free(tl_defrag *d) {
  if (!d) return;
  while (d->oldest) unlink_dgram(d, d->oldest);
  free(d->out);
  free(d);
}

// --- one fragment -----------------------------------------------------------

// 0 when the bytes [a, b) at p agree with every filled range they overlap.
// *old gets how many of them were filled already.
static int disagrees(const tl_dgram *g, const uint8_t *p, uint32_t a, uint32_t b,
                     uint32_t *old) {
  *old = 0;
  for (int i = 0; i < g->n_ranges; i++) {
    uint32_t lo = g->ranges[i].a > a ? g->ranges[i].a : a;
    uint32_t hi = g->ranges[i].b < b ? g->ranges[i].b : b;
    if (lo >= hi) continue;
    if (memcmp(g->data + lo, p + (lo - a), hi - lo)) return 1;
    *old += hi - lo;
  }
  return 0;
}

// Adds [a, b) to the sorted ranges, merging neighbours that touch.
static void add_range(tl_dgram *g, uint32_t a, uint32_t b) {
  if (g->n_ranges == g->cap_ranges) {
    g->cap_ranges = g->cap_ranges ? 2 * g->cap_ranges : 4;
    g->ranges = tl_xrealloc(g->ranges, (size_t)g->cap_ranges * sizeof *g->ranges);
  }
  int i = 0;
  while (i < g->n_ranges && g->ranges[i].a < a) i++;
  memmove(g->ranges + i + 1, g->ranges + i, (size_t)(g->n_ranges - i) * sizeof *g->ranges);
  g->ranges[i] = (tl_frag_range){a, b};
  g->n_ranges++;
  int n = 0; // merge in one sweep
  for (int j = 0; j < g->n_ranges; j++) {
    if (n && g->ranges[j].a <= g->ranges[n - 1].b) {
      if (g->ranges[j].b > g->ranges[n - 1].b) g->ranges[n - 1].b = g->ranges[j].b;
    } else {
      g->ranges[n++] = g->ranges[j];
    }
  }
  g->n_ranges = n;
}

// Header bytes that count against the 65,535 limit with a datagram's payload.
static uint32_t counted_header(uint8_t version, uint32_t unfrag_len) {
  return version == 4 ? unfrag_len : unfrag_len - 40;
}

// Grows the payload buffer to hold `end` bytes (doubling, capped at the limit).
static void grow(tl_defrag *d, tl_dgram *g, uint32_t end) {
  if (end <= g->cap) return;
  uint32_t cap = g->cap ? g->cap : 2048;
  while (cap < end) cap *= 2;
  if (cap > TL_DEFRAG_MAX_LEN) cap = TL_DEFRAG_MAX_LEN;
  g->data = tl_xrealloc(g->data, cap);
  d->held += cap - g->cap;
  g->cap = cap;
}

// Keeps the held bytes within max_bytes: older datagrams go first, then g.
static int within_bytes(tl_defrag *d, tl_dgram *g) {
  while (d->held > d->o.max_bytes && d->oldest != g) drop_oldest(d, TL_DEFRAG_EVICTED);
  if (d->held <= d->o.max_bytes) return 1;
  drop_dgram(d, g, TL_DEFRAG_EVICTED);
  return 0;
}

// The checks that drop a fragment's whole datagram; returns the reason, or -1.
static int conflict(const tl_dgram *g, const tl_frag_info *f, uint8_t version, uint32_t *old) {
  uint32_t end = f->offset + f->data_len;
  if (f->data_cap < f->data_len) return TL_DEFRAG_CUT;
  if (counted_header(version, f->unfrag_len) + end > TL_DEFRAG_MAX_LEN) return TL_DEFRAG_TOO_BIG;
  if (g->has_total && end > g->total) return TL_DEFRAG_OVERLAP; // past the known end
  if (!f->more && g->has_total && end != g->total) return TL_DEFRAG_OVERLAP;
  if (!f->more && g->n_ranges && g->ranges[g->n_ranges - 1].b > end) return TL_DEFRAG_OVERLAP;
  if (disagrees(g, f->data, f->offset, end, old)) return TL_DEFRAG_OVERLAP;
  return -1;
}

// Copies the fragment's bytes in; the offset-0 fragment also gives the header.
static void store(tl_defrag *d, tl_dgram *g, const tl_frag_info *f, uint32_t old) {
  uint32_t end = f->offset + f->data_len;
  memcpy(g->data + f->offset, f->data, f->data_len);
  add_range(g, f->offset, end);
  g->n_frags++;
  if (old == f->data_len) d->st.duplicates++;
  if (f->offset == 0 && !g->hdr) {
    g->hdr = tl_xmalloc(f->unfrag_len);
    memcpy(g->hdr, f->ip, f->unfrag_len);
    g->hdr_len = f->unfrag_len;
    g->nh_off = f->nh_off;
    d->held += g->hdr_len;
  }
  if (!f->more) g->has_total = 1, g->total = end;
}

static void put16(uint8_t *p, uint32_t v) {
  p[0] = (uint8_t)(v >> 8);
  p[1] = (uint8_t)v;
}

// IPv4 header checksum over ihl bytes (the checksum field zeroed first).
static void ipv4_checksum(uint8_t *h, uint32_t ihl) {
  put16(h + 10, 0);
  uint32_t s = 0;
  for (uint32_t i = 0; i + 1 < ihl; i += 2) s += (uint32_t)(h[i] << 8 | h[i + 1]);
  while (s >> 16) s = (s & 0xffff) + (s >> 16);
  put16(h + 10, ~s & 0xffff);
}

// Writes the whole packet into d->out; returns its length, or 0 when the
// first fragment's header makes it too long for its length field.
static uint32_t build(tl_defrag *d, const tl_dgram *g) {
  uint32_t counted = counted_header(g->key.version, g->hdr_len);
  if (counted + g->total > TL_DEFRAG_MAX_LEN) return 0;
  uint8_t *o = d->out;
  memcpy(o, g->hdr, g->hdr_len);
  memcpy(o + g->hdr_len, g->data, g->total);
  if (g->key.version == 4) {
    put16(o + 2, g->hdr_len + g->total);
    put16(o + 6, (uint32_t)(o[6] << 8) & 0xc000u); // reserved and DF kept; MF, offset 0
    ipv4_checksum(o, g->hdr_len);
  } else {
    o[g->nh_off] = g->key.proto; // the fragment header's next header
    put16(o + 4, counted + g->total);
  }
  return g->hdr_len + g->total;
}

int tl_defrag_add(tl_defrag *d, const tl_packet_info *info, int64_t ts_ns, const uint8_t **pkt,
                  uint32_t *len) {
  const tl_frag_info *f = &info->frag;
  d->st.fragments++;
  expire(d, ts_ns);
  if (f->data_len == 0) { // Why: it adds nothing and could only confuse the end
    d->st.dropped[TL_DEFRAG_EMPTY]++;
    return 0;
  }

  // Step 1: the datagram; a dropped one's later fragments share its reason.
  tl_frag_key k = make_key(info);
  tl_dgram *g = find(d, &k);
  if (!g) g = create(d, &k, ts_ns);
  if (g->dead) {
    d->st.dropped[g->dead - 1]++;
    return 0;
  }

  // Step 2: checks, then the bytes, within the memory bound.
  uint32_t old = 0;
  int why = conflict(g, f, info->version, &old);
  if (why >= 0) {
    g->n_frags++; // this fragment goes with the rest
    drop_dgram(d, g, (tl_defrag_drop)why);
    return 0;
  }
  grow(d, g, f->offset + f->data_len);
  if (!within_bytes(d, g)) {
    d->st.dropped[TL_DEFRAG_EVICTED]++;
    return 0;
  }
  store(d, g, f, old);

  // Step 3: whole? Then the packet, and the datagram goes.
  if (!g->has_total || !g->hdr || g->n_ranges != 1 || g->ranges[0].a != 0 ||
      g->ranges[0].b != g->total)
    return 0;
  uint32_t n = build(d, g);
  if (!n) {
    drop_dgram(d, g, TL_DEFRAG_TOO_BIG);
    return 0;
  }
  d->st.reassembled++;
  d->st.used += g->n_frags;
  unlink_dgram(d, g);
  *pkt = d->out;
  *len = n;
  return 1;
}

// --- frames -----------------------------------------------------------------

tl_skip_reason tl_defrag_frame(tl_defrag *d, tl_skip_reason why, tl_packet_info *info,
                               int64_t ts_ns, const uint8_t **pkt, uint32_t *len) {
  // A datagram can hold a fragment of an inner one (a fragmented tunnel in a
  // fragmented tunnel); each round strips one level, so a few rounds suffice.
  for (int round = 0; why == TL_SKIP_FRAGMENT && round < 4; round++) {
    const uint8_t *p;
    uint32_t n;
    if (!tl_defrag_add(d, info, ts_ns, &p, &n)) return TL_SKIP_FRAGMENT;
    uint32_t vlan = info->vlan, tunnel_id = info->tunnel_id;
    uint8_t tunnels = info->tunnels;
    why = tl_packet_parse(101, p, n, n, info); // LINKTYPE_RAW
    if (!info->vlan) info->vlan = vlan;
    if (!info->tunnel_id) info->tunnel_id = tunnel_id;
    info->tunnels = (uint8_t)(info->tunnels + tunnels);
    *pkt = p;
    *len = n;
  }
  return why;
}
