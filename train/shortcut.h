// shortcut.h: the shortcut audit, a header-only baseline classifier.
//
// Beside every model F1, tl reports the F1 of a deliberately simple classifier
// that sees header fields only, never a payload byte. When it scores close to
// the model, the model has little to show beyond leftovers of the headers
// (lengths, TTLs, windows, flags) that the header policy kept.
//
// Input: the token rows of a packet or flow shard. Rows are [CLS] followed by
// the ET-BERT byte bigrams of one or more packets (tokenizer.h): the bigram of
// bytes (b0, b1) at stride one byte, so a packet's bytes are the high bytes of
// its tokens plus the low byte of its last token. A packet ends at any special
// token ([SEP], [PAD], ...), where two neighbouring bigrams do not overlap (the
// low byte of one differs from the high byte of the next; tokens never span two
// packets), or after max_packet_bytes bytes when that is given.
//
// Features, per packet, for the first TL_SC_MAX_PACKETS packets of a row (a
// missing packet or a field the packet does not have reads -1):
//   ip_version, ip_header_len (IPv6: with extension headers), ip_total_len,
//   tos (IPv6: traffic class), ip_id (IPv6: flow label), ip_flags (DF/MF),
//   ttl (hop limit), protocol (next header after extensions),
//   l4_header_len (TCP data offset, UDP 8), tcp_flags, tcp_window,
//   src_port, dst_port (zero under the default anonymous policy),
//   udp_length, payload_len (from the IP lengths, not the bytes kept),
//   tcp_first_option (kind of the first TCP option, e.g. 2 = MSS).
// plus, once per row, the number of packets found.
// Not seen: addresses, checksums, TCP sequence and acknowledgement numbers,
// option contents, any payload byte, timing and direction (a shard row does
// not record them).
//
// Classifier: a CART decision tree (Gini impurity, class-balanced sample
// weights so a rare class counts as much as a common one, features binned into
// at most 256 quantile bins, depth and leaf-size limits).
#pragma once
#include <stddef.h>
#include <stdint.h>

#include "core/log.h"
#include "data/tokenizer.h"
#include "train/metrics.h"

enum {
  TL_SC_MAX_PACKETS = 5,
  TL_SC_PACKET_FEATURES = 16,
  TL_SC_NUM_FEATURES = 1 + TL_SC_MAX_PACKETS * TL_SC_PACKET_FEATURES, // 81
};

// Name of feature j (0 <= j < TL_SC_NUM_FEATURES), e.g. "p2.ttl"; static string.
const char *tl_shortcut_feature_name(int j);

// Writes the TL_SC_PACKET_FEATURES header fields of one packet (bytes from the
// IP header on, n of them, possibly cut short) into feat; fields the bytes do
// not reach, or the packet does not have, read -1.
void tl_shortcut_packet_features(const uint8_t *pkt, size_t n, float *feat);

// Turns token ids back into bytes. tok == NULL means the native vocabulary;
// a published vocabulary needs its table inverted (ids of absent bigrams and
// [UNK] take their bytes from the neighbouring tokens). Free with
// tl_shortcut_detok_free().
typedef struct tl_shortcut_detok tl_shortcut_detok;
tl_shortcut_detok *tl_shortcut_detok_new(const tl_tokenizer *tok, int max_packet_bytes);
void tl_shortcut_detok_free(tl_shortcut_detok *d); // accepts NULL

// Splits one row of len token ids into packets (rules above) and writes the
// TL_SC_NUM_FEATURES features into feat. Returns the number of packets found.
int tl_shortcut_row_features(const tl_shortcut_detok *d, const int32_t *ids, int len,
                             float *feat);

// Recovers the bytes of the packets of a row: writes at most cap bytes into
// out, the packet starts into starts[0..max_pkts] (starts[k] = end of the last
// packet), and returns the number of packets (at most max_pkts).
int tl_shortcut_row_bytes(const tl_shortcut_detok *d, const int32_t *ids, int len,
                          uint8_t *out, size_t cap, size_t *starts, int max_pkts);

// --- the tree -----------------------------------------------------------------

typedef struct tl_shortcut_options {
  int max_depth;      // 12
  int min_leaf;       // 3 rows (unweighted) at least in each leaf
  int max_bins;       // 256 (at most 256)
} tl_shortcut_options;

void tl_shortcut_options_default(tl_shortcut_options *o);

typedef struct tl_shortcut_tree tl_shortcut_tree;

// Fits a tree to X[n, F] (row-major) with labels y[n] in [0, K). Returns the
// tree (free with tl_shortcut_tree_free) or NULL with tl_last_error() set when
// n < 1 or a label is out of range.
tl_shortcut_tree *tl_shortcut_fit(const float *X, const int32_t *y, int64_t n, int F, int K,
                                  const tl_shortcut_options *opt);
// Predicts the class of each of the n rows of X[n, F] into y_pred[n].
void tl_shortcut_predict(const tl_shortcut_tree *t, const float *X, int64_t n, int32_t *y_pred);
int tl_shortcut_tree_nodes(const tl_shortcut_tree *t);
// The feature the root splits on (-1 for a single leaf): the strongest leftover.
int tl_shortcut_tree_root_feature(const tl_shortcut_tree *t);
void tl_shortcut_tree_free(tl_shortcut_tree *t); // accepts NULL

// --- the whole audit ----------------------------------------------------------

// A set of rows: ids[n * seq_len] and labels[n].
typedef struct tl_shortcut_rows {
  const int32_t *ids;
  const int32_t *labels;
  int64_t n;
  int seq_len;
} tl_shortcut_rows;

typedef struct tl_shortcut_result {
  tl_metrics metrics;   // on the test rows
  int32_t *y_pred;      // [test n]
  int tree_nodes;
  int root_feature;     // -1 when the tree is a single leaf
} tl_shortcut_result;

// Fits the baseline on train, scores it on test (K classes); fills r (free with
// tl_shortcut_result_free). Returns TL_ERR with tl_last_error() set on bad labels
// or an empty train set.
tl_status tl_shortcut_audit(const tl_shortcut_detok *d, const tl_shortcut_rows *train,
                            const tl_shortcut_rows *test, int K, tl_shortcut_result *r);
void tl_shortcut_result_free(tl_shortcut_result *r); // accepts a zeroed struct
