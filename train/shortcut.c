// shortcut.c: header fields from token rows, and a small CART tree on them.
// What the baseline sees and why: shortcut.h.
#include "train/shortcut.h"

#include <float.h>
#include <math.h>
#include <string.h>

// Per-packet feature slots, in the order shortcut.h lists them.
enum {
  SC_VERSION, SC_IP_HLEN, SC_TOTAL_LEN, SC_TOS, SC_IP_ID, SC_IP_FLAGS, SC_TTL, SC_PROTO,
  SC_L4_HLEN, SC_TCP_FLAGS, SC_TCP_WINDOW, SC_SPORT, SC_DPORT, SC_UDP_LEN, SC_PAYLOAD_LEN,
  SC_TCP_OPT,
};

static const char *const g_field_names[TL_SC_PACKET_FEATURES] = {
    "ip_version", "ip_header_len", "ip_total_len", "tos",        "ip_id",     "ip_flags",
    "ttl",        "protocol",      "l4_header_len", "tcp_flags", "tcp_window", "src_port",
    "dst_port",   "udp_length",    "payload_len",  "tcp_first_option",
};

const char *tl_shortcut_feature_name(int j) {
  static char names[TL_SC_NUM_FEATURES][32];
  TL_ASSERT(j >= 0 && j < TL_SC_NUM_FEATURES);
  if (j == 0) return "packets";
  if (!names[j][0])
    snprintf(names[j], sizeof names[j], "p%d.%s", (j - 1) / TL_SC_PACKET_FEATURES + 1,
             g_field_names[(j - 1) % TL_SC_PACKET_FEATURES]);
  return names[j];
}

// True when bytes [off, off + len) lie inside the n bytes we have.
static int have(size_t n, size_t off, size_t len) { return off + len <= n; }
static int be16(const uint8_t *p) { return p[0] << 8 | p[1]; }

// IPv4 fields; returns the transport offset (header length), 0 when unknown.
static size_t ipv4_fields(const uint8_t *p, size_t n, float *f, int *proto, int *total) {
  size_t ihl = (size_t)(p[0] & 15) * 4;
  f[SC_IP_HLEN] = (float)ihl;
  if (have(n, 1, 1)) f[SC_TOS] = p[1];
  if (have(n, 2, 2)) *total = be16(p + 2), f[SC_TOTAL_LEN] = (float)*total;
  if (have(n, 4, 2)) f[SC_IP_ID] = (float)be16(p + 4);
  if (have(n, 6, 1)) f[SC_IP_FLAGS] = p[6] >> 5;
  if (have(n, 8, 1)) f[SC_TTL] = p[8];
  if (have(n, 9, 1)) *proto = p[9];
  return ihl >= 20 ? ihl : 0;
}

// IPv6 fields and the extension-header chain; returns the transport offset, 0
// when the chain runs past the bytes we have.
static size_t ipv6_fields(const uint8_t *p, size_t n, float *f, int *proto, int *total) {
  if (have(n, 1, 1)) f[SC_TOS] = (float)((p[0] & 15) << 4 | p[1] >> 4);
  if (have(n, 1, 3)) f[SC_IP_ID] = (float)((p[1] & 15) << 16 | p[2] << 8 | p[3]);
  if (have(n, 4, 2)) *total = be16(p + 4) + 40, f[SC_TOTAL_LEN] = (float)*total;
  if (have(n, 7, 1)) f[SC_TTL] = p[7];
  if (!have(n, 6, 1)) return 0;
  int nh = p[6];
  size_t off = 40;
  // Hop-by-hop, routing, fragment, AH and destination options come before transport.
  while (nh == 0 || nh == 43 || nh == 44 || nh == 51 || nh == 60) {
    if (!have(n, off, 2)) return 0;
    size_t len = nh == 44 ? 8 : nh == 51 ? ((size_t)p[off + 1] + 2) * 4
                                          : ((size_t)p[off + 1] + 1) * 8;
    nh = p[off];
    off += len;
  }
  f[SC_IP_HLEN] = (float)off;
  *proto = nh;
  return off;
}

// TCP or UDP fields at offset l4; returns the transport header length, 0 if unknown.
static int transport_fields(const uint8_t *p, size_t n, size_t l4, int proto, float *f) {
  if (proto != 6 && proto != 17) return 0;
  if (have(n, l4, 2)) f[SC_SPORT] = (float)be16(p + l4);
  if (have(n, l4 + 2, 2)) f[SC_DPORT] = (float)be16(p + l4 + 2);
  if (proto == 17) {
    f[SC_L4_HLEN] = 8;
    if (have(n, l4 + 4, 2)) f[SC_UDP_LEN] = (float)be16(p + l4 + 4);
    return 8;
  }
  if (!have(n, l4 + 12, 1)) return 0;
  int thl = (p[l4 + 12] >> 4) * 4;
  f[SC_L4_HLEN] = (float)thl;
  if (have(n, l4 + 13, 1)) f[SC_TCP_FLAGS] = p[l4 + 13];
  if (have(n, l4 + 14, 2)) f[SC_TCP_WINDOW] = (float)be16(p + l4 + 14);
  // Kind 0 ("end of list") stands for "no options at all".
  if (thl <= 20) f[SC_TCP_OPT] = 0;
  else if (have(n, l4 + 20, 1)) f[SC_TCP_OPT] = p[l4 + 20];
  return thl;
}

void tl_shortcut_packet_features(const uint8_t *pkt, size_t n, float *f) {
  for (int j = 0; j < TL_SC_PACKET_FEATURES; j++) f[j] = -1;
  if (n < 1) return;
  int version = pkt[0] >> 4, proto = -1, total = -1;
  size_t l4 = 0;
  if (version == 4) l4 = ipv4_fields(pkt, n, f, &proto, &total);
  else if (version == 6) l4 = ipv6_fields(pkt, n, f, &proto, &total);
  else return; // not an IP header: the row gives nothing to read
  f[SC_VERSION] = (float)version;
  f[SC_PROTO] = (float)proto;
  int thl = l4 ? transport_fields(pkt, n, l4, proto, f) : 0;
  // The payload length follows from the IP lengths, whatever the row kept.
  if (total >= 0 && thl > 0) f[SC_PAYLOAD_LEN] = (float)(total - (int)l4 - thl);
}

// --- from token ids back to bytes ---------------------------------------------

// inv[id]: the bigram (b0 << 8 | b1) the id stands for, SC_BREAK for specials
// that end a packet, SC_WILD for [UNK] and ids of no bigram (bytes unknown).
enum { SC_BREAK = -1, SC_WILD = -2 };

struct tl_shortcut_detok {
  int32_t *inv;
  int32_t vocab;
  int max_packet_bytes;
};

tl_shortcut_detok *tl_shortcut_detok_new(const tl_tokenizer *tok, int max_packet_bytes) {
  tl_shortcut_detok *d = tl_xcalloc(1, sizeof *d);
  d->vocab = tok ? tok->vocab_size : TL_TOK_VOCAB_SIZE;
  d->max_packet_bytes = max_packet_bytes;
  d->inv = tl_xmalloc((size_t)d->vocab * sizeof *d->inv);
  for (int32_t id = 0; id < d->vocab; id++) d->inv[id] = SC_WILD;
  for (int32_t id = 0; id < TL_TOK_NUM_SPECIAL && id < d->vocab; id++) d->inv[id] = SC_BREAK;
  if (TL_TOK_UNK < d->vocab) d->inv[TL_TOK_UNK] = SC_WILD;
  // Bigrams mapped to [UNK] by an imported vocabulary stay wild.
  for (int32_t b = 0; b < TL_TOK_NUM_BIGRAMS; b++) {
    int32_t id = tok ? tok->bigram_id[b] : tl_bigram_native_id((uint8_t)(b >> 8), (uint8_t)b);
    if (id >= TL_TOK_NUM_SPECIAL && id < d->vocab) d->inv[id] = b;
  }
  return d;
}

void tl_shortcut_detok_free(tl_shortcut_detok *d) {
  if (!d) return;
  free(d->inv);
  free(d);
}

static int32_t lookup(const tl_shortcut_detok *d, int32_t id) {
  return id >= 0 && id < d->vocab ? d->inv[id] : SC_BREAK;
}

int tl_shortcut_row_bytes(const tl_shortcut_detok *d, const int32_t *ids, int len,
                          uint8_t *out, size_t cap, size_t *starts, int max_pkts) {
  int np = 0, in_pkt = 0, prev_lo = -1;
  size_t w = 0, pkt_bytes = 0;
  for (int i = 0; i < len; i++) {
    int32_t v = lookup(d, ids[i]);
    if (v == SC_BREAK) {
      in_pkt = 0;
      continue;
    }
    int hi = v >= 0 ? v >> 8 : -1, lo = v >= 0 ? (v & 255) : -1;
    // A new packet where the bigrams stop overlapping or the packet is full.
    if (in_pkt && ((hi >= 0 && prev_lo >= 0 && hi != prev_lo) ||
                   (d->max_packet_bytes > 0 && pkt_bytes >= (size_t)d->max_packet_bytes)))
      in_pkt = 0;
    if (!in_pkt) {
      if (np == max_pkts) break;
      starts[np++] = w;
      in_pkt = 1, pkt_bytes = 0;
      if (w < cap) out[w++] = (uint8_t)(hi >= 0 ? hi : 0);
      pkt_bytes++;
    }
    // A wild token's low byte is its right neighbour's high byte, when known.
    if (lo < 0 && i + 1 < len && lookup(d, ids[i + 1]) >= 0) lo = lookup(d, ids[i + 1]) >> 8;
    if (w < cap) out[w++] = (uint8_t)(lo >= 0 ? lo : 0);
    pkt_bytes++;
    prev_lo = lo;
  }
  starts[np] = w;
  return np;
}

int tl_shortcut_row_features(const tl_shortcut_detok *d, const int32_t *ids, int len,
                             float *feat) {
  uint8_t bytes[4096];
  size_t starts[TL_SC_MAX_PACKETS + 1];
  int np = tl_shortcut_row_bytes(d, ids, len, bytes, sizeof bytes, starts, TL_SC_MAX_PACKETS);
  feat[0] = (float)np;
  for (int k = 0; k < TL_SC_MAX_PACKETS; k++) {
    float *f = feat + 1 + k * TL_SC_PACKET_FEATURES;
    if (k < np) tl_shortcut_packet_features(bytes + starts[k], starts[k + 1] - starts[k], f);
    else for (int j = 0; j < TL_SC_PACKET_FEATURES; j++) f[j] = -1;
  }
  return np;
}

// --- the tree -----------------------------------------------------------------

typedef struct {
  int feature;  // -1 for a leaf
  float thr;    // go left when x <= thr
  int left, right;
  int cls;      // leaf class (also kept on inner nodes)
} sc_node;

struct tl_shortcut_tree {
  int F, K;
  sc_node *nodes;
  int n_nodes, cap;
};

// Working state of one fit: binned features, weights, scratch histograms.
typedef struct {
  const int32_t *y;
  int64_t n;
  int F, K;
  tl_shortcut_options opt;
  uint8_t *xb;       // [n, F] bin of each value
  float *edges;      // [F, 256] upper edge of each bin (inclusive)
  int *nb;           // [F] bins used
  double *w;         // [K] class weight
  double *hist;      // [256, K] weighted class counts of one feature
  int64_t *cnt;      // [256] rows per bin
  double *left;      // [K]
  double *total;     // [K]
} sc_fit;

void tl_shortcut_options_default(tl_shortcut_options *o) {
  o->max_depth = 12;
  o->min_leaf = 3;
  o->max_bins = 256;
}

static int cmp_float(const void *a, const void *b) {
  float x = *(const float *)a, y = *(const float *)b;
  return (x > y) - (x < y);
}

// Bin edges for each feature: every distinct value when there are at most
// max_bins of them, else max_bins quantile cut points. The last edge is always
// the largest value, so each bin is "above the previous edge, up to this one".
static void make_edges(sc_fit *s, const float *X, float *col) {
  for (int f = 0; f < s->F; f++) {
    for (int64_t i = 0; i < s->n; i++) col[i] = X[i * s->F + f];
    qsort(col, (size_t)s->n, sizeof *col, cmp_float);
    int distinct = 1;
    for (int64_t i = 1; i < s->n && distinct <= s->opt.max_bins; i++)
      distinct += col[i] > col[i - 1];
    float *e = s->edges + (size_t)f * 256;
    int m = 0;
    if (distinct <= s->opt.max_bins) {
      for (int64_t i = 0; i < s->n; i++)
        if (m == 0 || col[i] > e[m - 1]) e[m++] = col[i];
    } else {
      // b = max_bins - 1 lands on the last row, the largest value.
      for (int b = 0; b < s->opt.max_bins; b++) {
        int64_t at = (int64_t)((double)(b + 1) * (double)s->n / s->opt.max_bins) - 1;
        if (at >= 0 && (m == 0 || col[at] > e[m - 1])) e[m++] = col[at];
      }
    }
    s->nb[f] = m;
  }
}

// The bin of x: the first edge at or above it (the last bin for larger x).
static int bin_of(const float *e, int nb, float x) {
  int lo = 0, hi = nb - 1;
  while (lo < hi) {
    int mid = (lo + hi) / 2;
    if (x <= e[mid]) hi = mid;
    else lo = mid + 1;
  }
  return lo;
}

static int add_node(tl_shortcut_tree *t) {
  if (t->n_nodes == t->cap) {
    t->cap = t->cap ? 2 * t->cap : 64;
    t->nodes = tl_xrealloc(t->nodes, (size_t)t->cap * sizeof *t->nodes);
  }
  sc_node *nd = &t->nodes[t->n_nodes];
  nd->feature = -1, nd->thr = 0, nd->left = nd->right = -1, nd->cls = 0;
  return t->n_nodes++;
}

typedef struct {
  int feature, bin;
  double gain;
} sc_split;

// The best split on feature f of rows idx[m]: one histogram pass, then a sweep
// over the occupied bins keeping sums of squared class weights on each side.
static void best_on_feature(sc_fit *s, const int64_t *idx, int64_t m, int f, double W,
                            double parent_sq, sc_split *best) {
  int K = s->K;
  for (int64_t r = 0; r < m; r++) {
    int64_t i = idx[r];
    int b = s->xb[i * s->F + f];
    s->hist[b * K + s->y[i]] += s->w[s->y[i]];
    s->cnt[b]++;
  }
  double wl = 0, sq_l = 0, sq_r = parent_sq;
  int64_t nl = 0;
  memset(s->left, 0, (size_t)K * sizeof *s->left);
  for (int b = 0; b < s->nb[f]; b++) {
    if (!s->cnt[b]) continue;
    for (int c = 0; c < K; c++) {
      double h = s->hist[b * K + c];
      if (h == 0) continue;
      double l = s->left[c], rr = s->total[c] - l;
      sq_l += (l + h) * (l + h) - l * l;
      sq_r += (rr - h) * (rr - h) - rr * rr;
      s->left[c] = l + h;
      wl += h;
      s->hist[b * K + c] = 0;
    }
    nl += s->cnt[b];
    s->cnt[b] = 0;
    double wr = W - wl;
    if (nl < s->opt.min_leaf || m - nl < s->opt.min_leaf || wr <= 0) continue;
    // Gini gain times W: (W - sq/W) - (wl - sq_l/wl) - (wr - sq_r/wr).
    double gain = sq_l / wl + sq_r / wr - parent_sq / W;
    if (gain > best->gain) best->feature = f, best->bin = b, best->gain = gain;
  }
}

// Grows the subtree of rows idx[m] at depth; returns its node index.
static int grow(sc_fit *s, tl_shortcut_tree *t, int64_t *idx, int64_t m, int depth) {
  int K = s->K, node = add_node(t);

  // Class weights of the node: its majority is the leaf answer.
  memset(s->total, 0, (size_t)K * sizeof *s->total);
  for (int64_t r = 0; r < m; r++) s->total[s->y[idx[r]]] += s->w[s->y[idx[r]]];
  double W = 0, sq = 0;
  int cls = 0;
  for (int c = 0; c < K; c++) {
    W += s->total[c], sq += s->total[c] * s->total[c];
    if (s->total[c] > s->total[cls]) cls = c;
  }
  t->nodes[node].cls = cls;
  if (depth >= s->opt.max_depth || m < 2 * s->opt.min_leaf || sq >= W * W * (1 - 1e-12))
    return node;

  // Best split over all features; a gain this small is rounding, not signal.
  sc_split best = {-1, -1, 1e-9 * W};
  for (int f = 0; f < s->F; f++) best_on_feature(s, idx, m, f, W, sq, &best);
  if (best.feature < 0) return node;

  // Partition rows in place: bin <= best.bin to the left.
  int64_t nl = 0;
  for (int64_t r = 0; r < m; r++)
    if (s->xb[idx[r] * s->F + best.feature] <= best.bin) {
      int64_t tmp = idx[nl];
      idx[nl++] = idx[r], idx[r] = tmp;
    }
  t->nodes[node].feature = best.feature;
  t->nodes[node].thr = s->edges[(size_t)best.feature * 256 + best.bin];
  int l = grow(s, t, idx, nl, depth + 1);
  int r = grow(s, t, idx + nl, m - nl, depth + 1);
  t->nodes[node].left = l, t->nodes[node].right = r;
  return node;
}

// Class-balanced weights n / (classes present * count), as scikit-learn's
// class_weight="balanced".
static void balance_weights(sc_fit *s) {
  int64_t *count = tl_xcalloc((size_t)s->K, sizeof *count);
  for (int64_t i = 0; i < s->n; i++) count[s->y[i]]++;
  int present = 0;
  for (int c = 0; c < s->K; c++) present += count[c] > 0;
  for (int c = 0; c < s->K; c++)
    s->w[c] = count[c] ? (double)s->n / ((double)present * (double)count[c]) : 0;
  free(count);
}

tl_shortcut_tree *tl_shortcut_fit(const float *X, const int32_t *y, int64_t n, int F, int K,
                                  const tl_shortcut_options *opt) {
  if (n < 1 || K < 1) {
    tl_set_error("shortcut: nothing to fit (%lld rows, %d classes)", (long long)n, K);
    return NULL;
  }
  for (int64_t i = 0; i < n; i++)
    if (y[i] < 0 || y[i] >= K) {
      tl_set_error("shortcut: row %lld has label %d; expected 0..%d", (long long)i, y[i], K - 1);
      return NULL;
    }
  sc_fit s = {.y = y, .n = n, .F = F, .K = K};
  if (opt) s.opt = *opt;
  else tl_shortcut_options_default(&s.opt);
  if (s.opt.max_bins < 2 || s.opt.max_bins > 256) s.opt.max_bins = 256;
  if (s.opt.min_leaf < 1) s.opt.min_leaf = 1;

  // Bin every feature once, so each node costs a histogram pass.
  s.edges = tl_xmalloc((size_t)F * 256 * sizeof *s.edges);
  s.nb = tl_xcalloc((size_t)F, sizeof *s.nb);
  float *col = tl_xmalloc((size_t)n * sizeof *col);
  make_edges(&s, X, col);
  free(col);
  s.xb = tl_xmalloc((size_t)n * (size_t)F);
  for (int64_t i = 0; i < n; i++)
    for (int f = 0; f < F; f++)
      s.xb[i * F + f] = (uint8_t)bin_of(s.edges + (size_t)f * 256, s.nb[f], X[i * F + f]);

  s.w = tl_xcalloc((size_t)K, sizeof *s.w);
  s.hist = tl_xcalloc((size_t)256 * K, sizeof *s.hist);
  s.cnt = tl_xcalloc(256, sizeof *s.cnt);
  s.left = tl_xcalloc((size_t)K, sizeof *s.left);
  s.total = tl_xcalloc((size_t)K, sizeof *s.total);
  balance_weights(&s);

  tl_shortcut_tree *t = tl_xcalloc(1, sizeof *t);
  t->F = F, t->K = K;
  int64_t *idx = tl_xmalloc((size_t)n * sizeof *idx);
  for (int64_t i = 0; i < n; i++) idx[i] = i;
  grow(&s, t, idx, n, 0);

  free(idx);
  free(s.edges), free(s.nb), free(s.xb), free(s.w);
  free(s.hist), free(s.cnt), free(s.left), free(s.total);
  return t;
}

void tl_shortcut_predict(const tl_shortcut_tree *t, const float *X, int64_t n, int32_t *y_pred) {
  for (int64_t i = 0; i < n; i++) {
    const float *x = X + i * t->F;
    int k = 0;
    while (t->nodes[k].feature >= 0)
      k = x[t->nodes[k].feature] <= t->nodes[k].thr ? t->nodes[k].left : t->nodes[k].right;
    y_pred[i] = t->nodes[k].cls;
  }
}

int tl_shortcut_tree_nodes(const tl_shortcut_tree *t) { return t->n_nodes; }
int tl_shortcut_tree_root_feature(const tl_shortcut_tree *t) { return t->nodes[0].feature; }

void tl_shortcut_tree_free(tl_shortcut_tree *t) {
  if (!t) return;
  free(t->nodes);
  free(t);
}

// --- the whole audit ----------------------------------------------------------

static float *rows_features(const tl_shortcut_detok *d, const tl_shortcut_rows *rows) {
  float *X = tl_xmalloc((size_t)rows->n * TL_SC_NUM_FEATURES * sizeof *X);
  for (int64_t i = 0; i < rows->n; i++)
    tl_shortcut_row_features(d, rows->ids + i * rows->seq_len, rows->seq_len,
                             X + i * TL_SC_NUM_FEATURES);
  return X;
}

tl_status tl_shortcut_audit(const tl_shortcut_detok *d, const tl_shortcut_rows *train,
                            const tl_shortcut_rows *test, int K, tl_shortcut_result *r) {
  memset(r, 0, sizeof *r);
  r->root_feature = -1;

  // Fit on the train rows' header fields only.
  float *Xtr = rows_features(d, train);
  tl_shortcut_tree *t = tl_shortcut_fit(Xtr, train->labels, train->n, TL_SC_NUM_FEATURES, K,
                                        NULL);
  free(Xtr);
  if (!t) return TL_ERR;
  r->tree_nodes = tl_shortcut_tree_nodes(t);
  r->root_feature = tl_shortcut_tree_root_feature(t);

  // Score on the same test rows as the model.
  float *Xte = rows_features(d, test);
  r->y_pred = tl_xmalloc((size_t)(test->n > 0 ? test->n : 1) * sizeof *r->y_pred);
  tl_shortcut_predict(t, Xte, test->n, r->y_pred);
  free(Xte);
  tl_shortcut_tree_free(t);
  if (tl_metrics_compute(test->labels, r->y_pred, test->n, K, &r->metrics) != TL_OK) {
    tl_shortcut_result_free(r);
    return TL_ERR;
  }
  return TL_OK;
}

void tl_shortcut_result_free(tl_shortcut_result *r) {
  if (!r) return;
  tl_metrics_free(&r->metrics);
  free(r->y_pred);
  memset(r, 0, sizeof *r);
  r->root_feature = -1;
}
