// flow.c: reorder window, flow table (hash + two LRU lists) and burst cutting.
#include "data/flow.h"

#include <string.h>

typedef struct {
  uint8_t a[16], b[16]; // the two addresses, the smaller (address, port) end first
  uint16_t pa, pb;
  uint8_t proto, version;
  uint16_t zero;        // keeps the struct free of padding for memcmp/hash
  uint32_t vlan, tunnel; // only with key_vlan
} tl_flow_key;

// A packet waiting in the reorder window.
typedef struct {
  int64_t ts;
  uint64_t number;
  tl_flow_key key;
  uint8_t dir; // 0: sent by end a, 1: sent by end b
  uint8_t tcp_flags;
  uint32_t payload; // transport payload bytes on the wire (as far as captured)
  uint32_t n;
  uint8_t data[]; // keep_bytes
} tl_prec;

// First packets of a burst or a flow, cut to keep_bytes each.
typedef struct {
  uint8_t *data;
  size_t *lens;
  int n, cap;
} tl_pktbuf;

typedef struct tl_flow {
  tl_flow_key key;
  uint64_t id;
  int64_t last_ts;
  struct tl_flow *hnext;      // hash chain
  struct tl_flow *prev, *next; // the open or the closing list, by last packet
  uint8_t first_dir;          // key direction of the flow's first packet
  uint8_t fins;               // bit d: FIN seen in relative direction d
  uint8_t closed;             // FIN both ways or RST: on the closing list
  uint8_t sample_done;        // on_flow already reported
  int cur_dir;                // direction of the current burst, -1 before any
  tl_pktbuf burst, first;
} tl_flow;

typedef struct {
  tl_flow *head, *tail;
} tl_flow_list;

struct tl_flow_table {
  tl_flow_options opt;
  tl_flow_sink sink;
  tl_flow_stats stats;
  uint64_t next_id;
  int failed;
  // hash table
  tl_flow **buckets;
  size_t n_buckets, n_flows;
  tl_flow_list open, closing;
  int64_t now; // timestamp of the last processed packet
  // reorder window: a binary min-heap of slot indices over fixed-size records
  uint8_t *slots;
  size_t rec_size;
  int *heap, n_heap, *free_slots, n_free;
  int64_t max_in_ts;
  int seen_any;
  // scratch for callbacks
  const uint8_t **ptrs;
};

void tl_flow_options_default(tl_flow_options *opt) {
  *opt = (tl_flow_options){.idle_timeout_s = 60, .close_linger_s = 2, .max_flows = 100000,
                           .reorder_window = 4096, .keep_bytes = 64, .burst_packets = 8,
                           .flow_packets = 5};
}

// --- small helpers ----------------------------------------------------------

static uint64_t key_hash(const tl_flow_key *k) {
  uint64_t w[sizeof *k / 8 + 1] = {0};
  memcpy(w, k, sizeof *k);
  uint64_t h = 0x9e3779b97f4a7c15ull;
  for (size_t i = 0; i < sizeof w / 8; i++) {
    h ^= w[i];
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 32;
  }
  return h;
}

static void list_unlink(tl_flow_list *l, tl_flow *f) {
  if (f->prev) f->prev->next = f->next;
  else l->head = f->next;
  if (f->next) f->next->prev = f->prev;
  else l->tail = f->prev;
  f->prev = f->next = NULL;
}

static void list_append(tl_flow_list *l, tl_flow *f) {
  f->prev = l->tail;
  f->next = NULL;
  if (l->tail) l->tail->next = f;
  else l->head = f;
  l->tail = f;
}

static void pktbuf_push(tl_pktbuf *b, int max, size_t keep, const uint8_t *p, size_t n) {
  if (b->n >= max) return;
  if (b->n == b->cap) {
    b->cap = b->cap ? 2 * b->cap : 1;
    if (b->cap > max) b->cap = max;
    b->data = tl_xrealloc(b->data, (size_t)b->cap * keep);
    b->lens = tl_xrealloc(b->lens, (size_t)b->cap * sizeof *b->lens);
  }
  memcpy(b->data + (size_t)b->n * keep, p, n);
  b->lens[b->n++] = n;
}

static void pktbuf_free(tl_pktbuf *b) {
  free(b->data);
  free(b->lens);
  *b = (tl_pktbuf){0};
}

// Hands a packet buffer to a callback as an array of pointers.
static void report(tl_flow_table *t, uint64_t id, const tl_pktbuf *b,
                   tl_status (*fn)(void *, uint64_t, const uint8_t *const *, const size_t *,
                                   int)) {
  if (!fn || b->n == 0 || t->failed) return;
  for (int i = 0; i < b->n; i++) t->ptrs[i] = b->data + (size_t)i * t->opt.keep_bytes;
  if (fn(t->sink.ctx, id, t->ptrs, b->lens, b->n) != TL_OK) t->failed = 1;
}

// --- flow lifetime ----------------------------------------------------------

static void hash_grow(tl_flow_table *t) {
  size_t nb = t->n_buckets * 2;
  tl_flow **b = tl_xcalloc(nb, sizeof *b);
  for (size_t i = 0; i < t->n_buckets; i++) {
    for (tl_flow *f = t->buckets[i], *nx; f; f = nx) {
      nx = f->hnext;
      size_t h = key_hash(&f->key) & (nb - 1);
      f->hnext = b[h];
      b[h] = f;
    }
  }
  free(t->buckets);
  t->buckets = b;
  t->n_buckets = nb;
}

static tl_flow *flow_find(tl_flow_table *t, const tl_flow_key *k) {
  for (tl_flow *f = t->buckets[key_hash(k) & (t->n_buckets - 1)]; f; f = f->hnext)
    if (!memcmp(&f->key, k, sizeof *k)) return f;
  return NULL;
}

// Ends a flow: reports its last burst and, if still due, its first packets.
static void flow_end(tl_flow_table *t, tl_flow *f, tl_flow_end why) {
  if (f->cur_dir >= 0) {
    t->stats.bursts++;
    report(t, f->id, &f->burst, t->sink.on_burst);
  }
  if (!f->sample_done) report(t, f->id, &f->first, t->sink.on_flow);
  t->stats.ended[why]++;

  tl_flow **pp = &t->buckets[key_hash(&f->key) & (t->n_buckets - 1)];
  while (*pp != f) pp = &(*pp)->hnext;
  *pp = f->hnext;
  list_unlink(f->closed ? &t->closing : &t->open, f);
  t->n_flows--;
  pktbuf_free(&f->burst);
  pktbuf_free(&f->first);
  free(f);
}

static tl_flow *flow_new(tl_flow_table *t, const tl_flow_key *k, int dir) {
  // Why: memory stays bounded; the least recently seen flow makes room.
  if (t->n_flows >= (size_t)t->opt.max_flows) {
    tl_flow *victim = t->closing.head ? t->closing.head : t->open.head;
    flow_end(t, victim, TL_FLOW_END_EVICTED);
  }
  if (t->n_flows >= t->n_buckets) hash_grow(t);
  tl_flow *f = tl_xcalloc(1, sizeof *f);
  f->key = *k;
  f->id = t->next_id++;
  f->first_dir = (uint8_t)dir;
  f->cur_dir = -1;
  size_t h = key_hash(k) & (t->n_buckets - 1);
  f->hnext = t->buckets[h];
  t->buckets[h] = f;
  list_append(&t->open, f);
  t->n_flows++;
  t->stats.flows++;
  if ((int64_t)t->n_flows > t->stats.peak_flows) t->stats.peak_flows = (int64_t)t->n_flows;
  return f;
}

// Ends flows that have been idle (or closed and lingering) for too long.
static void expire(tl_flow_table *t, int64_t now) {
  int64_t idle = (int64_t)(t->opt.idle_timeout_s * 1e9);
  int64_t linger = (int64_t)(t->opt.close_linger_s * 1e9);
  while (idle > 0 && t->open.head && now - t->open.head->last_ts > idle)
    flow_end(t, t->open.head, TL_FLOW_END_IDLE);
  while (t->closing.head) {
    int64_t quiet = now - t->closing.head->last_ts;
    if (!((linger > 0 && quiet > linger) || (idle > 0 && quiet > idle))) break;
    flow_end(t, t->closing.head, TL_FLOW_END_CLOSED);
  }
}

// One packet, in time order: find or start its flow, cut bursts, report.
static void process(tl_flow_table *t, const tl_prec *r) {
  int64_t now = r->ts > t->now ? r->ts : t->now;
  if (r->ts < t->now) t->stats.late++;
  t->now = now;
  expire(t, now);

  // A fresh SYN on a finished TCP flow starts a new flow (port reuse).
  tl_flow *f = flow_find(t, &r->key);
  int syn_only = (r->tcp_flags & 0x12) == 0x02;
  if (f && f->closed && r->key.proto == 6 && syn_only) {
    flow_end(t, f, TL_FLOW_END_CLOSED);
    f = NULL;
  }
  if (!f) f = flow_new(t, &r->key, r->dir);
  int dir = r->dir ^ f->first_dir;
  t->stats.packets++;

  if (t->sink.on_packet && r->payload < (uint32_t)t->opt.min_payload)
    t->stats.small_payload++;
  else if (t->sink.on_packet && !t->failed &&
           t->sink.on_packet(t->sink.ctx, f->id, dir, r->data, r->n) != TL_OK)
    t->failed = 1;

  // Bursts: a change of direction completes the current one.
  if (f->cur_dir != dir) {
    if (f->cur_dir >= 0) {
      t->stats.bursts++;
      report(t, f->id, &f->burst, t->sink.on_burst);
    }
    f->burst.n = 0;
    f->cur_dir = dir;
  }
  if (t->sink.on_burst)
    pktbuf_push(&f->burst, t->opt.burst_packets, t->opt.keep_bytes, r->data, r->n);

  // The flow sample: its first K packets (with at least min_payload bytes of
  // payload each), reported as soon as it has them.
  if (t->sink.on_flow && !f->sample_done && r->payload >= (uint32_t)t->opt.min_payload) {
    pktbuf_push(&f->first, t->opt.flow_packets, t->opt.keep_bytes, r->data, r->n);
    if (f->first.n >= t->opt.flow_packets) {
      report(t, f->id, &f->first, t->sink.on_flow);
      f->sample_done = 1;
      pktbuf_free(&f->first);
    }
  }

  // TCP ends: FIN in both directions or RST moves the flow to the closing list.
  f->last_ts = now;
  if (r->key.proto == 6) {
    if (r->tcp_flags & 0x01) f->fins |= (uint8_t)(1 << dir);
    if (!f->closed && ((r->tcp_flags & 0x04) || f->fins == 3)) {
      list_unlink(&t->open, f);
      f->closed = 1;
      list_append(&t->closing, f);
      return;
    }
  }
  tl_flow_list *l = f->closed ? &t->closing : &t->open;
  list_unlink(l, f);
  list_append(l, f);
}

// --- reorder window ---------------------------------------------------------

static tl_prec *slot(tl_flow_table *t, int i) {
  return (tl_prec *)(t->slots + (size_t)i * t->rec_size);
}

static int rec_less(tl_flow_table *t, int i, int j) {
  const tl_prec *a = slot(t, i), *b = slot(t, j);
  return a->ts < b->ts || (a->ts == b->ts && a->number < b->number);
}

static void heap_push(tl_flow_table *t, int s) {
  int i = t->n_heap++;
  t->heap[i] = s;
  while (i > 0 && rec_less(t, t->heap[i], t->heap[(i - 1) / 2])) {
    int p = (i - 1) / 2, tmp = t->heap[p];
    t->heap[p] = t->heap[i];
    t->heap[i] = tmp;
    i = p;
  }
}

// Processes the earliest packet of the window and frees its slot.
static void heap_pop_process(tl_flow_table *t) {
  int s = t->heap[0];
  t->heap[0] = t->heap[--t->n_heap];
  for (int i = 0;;) {
    int l = 2 * i + 1, r = l + 1, m = i;
    if (l < t->n_heap && rec_less(t, t->heap[l], t->heap[m])) m = l;
    if (r < t->n_heap && rec_less(t, t->heap[r], t->heap[m])) m = r;
    if (m == i) break;
    int tmp = t->heap[m];
    t->heap[m] = t->heap[i];
    t->heap[i] = tmp;
    i = m;
  }
  process(t, slot(t, s));
  t->free_slots[t->n_free++] = s;
}

// --- public -----------------------------------------------------------------

tl_flow_table *tl_flow_table_new(const tl_flow_options *opt, const tl_flow_sink *sink,
                                 uint64_t first_flow_id) {
  TL_ASSERT(opt->max_flows > 0 && opt->keep_bytes > 0 && opt->reorder_window >= 0);
  TL_ASSERT(opt->burst_packets > 0 && opt->flow_packets > 0);
  tl_flow_table *t = tl_xcalloc(1, sizeof *t);
  t->opt = *opt;
  if (sink) t->sink = *sink;
  t->next_id = first_flow_id;
  t->n_buckets = 1024;
  t->buckets = tl_xcalloc(t->n_buckets, sizeof *t->buckets);

  // The window holds W packets plus the one being added.
  int n_slots = opt->reorder_window + 1;
  t->rec_size = (sizeof(tl_prec) + opt->keep_bytes + 7) & ~(size_t)7;
  t->slots = tl_xmalloc((size_t)n_slots * t->rec_size);
  t->heap = tl_xmalloc((size_t)n_slots * sizeof *t->heap);
  t->free_slots = tl_xmalloc((size_t)n_slots * sizeof *t->free_slots);
  for (int i = 0; i < n_slots; i++) t->free_slots[t->n_free++] = n_slots - 1 - i;
  int most = opt->burst_packets > opt->flow_packets ? opt->burst_packets : opt->flow_packets;
  t->ptrs = tl_xmalloc((size_t)most * sizeof *t->ptrs);
  return t;
}

// Orders the two ends so that both directions of a flow give the same key.
static void make_key(const tl_flow_table *t, const tl_packet_info *in, tl_flow_key *k,
                     uint8_t *dir) {
  memset(k, 0, sizeof *k);
  int c = memcmp(in->src, in->dst, 16);
  int src_first = c < 0 || (c == 0 && in->sport <= in->dport);
  memcpy(k->a, src_first ? in->src : in->dst, 16);
  memcpy(k->b, src_first ? in->dst : in->src, 16);
  k->pa = src_first ? in->sport : in->dport;
  k->pb = src_first ? in->dport : in->sport;
  k->proto = in->proto;
  k->version = in->version;
  if (t->opt.key_vlan) {
    k->vlan = in->vlan;
    k->tunnel = in->tunnel_id;
  }
  *dir = src_first ? 0 : 1;
}

// Transport payload length: what follows the TCP header (its data offset) or the
// UDP header; for other protocols everything after the IP header counts.
static uint32_t payload_len(const tl_packet_info *info) {
  uint32_t l4 = info->l4_off;
  if (!l4 || l4 > info->ip_len) return 0;
  uint32_t header = 0;
  if (info->proto == 17) header = 8;
  if (info->proto == 6 && l4 + 13 <= info->ip_len) header = (uint32_t)(info->ip[l4 + 12] >> 4) * 4;
  return info->ip_len - l4 > header ? info->ip_len - l4 - header : 0;
}

tl_status tl_flow_table_add(tl_flow_table *t, const tl_packet_info *info, int64_t ts_ns,
                            uint64_t number, const uint8_t *bytes, size_t n) {
  if (t->failed) return TL_ERR;
  int s = t->free_slots[--t->n_free];
  tl_prec *r = slot(t, s);
  make_key(t, info, &r->key, &r->dir);
  r->ts = ts_ns;
  r->number = number;
  r->tcp_flags = info->tcp_flags;
  r->payload = payload_len(info);
  r->n = (uint32_t)(n < t->opt.keep_bytes ? n : t->opt.keep_bytes);
  memcpy(r->data, bytes, r->n);

  if (t->seen_any && ts_ns < t->max_in_ts) t->stats.reordered++;
  if (!t->seen_any || ts_ns > t->max_in_ts) t->max_in_ts = ts_ns;
  t->seen_any = 1;

  heap_push(t, s);
  if (t->n_heap > t->opt.reorder_window) heap_pop_process(t);
  return t->failed ? TL_ERR : TL_OK;
}

tl_status tl_flow_table_flush(tl_flow_table *t) {
  while (t->n_heap > 0) heap_pop_process(t);
  while (t->open.head) flow_end(t, t->open.head, TL_FLOW_END_EOF);
  while (t->closing.head) flow_end(t, t->closing.head, TL_FLOW_END_EOF);
  t->now = 0;
  t->seen_any = 0;
  return t->failed ? TL_ERR : TL_OK;
}

const tl_flow_stats *tl_flow_table_stats(const tl_flow_table *t) { return &t->stats; }
uint64_t tl_flow_table_next_id(const tl_flow_table *t) { return t->next_id; }

void tl_flow_table_free(tl_flow_table *t) {
  if (!t) return;
  for (size_t i = 0; i < t->n_buckets; i++) {
    for (tl_flow *f = t->buckets[i], *nx; f; f = nx) {
      nx = f->hnext;
      pktbuf_free(&f->burst);
      pktbuf_free(&f->first);
      free(f);
    }
  }
  free(t->buckets);
  free(t->slots);
  free(t->heap);
  free(t->free_slots);
  free(t->ptrs);
  free(t);
}
