// test_dataset.c: synthetic samples through the dataset builder into shards and
// back through the reader. Expected rows are rebuilt here from the packet bytes
// with the token formula of the contract (5 + (b0 << 8 | b1)), not with the
// tokenizer under test.
#include <criterion/criterion.h>
#include <dirent.h>
#include <hdf5.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "data/dataset.h"
#include "data/dataset_vocab.h"
#include "data/shards.h"

enum { PAD = 0, SEP = 1, CLS = 2 };

// --- synthetic traffic: bytes and lengths are pure functions of their indexes

static uint8_t byte_at(uint64_t flow, int pkt, int j) {
  uint64_t x = flow * 0x9E3779B97F4A7C15ULL ^ (uint64_t)(pkt + 1) * 0xC2B2AE3D27D4EB4FULL ^
               (uint64_t)(j + 1) * 0x165667B19E3779F9ULL;
  x ^= x >> 29;
  x *= 0xBF58476D1CE4E5B9ULL;
  x ^= x >> 32;
  return (uint8_t)x;
}

// 1..150 bytes: covers 1-byte packets, short ones and ones past packet_bytes.
static size_t len_at(uint64_t flow, int pkt) { return 1 + (size_t)((flow * 7 + pkt * 13) % 150); }

static uint64_t flow_id_of(int i) { return 1000003ULL * (uint64_t)i + 17; }

typedef struct {
  uint8_t *bytes[16];
  size_t lens[16];
  int n;
} packets;

static void make_packets(packets *p, uint64_t flow, int first_pkt, int n) {
  p->n = n;
  for (int k = 0; k < n; k++) {
    p->lens[k] = len_at(flow, first_pkt + k);
    p->bytes[k] = malloc(p->lens[k]);
    for (size_t j = 0; j < p->lens[k]; j++) p->bytes[k][j] = byte_at(flow, first_pkt + k, (int)j);
  }
}

static void free_packets(packets *p) {
  for (int k = 0; k < p->n; k++) free(p->bytes[k]);
}

// Bigram tokens of packets [first, first + n) of a flow, each cut to pb bytes,
// concatenated; returns the count.
static int ref_tokens(uint64_t flow, int first, int n, int pb, int32_t *out) {
  int k = 0;
  for (int p = first; p < first + n; p++) {
    int len = (int)len_at(flow, p);
    if (pb > 0 && len > pb) len = pb;
    for (int j = 0; j + 1 < len; j++)
      out[k++] = 5 + (byte_at(flow, p, j) << 8 | byte_at(flow, p, j + 1));
  }
  return k;
}

// --- reading every row of a split back

typedef struct {
  int64_t n;
  int L;
  int32_t *tokens, *segments, *lengths, *labels, *file_index;
  int64_t *flow_ids;
} table;

static table read_split(const char *dir, const char *split) {
  table t = {0};
  tl_shards *s = tl_shards_open(dir, split);
  cr_assert_not_null(s, "%s", tl_last_error());
  t.n = tl_shards_rows(s);
  t.L = tl_shards_seq_len(s);
  size_t n = (size_t)(t.n ? t.n : 1);
  t.tokens = malloc(n * t.L * sizeof(int32_t));
  t.segments = malloc(n * t.L * sizeof(int32_t));
  t.lengths = malloc(n * sizeof(int32_t));
  t.labels = malloc(n * sizeof(int32_t));
  t.file_index = malloc(n * sizeof(int32_t));
  t.flow_ids = malloc(n * sizeof(int64_t));
  tl_shard_rows out = {t.tokens, t.segments, t.lengths, t.labels, t.flow_ids, t.file_index};
  cr_assert_eq(tl_shards_read(s, 0, t.n, &out), TL_OK, "%s", tl_last_error());
  tl_shards_close(s);
  return t;
}

static void free_table(table *t) {
  free(t->tokens);
  free(t->segments);
  free(t->lengths);
  free(t->labels);
  free(t->file_index);
  free(t->flow_ids);
}

static char *make_dir(void) {
  char *d = strdup("/tmp/tl-test-ds-XXXXXX");
  cr_assert_not_null(mkdtemp(d));
  return d;
}

static void remove_dir(char *d) {
  char cmd[256];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", d);
  cr_assert_eq(system(cmd), 0);
  free(d);
}

static const char *g_labels[] = {"alpha", "beta", "gamma", "delta"};
static const char *g_files[] = {"a.pcap", "b.pcap", "c.pcap", "d.pcap", "e.pcap",
                                "f.pcap", "g.pcap", "h.pcap", "i.pcap", "j.pcap"};

static const tl_dataset_summary *finish(tl_dataset_builder *b) {
  const tl_dataset_summary *sum = NULL;
  cr_assert_eq(tl_dataset_builder_finish(b, &sum), TL_OK, "%s", tl_last_error());
  return sum;
}

// --- classification rows

// Packet task: flow i of class i % 3 has 1 + i % 5 packets, one row each.
static int g_compress; // deflate level of the sets build_packet_set writes

// Builds the set; TL_ERR (tl_last_error() set) at the first failure. No
// assertion inside, so a forked child can run it too.
static tl_status try_build_packet_set(const char *dir, uint64_t seed, tl_split_policy policy,
                                      int flows, int seq_len) {
  tl_dataset_options o;
  tl_dataset_options_default(&o, TL_TASK_PACKET);
  o.out_dir = dir;
  o.seq_len = seq_len;
  o.packet_bytes = 64;
  o.seed = seed;
  o.split = policy;
  o.min_per_class = 1;
  o.rows_per_shard = 50;
  o.compress = g_compress;
  tl_dataset_builder *b = tl_dataset_builder_open(&o, g_labels, 3, g_files, 10);
  tl_status st = b ? TL_OK : TL_ERR;
  for (int i = 0; i < flows && st == TL_OK; i++) {
    packets p;
    make_packets(&p, flow_id_of(i), 0, 1 + i % 5);
    for (int k = 0; k < p.n && st == TL_OK; k++) {
      const uint8_t *one[1] = {p.bytes[k]};
      st = tl_dataset_add_sample(b, i % 3, flow_id_of(i), i % 10, one, &p.lens[k], 1);
    }
    free_packets(&p);
  }
  if (st == TL_OK) st = tl_dataset_builder_finish(b, NULL);
  tl_dataset_builder_free(b);
  return st;
}

static void build_packet_set(const char *dir, uint64_t seed, tl_split_policy policy, int flows,
                             int seq_len) {
  cr_assert_eq(try_build_packet_set(dir, seed, policy, flows, seq_len), TL_OK, "%s",
               tl_last_error());
}

// The expected row of packet k of flow i: [CLS] bigrams, cut and padded.
static void expected_packet_row(int i, int k, int L, int32_t *row, int *len) {
  int32_t tok[256];
  int n = ref_tokens(flow_id_of(i), k, 1, 64, tok);
  *len = 1 + (n < L - 1 ? n : L - 1);
  row[0] = CLS;
  for (int j = 1; j < L; j++) row[j] = j < *len ? tok[j - 1] : PAD;
}

Test(dataset, packet_rows_are_exact) {
  char *dir = make_dir();
  const int flows = 60, L = 40;
  build_packet_set(dir, 5, TL_SPLIT_BY_FLOW, flows, L);
  // Each (flow, packet) must appear exactly once across the splits.
  int used[60][5] = {{0}};
  int64_t total = 0;
  for (int s = 0; s < 3; s++) {
    table t = read_split(dir, (const char *[]){"train", "valid", "test"}[s]);
    for (int64_t r = 0; r < t.n; r++) {
      int i = (int)((t.flow_ids[r] - 17) / 1000003);
      cr_assert_eq(flow_id_of(i), (uint64_t)t.flow_ids[r]);
      cr_assert_eq(t.labels[r], i % 3, "labels keep their order when none is dropped");
      cr_assert_eq(t.file_index[r], i % 10);
      int32_t want[64];
      int len = 0, match = -1;
      for (int k = 0; k < 1 + i % 5 && match < 0; k++) {
        expected_packet_row(i, k, L, want, &len);
        if (!used[i][k] && memcmp(want, t.tokens + r * L, L * sizeof(int32_t)) == 0) match = k;
      }
      cr_assert(match >= 0, "row %lld of flow %d matches none of its packets", (long long)r, i);
      used[i][match] = 1;
      cr_assert_eq(t.lengths[r], len);
      for (int j = 0; j < L; j++) cr_assert_eq(t.segments[r * L + j], j < len ? 1 : 0);
    }
    total += t.n;
    free_table(&t);
  }
  int64_t want_total = 0;
  for (int i = 0; i < flows; i++) want_total += 1 + i % 5;
  cr_assert_eq(total, want_total);
  remove_dir(dir);
}

Test(dataset, flow_rows_concatenate_first_packets) {
  char *dir = make_dir();
  const int L = 64, PB = 16;
  tl_dataset_options o;
  tl_dataset_options_default(&o, TL_TASK_FLOW);
  o.out_dir = dir;
  o.seq_len = L;
  o.packet_bytes = PB;
  o.flow_packets = 5;
  o.min_per_class = 1;
  tl_dataset_builder *b = tl_dataset_builder_open(&o, g_labels, 2, g_files, 10);
  cr_assert_not_null(b);
  for (int i = 0; i < 40; i++) {
    packets p;
    make_packets(&p, flow_id_of(i), 0, 1 + i % 8); // up to 8 packets: only 5 count
    cr_assert_eq(tl_dataset_add_sample(b, i % 2, flow_id_of(i), 0,
                                       (const uint8_t *const *)p.bytes, p.lens, p.n),
                 TL_OK);
    free_packets(&p);
  }
  finish(b);
  tl_dataset_builder_free(b);

  int seen = 0;
  for (int s = 0; s < 3; s++) {
    table t = read_split(dir, (const char *[]){"train", "valid", "test"}[s]);
    for (int64_t r = 0; r < t.n; r++) {
      int i = (int)((t.flow_ids[r] - 17) / 1000003);
      int32_t tok[1024];
      int n_pkts = 1 + i % 8 < 5 ? 1 + i % 8 : 5;
      int n = ref_tokens(flow_id_of(i), 0, n_pkts, PB, tok);
      int len = 1 + (n < L - 1 ? n : L - 1);
      cr_assert_eq(t.lengths[r], len, "flow %d", i);
      cr_assert_eq(t.tokens[r * L], CLS);
      for (int j = 1; j < L; j++)
        cr_assert_eq(t.tokens[r * L + j], j < len ? tok[j - 1] : PAD, "flow %d pos %d", i, j);
      seen++;
    }
    free_table(&t);
  }
  cr_assert_eq(seen, 40);
  remove_dir(dir);
}

// --- splits

// Label and split of every flow seen in the shards; fails on a flow in two splits.
static void flows_by_split(const char *dir, int64_t *flow_split, int n_flows, int64_t rows[3][4]) {
  for (int i = 0; i < n_flows; i++) flow_split[i] = -1;
  for (int s = 0; s < 3; s++) {
    table t = read_split(dir, (const char *[]){"train", "valid", "test"}[s]);
    for (int64_t r = 0; r < t.n; r++) {
      int i = (int)((t.flow_ids[r] - 17) / 1000003);
      cr_assert(flow_split[i] < 0 || flow_split[i] == s, "flow %d in splits %lld and %d", i,
                (long long)flow_split[i], s);
      flow_split[i] = s;
      if (rows) rows[s][t.labels[r]]++;
    }
    free_table(&t);
  }
}

// Flow task, 100 flows per class: the midpoint rule gives exactly 80/10/10.
static void build_flow_set(const char *dir, uint64_t seed, tl_split_policy policy) {
  tl_dataset_options o;
  tl_dataset_options_default(&o, TL_TASK_FLOW);
  o.out_dir = dir;
  o.seq_len = 32;
  o.seed = seed;
  o.split = policy;
  o.rows_per_shard = 64;
  tl_dataset_builder *b = tl_dataset_builder_open(&o, g_labels, 3, g_files, 10);
  cr_assert_not_null(b);
  for (int i = 0; i < 300; i++) {
    packets p;
    make_packets(&p, flow_id_of(i), 0, 2);
    cr_assert_eq(tl_dataset_add_sample(b, i % 3, flow_id_of(i), (i / 3) % 10,
                                       (const uint8_t *const *)p.bytes, p.lens, p.n),
                 TL_OK);
    free_packets(&p);
  }
  finish(b);
  tl_dataset_builder_free(b);
}

Test(dataset, split_by_flow_is_stratified_and_disjoint) {
  char *dir = make_dir();
  build_flow_set(dir, 11, TL_SPLIT_BY_FLOW);
  int64_t flow_split[300], rows[3][4] = {{0}};
  flows_by_split(dir, flow_split, 300, rows);
  for (int c = 0; c < 3; c++) {
    cr_assert_eq(rows[0][c], 80, "class %d train %lld", c, (long long)rows[0][c]);
    cr_assert_eq(rows[1][c], 10);
    cr_assert_eq(rows[2][c], 10);
  }
  // The packet task with many rows per flow: flows stay whole, shares near 8:1:1.
  char *dir2 = make_dir();
  build_packet_set(dir2, 3, TL_SPLIT_BY_FLOW, 600, 24);
  int64_t fs2[600], rows2[3][4] = {{0}};
  flows_by_split(dir2, fs2, 600, rows2);
  for (int c = 0; c < 3; c++) {
    double n = (double)(rows2[0][c] + rows2[1][c] + rows2[2][c]);
    cr_assert(rows2[0][c] / n > 0.75 && rows2[0][c] / n < 0.85, "class %d", c);
    cr_assert(rows2[2][c] / n > 0.06 && rows2[2][c] / n < 0.14, "class %d", c);
  }
  remove_dir(dir);
  remove_dir(dir2);
}

Test(dataset, split_by_file_keeps_files_whole) {
  char *dir = make_dir();
  build_flow_set(dir, 11, TL_SPLIT_BY_FILE);
  int file_split[3][10];
  memset(file_split, -1, sizeof file_split);
  for (int s = 0; s < 3; s++) {
    table t = read_split(dir, (const char *[]){"train", "valid", "test"}[s]);
    for (int64_t r = 0; r < t.n; r++) {
      int c = t.labels[r], f = t.file_index[r];
      cr_assert(file_split[c][f] < 0 || file_split[c][f] == s, "file %d of class %d split", f, c);
      file_split[c][f] = s;
    }
    free_table(&t);
  }
  // Ten files per class, one file's flows per unit: 8 files train, 1 valid, 1 test.
  for (int c = 0; c < 3; c++) {
    int n[3] = {0};
    for (int f = 0; f < 10; f++) n[file_split[c][f]]++;
    cr_assert(n[0] == 8 && n[1] == 1 && n[2] == 1, "class %d: %d %d %d", c, n[0], n[1], n[2]);
  }
  remove_dir(dir);
}

Test(dataset, split_by_packet_mixes_flows_but_keeps_shares) {
  char *dir = make_dir();
  build_packet_set(dir, 3, TL_SPLIT_BY_PACKET, 300, 24);
  int64_t per[3][3] = {{0}};
  int64_t first_split[300];
  int mixed = 0;
  for (int i = 0; i < 300; i++) first_split[i] = -1;
  for (int s = 0; s < 3; s++) {
    table t = read_split(dir, (const char *[]){"train", "valid", "test"}[s]);
    for (int64_t r = 0; r < t.n; r++) {
      int i = (int)((t.flow_ids[r] - 17) / 1000003);
      if (first_split[i] >= 0 && first_split[i] != s) mixed++;
      first_split[i] = s;
      per[t.labels[r]][s]++;
    }
    free_table(&t);
  }
  cr_assert(mixed > 0, "a per-packet split spreads flows over splits");
  for (int c = 0; c < 3; c++) {
    int64_t n = per[c][0] + per[c][1] + per[c][2];
    // Rows are the units: the shares are exact up to rounding.
    cr_assert(llabs(per[c][0] - (int64_t)(0.8 * n)) <= 1, "class %d", c);
    cr_assert(llabs(per[c][1] - (int64_t)(0.1 * n)) <= 1, "class %d", c);
  }
  remove_dir(dir);
}

// --- caps and minimums

Test(dataset, cap_spreads_over_flows_and_min_drops_classes) {
  char *dir = make_dir();
  tl_dataset_options o;
  tl_dataset_options_default(&o, TL_TASK_PACKET);
  o.out_dir = dir;
  o.seq_len = 16;
  o.max_per_class = 55;
  o.min_per_class = 10;
  tl_dataset_builder *b = tl_dataset_builder_open(&o, g_labels, 4, g_files, 10);
  cr_assert_not_null(b);
  // alpha: 20 flows of 10 packets; beta: one flow of 100 packets;
  // gamma: 9 rows (dropped); delta: none (dropped).
  int flow = 0;
  for (int c = 0; c < 3; c++) {
    int n_flows = c == 0 ? 20 : 1, n_pkts = c == 0 ? 10 : c == 1 ? 100 : 9;
    for (int f = 0; f < n_flows; f++, flow++) {
      for (int k = 0; k < n_pkts; k++) {
        uint8_t pkt[4] = {(uint8_t)k, (uint8_t)flow, 0x45, 0};
        const uint8_t *one[1] = {pkt};
        size_t len = 4;
        cr_assert_eq(tl_dataset_add_sample(b, c, flow_id_of(flow), 0, one, &len, 1), TL_OK);
      }
    }
  }
  const tl_dataset_summary *sum = finish(b);
  cr_assert_eq(sum->n_labels, 4);
  cr_assert_eq(sum->n_dropped_labels, 2);
  int64_t kept[4] = {0};
  for (int c = 0; c < 4; c++)
    for (int s = 0; s < 3; s++) kept[c] += sum->rows[c][s];
  cr_assert_eq(kept[0], 55);
  cr_assert_eq(kept[1], 55);
  cr_assert_eq(kept[2], 0);
  cr_assert_eq(kept[3], 0);
  cr_assert_eq(sum->total_rows, 110);
  // alpha's kept flows go round all three splits (beta's single flow can only
  // be in one split).
  for (int sp = 0; sp < 3; sp++) cr_assert(sum->rows[0][sp] > 0, "alpha has rows in split %d", sp);
  tl_dataset_builder_free(b);

  // Shards carry only the kept classes, renumbered.
  tl_shards *s = tl_shards_open(dir, "train");
  cr_assert_eq(tl_shards_n_labels(s), 2);
  cr_assert_str_eq(tl_shards_label_name(s, 0), "alpha");
  cr_assert_str_eq(tl_shards_label_name(s, 1), "beta");
  tl_shards_close(s);
  int rows_of_flow[32] = {0}, max_k_beta = 0;
  for (int sp = 0; sp < 3; sp++) {
    table t = read_split(dir, (const char *[]){"train", "valid", "test"}[sp]);
    for (int64_t r = 0; r < t.n; r++) {
      int i = (int)((t.flow_ids[r] - 17) / 1000003);
      cr_assert(t.labels[r] == 0 || t.labels[r] == 1);
      rows_of_flow[i]++;
      // Token 1 is the bigram (k, flow): recover the packet number k.
      int k = (t.tokens[r * t.L + 1] - 5) >> 8;
      if (t.labels[r] == 1 && k > max_k_beta) max_k_beta = k;
    }
    free_table(&t);
  }
  // The cap spreads alpha's 55 rows over all 20 flows: 2 each (40), then one
  // more for 15 of them.
  int with3 = 0, with2 = 0;
  for (int i = 0; i < 20; i++) {
    if (rows_of_flow[i] == 3) with3++;
    else if (rows_of_flow[i] == 2) with2++;
  }
  cr_assert_eq(with3, 15);
  cr_assert_eq(with2, 5);
  // beta's one flow is cut to 55 rows spread over the whole flow, not its start.
  cr_assert_eq(rows_of_flow[20], 55);
  cr_assert(max_k_beta >= 90, "rows spread over the flow (last packet %d)", max_k_beta);
  remove_dir(dir);
}

Test(dataset, no_class_left_is_an_error) {
  char *dir = make_dir();
  tl_dataset_options o;
  tl_dataset_options_default(&o, TL_TASK_PACKET);
  o.out_dir = dir;
  o.min_per_class = 5;
  tl_dataset_builder *b = tl_dataset_builder_open(&o, g_labels, 2, g_files, 10);
  uint8_t pkt[3] = {1, 2, 3};
  const uint8_t *one[1] = {pkt};
  size_t len = 3;
  cr_assert_eq(tl_dataset_add_sample(b, 0, 1, 0, one, &len, 1), TL_OK);
  cr_assert_eq(tl_dataset_add_sample(b, 2, 1, 0, one, &len, 1), TL_ERR, "label out of range");
  cr_assert_eq(tl_dataset_add_sample(b, 1, 1, 0, one, &len, 1), TL_ERR, "flow changed label");
  cr_assert_eq(tl_dataset_add_sample(b, 0, 2, 10, one, &len, 1), TL_ERR, "file out of range");
  const tl_dataset_summary *sum;
  cr_assert_eq(tl_dataset_builder_finish(b, &sum), TL_ERR);
  cr_assert(strstr(tl_last_error(), "min_per_class") != NULL, "%s", tl_last_error());
  tl_dataset_builder_free(b);
  remove_dir(dir);
}

// --- pre-training pairs

// Flow f has 2 + f % 4 bursts; burst k has 1 + (f + k) % 4 packets, numbered
// 10 * k + p so that every burst has its own bytes.
static int burst_pkts(int f, int k) { return 1 + (f + k) % 4; }

static int burst_tokens(int f, int k, int pb, int32_t *out) {
  int n = 0;
  for (int p = 0; p < burst_pkts(f, k); p++)
    n += ref_tokens(flow_id_of(f), 10 * k + p, 1, pb, out + n);
  return n;
}

static void build_pretrain_split(const char *dir, uint64_t seed, int n_flows, int L,
                                 tl_split_policy policy) {
  tl_dataset_options o;
  tl_dataset_options_default(&o, TL_TASK_PRETRAIN);
  o.split = policy;
  o.out_dir = dir;
  o.seq_len = L;
  o.seed = seed;
  o.rows_per_shard = 100;
  tl_dataset_builder *b = tl_dataset_builder_open(&o, NULL, 0, g_files, 10);
  cr_assert_not_null(b, "%s", tl_last_error());
  for (int f = 0; f < n_flows; f++) {
    for (int k = 0; k < 2 + f % 4; k++) {
      packets p;
      p.n = burst_pkts(f, k);
      for (int q = 0; q < p.n; q++) {
        p.lens[q] = len_at(flow_id_of(f), 10 * k + q);
        p.bytes[q] = malloc(p.lens[q]);
        for (size_t j = 0; j < p.lens[q]; j++)
          p.bytes[q][j] = byte_at(flow_id_of(f), 10 * k + q, (int)j);
      }
      cr_assert_eq(tl_dataset_add_burst(b, flow_id_of(f), f % 10, (const uint8_t *const *)p.bytes,
                                        p.lens, p.n),
                   TL_OK);
      free_packets(&p);
    }
  }
  finish(b);
  tl_dataset_builder_free(b);
}

static void build_pretrain(const char *dir, uint64_t seed, int n_flows, int L) {
  build_pretrain_split(dir, seed, n_flows, L, TL_SPLIT_BY_FLOW);
}

// Whether b[0..n) is a prefix of the second half of some burst of a flow other
// than f that lies in split s; flow_split from the shards.
static int is_other_half(const int32_t *b, int n, int f, int n_flows, const int64_t *flow_split,
                         int s) {
  int32_t tok[2048];
  for (int g = 0; g < n_flows; g++) {
    if (g == f) continue;
    for (int k = 0; k < 2 + g % 4; k++) {
      int m = burst_tokens(g, k, 64, tok);
      if (m < 2) continue;
      int a = (m + 1) / 2;
      if (m - a >= n && memcmp(tok + a, b, n * sizeof *b) == 0) {
        cr_assert_eq(flow_split[g], s, "negative B from flow %d of another split", g);
        return 1;
      }
    }
  }
  return 0;
}

Test(dataset, pretrain_pairs_are_balanced_and_correct) {
  char *dir = make_dir();
  const int n_flows = 300, L = 64, avail = L - 3;
  build_pretrain(dir, 9, n_flows, L);
  int64_t flow_split[300];
  flows_by_split(dir, flow_split, n_flows, NULL);

  int64_t labels[2] = {0}, rows = 0, expected_rows = 0;
  int32_t tok[2048];
  for (int f = 0; f < n_flows; f++)
    for (int k = 0; k < 2 + f % 4; k++) expected_rows += burst_tokens(f, k, 64, tok) >= 2;
  for (int s = 0; s < 2; s++) {
    table t = read_split(dir, s ? "valid" : "train");
    for (int64_t r = 0; r < t.n; r++, rows++) {
      const int32_t *row = t.tokens + r * L, *seg = t.segments + r * L;
      int f = (int)((t.flow_ids[r] - 17) / 1000003), len = t.lengths[r];
      // Layout: [CLS] A [SEP] B [SEP] then padding; segments 1, 2, 0.
      int sep = 1;
      while (sep < len && row[sep] != SEP) sep++;
      int a_keep = sep - 1, b_keep = len - sep - 2;
      cr_assert_eq(row[0], CLS);
      cr_assert_eq(row[len - 1], SEP);
      cr_assert(a_keep >= 1 && b_keep >= 1 && len <= L);
      for (int j = 0; j < L; j++) {
        int want = j <= sep ? 1 : j < len ? 2 : 0;
        cr_assert_eq(seg[j], want, "row %lld pos %d", (long long)r, j);
        if (j >= len) cr_assert_eq(row[j], PAD);
      }
      // A is the first half of one of the flow's bursts.
      int match = -1, m = 0;
      for (int k = 0; k < 2 + f % 4 && match < 0; k++) {
        m = burst_tokens(f, k, 64, tok);
        int a = (m + 1) / 2;
        if (m >= 2 && a >= a_keep && memcmp(tok, row + 1, a_keep * sizeof *tok) == 0) match = k;
      }
      cr_assert(match >= 0, "A of row %lld is no burst of flow %d", (long long)r, f);
      int a_len = (m + 1) / 2, own_b = m - a_len;
      int lab = t.labels[r];
      labels[lab]++;
      if (lab == 0) {
        // Same origin: B is A's own second half; both whole when they fit.
        cr_assert_eq(memcmp(tok + a_len, row + sep + 1, b_keep * sizeof *tok), 0);
        if (a_len + own_b <= avail) cr_assert(a_keep == a_len && b_keep == own_b);
        else cr_assert_eq(a_keep + b_keep, avail, "long halves fill the row");
      } else {
        cr_assert(is_other_half(row + sep + 1, b_keep, f, n_flows, flow_split, s),
                  "B of row %lld is no other flow's half", (long long)r);
      }
      if (a_len <= avail - avail / 2) cr_assert_eq(a_keep, a_len, "short A never cut");
    }
    free_table(&t);
  }
  cr_assert_eq(rows, expected_rows, "one pair per burst of two tokens or more");
  // Balanced per split to within a row, plus the few negatives owed at the
  // start, before the reservoirs hold halves of other flows.
  cr_assert(llabs(labels[0] - labels[1]) <= 6, "same-origin %lld, other %lld",
            (long long)labels[0], (long long)labels[1]);
  remove_dir(dir);
}

// --- determinism and the reader

static int files_equal(const char *a, const char *b) {
  char cmd[1400];
  snprintf(cmd, sizeof cmd, "cmp -s '%s' '%s'", a, b);
  return system(cmd) == 0;
}

Test(dataset, same_seed_same_bytes_other_seed_other_split) {
  char *d1 = make_dir(), *d2 = make_dir(), *d3 = make_dir();
  build_packet_set(d1, 77, TL_SPLIT_BY_FLOW, 200, 32);
  build_packet_set(d2, 77, TL_SPLIT_BY_FLOW, 200, 32);
  build_packet_set(d3, 78, TL_SPLIT_BY_FLOW, 200, 32);
  const char *names[] = {"manifest.json", "train-00000.h5", "train-00001.h5", "valid-00000.h5",
                         "test-00000.h5"};
  char a[600], b[600];
  for (int i = 0; i < 5; i++) {
    snprintf(a, sizeof a, "%s/%s", d1, names[i]);
    snprintf(b, sizeof b, "%s/%s", d2, names[i]);
    cr_assert(access(a, R_OK) == 0, "%s exists", a);
    cr_assert(files_equal(a, b), "%s differs between two runs", names[i]);
  }
  int64_t s1[200], s3[200];
  flows_by_split(d1, s1, 200, NULL);
  flows_by_split(d3, s3, 200, NULL);
  int differ = 0;
  for (int i = 0; i < 200; i++) differ += s1[i] != s3[i];
  cr_assert(differ > 10, "another seed moves flows (%d moved)", differ);
  remove_dir(d1);
  remove_dir(d2);
  remove_dir(d3);
}

Test(dataset, reader_ranges_rows_and_order) {
  char *dir = make_dir();
  build_packet_set(dir, 1, TL_SPLIT_BY_FLOW, 120, 32); // rows_per_shard 50: several files
  tl_shards *s = tl_shards_open(dir, "train");
  cr_assert_not_null(s);
  int64_t n = tl_shards_rows(s);
  cr_assert(n > 150, "train spans at least 4 shard files");
  cr_assert_str_eq(tl_shards_task(s), "packet");
  cr_assert_str_eq(tl_shards_tokenizer(s), "etbert-bigram");
  cr_assert_eq(tl_shards_vocab_size(s), 65541);
  int L = tl_shards_seq_len(s);
  int32_t *all = malloc(n * L * sizeof *all), *part = malloc(n * L * sizeof *part);
  int64_t *flows = malloc(n * sizeof *flows), *pflows = malloc(n * sizeof *pflows);
  cr_assert_eq(tl_shards_read(s, 0, n, &(tl_shard_rows){.tokens = all, .flow_ids = flows}), TL_OK);

  // A range across a file boundary equals the same slice of the full read.
  cr_assert_eq(tl_shards_read(s, 45, 60, &(tl_shard_rows){.tokens = part, .flow_ids = pflows}),
               TL_OK);
  cr_assert_eq(memcmp(part, all + 45 * L, 60 * L * sizeof *all), 0);
  cr_assert_eq(memcmp(pflows, flows + 45, 60 * sizeof *flows), 0);
  cr_assert_eq(tl_shards_read(s, n - 5, 6, &(tl_shard_rows){.tokens = part}), TL_ERR);

  // Row lists in any order, via the epoch order helper.
  int64_t *order = malloc(n * sizeof *order), *again = malloc(n * sizeof *again);
  tl_shards_order(n, tl_shards_chunk_rows(s), 3, 0, order);
  tl_shards_order(n, tl_shards_chunk_rows(s), 3, 0, again);
  cr_assert_eq(memcmp(order, again, n * sizeof *order), 0, "same seed and epoch");
  tl_shards_order(n, tl_shards_chunk_rows(s), 3, 1, again);
  cr_assert_neq(memcmp(order, again, n * sizeof *order), 0, "another epoch");
  char *hit = calloc(n, 1);
  for (int64_t i = 0; i < n; i++) {
    cr_assert(order[i] >= 0 && order[i] < n && !hit[order[i]], "a permutation");
    hit[order[i]] = 1;
  }
  tl_shard_rows both = {.tokens = part, .flow_ids = pflows};
  cr_assert_eq(tl_shards_read_rows(s, order, n, &both), TL_OK);
  for (int64_t i = 0; i < n; i++) {
    cr_assert_eq(pflows[i], flows[order[i]]);
    cr_assert_eq(memcmp(part + i * L, all + order[i] * L, L * sizeof *all), 0);
  }
  // A uniform order (blocks of one row) misses the block cache at every row.
  tl_shards_order(n, 1, 4, 0, order);
  cr_assert_eq(tl_shards_read_rows(s, order, n, &(tl_shard_rows){.tokens = part}), TL_OK);
  for (int64_t i = 0; i < n; i++)
    cr_assert_eq(memcmp(part + i * L, all + order[i] * L, L * sizeof *all), 0);
  int64_t bad = n;
  cr_assert_eq(tl_shards_read_rows(s, &bad, 1, &(tl_shard_rows){.tokens = part}), TL_ERR);
  tl_shards_close(s);
  cr_assert_null(tl_shards_open(dir, "nosuchsplit"));
  cr_assert_null(tl_shards_open("/nonexistent", "train"));
  free(all), free(part), free(flows), free(pflows), free(order), free(again), free(hit);
  remove_dir(dir);
}

Test(dataset, published_vocabulary_ids_reach_the_shards) {
  char *dir = make_dir();
  char vocab[600];
  snprintf(vocab, sizeof vocab, "%s/vocab.txt", dir);
  FILE *f = fopen(vocab, "w");
  fputs("[PAD]\n[SEP]\n[CLS]\n[UNK]\n[MASK]\n0\n##1\n4500\n0001\n", f);
  fclose(f);
  tl_dataset_options o;
  tl_dataset_options_default(&o, TL_TASK_PACKET);
  o.out_dir = dir;
  o.seq_len = 8;
  o.min_per_class = 1;
  tl_dataset_builder *b = tl_dataset_builder_open(&o, g_labels, 1, g_files, 1);
  cr_assert_eq(tl_dataset_builder_set_vocab(b, "/nonexistent/vocab.txt"), TL_ERR);
  cr_assert_eq(tl_dataset_builder_set_vocab(b, vocab), TL_OK, "%s", tl_last_error());
  uint8_t pkt[4] = {0x45, 0x00, 0x01, 0x02};
  const uint8_t *one[1] = {pkt};
  size_t len = 4;
  for (int i = 0; i < 10; i++)
    cr_assert_eq(tl_dataset_add_sample(b, 0, flow_id_of(i), 0, one, &len, 1), TL_OK);
  cr_assert_eq(tl_dataset_builder_set_vocab(b, vocab), TL_ERR, "too late");
  finish(b);
  tl_dataset_builder_free(b);
  tl_shards *s = tl_shards_open(dir, "train");
  cr_assert_str_eq(tl_shards_tokenizer(s), "etbert-published");
  cr_assert_eq(tl_shards_vocab_size(s), 9);
  int32_t row[8];
  cr_assert_eq(tl_shards_read(s, 0, 1, &(tl_shard_rows){.tokens = row}), TL_OK);
  // 4500 -> line 7, 0001 -> line 8, 0102 -> [UNK]; then padding.
  int32_t want[8] = {CLS, 7, 8, 3, PAD, PAD, PAD, PAD};
  cr_assert_eq(memcmp(row, want, sizeof want), 0, "%d %d %d %d", row[0], row[1], row[2], row[3]);
  tl_shards_close(s);
  remove_dir(dir);
}

Test(dataset, pretrain_split_by_file_keeps_negatives_inside_the_split) {
  char *dir = make_dir();
  const int n_flows = 200;
  build_pretrain_split(dir, 21, n_flows, 64, TL_SPLIT_BY_FILE);
  int64_t flow_split[200];
  flows_by_split(dir, flow_split, n_flows, NULL);
  int file_split[10];
  for (int f = 0; f < 10; f++) file_split[f] = -1;
  for (int i = 0; i < n_flows; i++) {
    if (flow_split[i] < 0) continue;
    int f = i % 10; // build_pretrain_split puts flow i in file i % 10
    cr_assert(file_split[f] < 0 || file_split[f] == flow_split[i], "file %d in two splits", f);
    file_split[f] = (int)flow_split[i];
  }
  // Every other-origin B comes from a flow of the row's own split.
  for (int s = 0; s < 2; s++) {
    table t = read_split(dir, s ? "valid" : "train");
    for (int64_t r = 0; r < t.n; r++) {
      if (t.labels[r] != 1) continue;
      const int32_t *row = t.tokens + r * t.L;
      int sep = 1;
      while (row[sep] != SEP) sep++;
      int f = (int)((t.flow_ids[r] - 17) / 1000003);
      cr_assert(is_other_half(row + sep + 1, t.lengths[r] - sep - 2, f, n_flows, flow_split, s));
    }
    free_table(&t);
  }
  remove_dir(dir);
}

// Reads a scalar or the first element of a string attribute (caller frees).
static char *string_attr(hid_t file, const char *name, int index) {
  hid_t a = H5Aopen(file, name, H5P_DEFAULT);
  cr_assert(a >= 0, "attribute %s", name);
  hid_t type = H5Tcopy(H5T_C_S1);
  H5Tset_size(type, H5T_VARIABLE);
  H5Tset_cset(type, H5T_CSET_UTF8); // HDF5 does not convert ASCII <-> UTF-8
  hid_t space = H5Aget_space(a);
  hssize_t n = H5Sget_simple_extent_npoints(space);
  char **v = calloc((size_t)(n > 0 ? n : 1), sizeof *v);
  cr_assert(H5Aread(a, type, v) >= 0);
  char *out = strdup(v[index]);
  H5Dvlen_reclaim(type, space, H5P_DEFAULT, v);
  free(v);
  H5Sclose(space);
  H5Tclose(type);
  H5Aclose(a);
  return out;
}

Test(dataset, shard_files_carry_the_documented_attributes) {
  char *dir = make_dir();
  build_packet_set(dir, 8, TL_SPLIT_BY_FLOW, 60, 32);
  char path[600];
  snprintf(path, sizeof path, "%s/valid-00000.h5", dir);
  hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
  cr_assert(f >= 0);
  const char *want[][2] = {{"format_version", "tl-shards/1"}, {"tokenizer", "etbert-bigram"},
                           {"task", "packet"},  {"split", "valid"},
                           {"split_policy", "flow"}, {"header_policy", "anonymous"}};
  for (int i = 0; i < 6; i++) {
    char *v = string_attr(f, want[i][0], 0);
    cr_assert_str_eq(v, want[i][1], "attribute %s", want[i][0]);
    free(v);
  }
  char *l2 = string_attr(f, "label_names", 2), *f9 = string_attr(f, "source_files", 9);
  cr_assert_str_eq(l2, "gamma");
  cr_assert_str_eq(f9, "j.pcap");
  free(l2), free(f9);
  int32_t vocab = 0, seq = 0;
  uint64_t seed = 0;
  hid_t a = H5Aopen(f, "vocab_size", H5P_DEFAULT);
  H5Aread(a, H5T_NATIVE_INT32, &vocab), H5Aclose(a);
  a = H5Aopen(f, "seq_len", H5P_DEFAULT);
  H5Aread(a, H5T_NATIVE_INT32, &seq), H5Aclose(a);
  a = H5Aopen(f, "split_seed", H5P_DEFAULT);
  H5Aread(a, H5T_NATIVE_UINT64, &seed), H5Aclose(a);
  cr_assert(vocab == 65541 && seq == 32 && seed == 8);

  // Datasets: types as documented, chunked, not compressed by default.
  const char *names[] = {"tokens", "segments", "length", "label", "flow_id", "file_index"};
  const size_t sizes[] = {4, 1, 4, 4, 8, 4};
  for (int i = 0; i < 6; i++) {
    hid_t d = H5Dopen2(f, names[i], H5P_DEFAULT);
    hid_t t = H5Dget_type(d), p = H5Dget_create_plist(d);
    cr_assert_eq(H5Tget_class(t), H5T_INTEGER, "%s", names[i]);
    cr_assert_eq(H5Tget_size(t), sizes[i], "%s", names[i]);
    cr_assert_eq(H5Pget_layout(p), H5D_CHUNKED);
    cr_assert_eq(H5Pget_nfilters(p), 0, "%s is stored as it is", names[i]);
    H5Pclose(p), H5Tclose(t), H5Dclose(d);
  }
  H5Fclose(f);
  remove_dir(dir);
}

// Long flows (hundreds of bursts, as SSH or one NTP conversation) must not fill
// the negative reservoir on their own: same- and other-origin pairs stay 50/50.
Test(dataset, pretrain_pairs_balanced_with_long_flows) {
  char *dir = make_dir();
  tl_dataset_options o;
  tl_dataset_options_default(&o, TL_TASK_PRETRAIN);
  o.out_dir = dir;
  o.seq_len = 64;
  o.seed = 5;
  tl_dataset_builder *b = tl_dataset_builder_open(&o, NULL, 0, g_files, 10);
  cr_assert_not_null(b, "%s", tl_last_error());
  for (int f = 0; f < 12; f++) {
    for (int k = 0; k < 150; k++) {
      uint8_t pkt[8];
      for (int j = 0; j < 8; j++) pkt[j] = (uint8_t)(f * 31 + k * 7 + j);
      const uint8_t *one[1] = {pkt};
      size_t len = sizeof pkt;
      cr_assert_eq(tl_dataset_add_burst(b, flow_id_of(f), 0, one, &len, 1), TL_OK);
    }
  }
  finish(b);
  tl_dataset_builder_free(b);
  for (int s = 0; s < 2; s++) {
    table t = read_split(dir, s ? "valid" : "train");
    int64_t other = 0;
    for (int64_t r = 0; r < t.n; r++) other += t.labels[r];
    // Within a row per flow the split holds (a pair's label is drawn in twos).
    if (t.n) cr_expect_leq(llabs(2 * other - t.n), 2, "%s: %lld of %lld other-origin",
                          s ? "valid" : "train", (long long)other, (long long)t.n);
    free_table(&t);
  }
  remove_dir(dir);
}

// Reads a whole int dataset of a shard file; the caller frees.
static int64_t *read_ints(const char *path, const char *name, hssize_t *n) {
  hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
  hid_t d = H5Dopen2(f, name, H5P_DEFAULT);
  hid_t s = H5Dget_space(d);
  *n = H5Sget_simple_extent_npoints(s);
  int64_t *v = calloc((size_t)*n, sizeof *v);
  cr_assert(H5Dread(d, H5T_NATIVE_INT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, v) >= 0, "%s", name);
  H5Sclose(s), H5Dclose(d), H5Fclose(f);
  return v;
}

Test(dataset, compressed_shards_hold_the_same_rows) {
  char *plain = make_dir(), *packed = make_dir();
  build_packet_set(plain, 8, TL_SPLIT_BY_FLOW, 60, 32);
  g_compress = 3;
  build_packet_set(packed, 8, TL_SPLIT_BY_FLOW, 60, 32);
  g_compress = 0;
  char a[600], b[600];
  snprintf(a, sizeof a, "%s/train-00000.h5", plain);
  snprintf(b, sizeof b, "%s/train-00000.h5", packed);

  // Every dataset is byte-shuffled then deflated at the level asked for.
  hid_t f = H5Fopen(b, H5F_ACC_RDONLY, H5P_DEFAULT);
  hid_t d = H5Dopen2(f, "tokens", H5P_DEFAULT), p = H5Dget_create_plist(d);
  cr_assert_eq(H5Pget_nfilters(p), 2);
  unsigned flags, cd[8];
  size_t n_cd = 8;
  cr_assert_eq(H5Pget_filter2(p, 0, &flags, &n_cd, cd, 0, NULL, NULL), H5Z_FILTER_SHUFFLE);
  n_cd = 8;
  cr_assert_eq(H5Pget_filter2(p, 1, &flags, &n_cd, cd, 0, NULL, NULL), H5Z_FILTER_DEFLATE);
  cr_assert(n_cd >= 1 && cd[0] == 3, "deflate level %u", cd[0]);
  H5Pclose(p), H5Dclose(d), H5Fclose(f);

  const char *names[] = {"tokens", "segments", "length", "label", "flow_id", "file_index"};
  for (int i = 0; i < 6; i++) {
    hssize_t na, nb;
    int64_t *va = read_ints(a, names[i], &na), *vb = read_ints(b, names[i], &nb);
    cr_assert(na == nb && na > 0 && memcmp(va, vb, (size_t)na * sizeof *va) == 0, "%s",
              names[i]);
    free(va), free(vb);
  }
  remove_dir(plain);
  remove_dir(packed);
}

// Byte contents of a file, for comparing shard sets (caller frees).
static char *slurp(const char *path, long *len) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  fseek(f, 0, SEEK_END);
  *len = ftell(f);
  fseek(f, 0, SEEK_SET);
  char *buf = malloc((size_t)*len + 1);
  cr_assert_eq(fread(buf, 1, (size_t)*len, f), (size_t)*len);
  fclose(f);
  return buf;
}

Test(dataset, an_interrupted_run_leaves_the_previous_set_whole) {
  char *dir = make_dir();
  build_packet_set(dir, 8, TL_SPLIT_BY_FLOW, 60, 32);
  char path[800];
  snprintf(path, sizeof path, "%s/train-00000.h5", dir);
  long before_len, after_len;
  char *before = slurp(path, &before_len);
  cr_assert(before);

  // A second run into the same folder that dies before its end (freed
  // without finish, as a kill would leave it) ...
  tl_dataset_options o;
  tl_dataset_options_default(&o, TL_TASK_PACKET);
  o.out_dir = dir;
  o.seq_len = 32;
  tl_dataset_builder *b = tl_dataset_builder_open(&o, g_labels, 3, g_files, 10);
  cr_assert_not_null(b, "%s", tl_last_error());
  // ... and one folder a killed run left behind, with its files.
  char stale[600];
  snprintf(stale, sizeof stale, "%s/.tl-prep-KILLED", dir);
  cr_assert_eq(mkdir(stale, 0755), 0);
  snprintf(path, sizeof path, "%s/rows.buckets", stale);
  FILE *junk = fopen(path, "w");
  fputs("junk", junk);
  fclose(junk);

  // One run per folder at a time.
  cr_assert_null(tl_dataset_builder_open(&o, g_labels, 3, g_files, 10));
  cr_assert(strstr(tl_last_error(), "another tl-prep"), "%s", tl_last_error());
  tl_dataset_builder_free(b);

  // The old set is untouched and complete.
  snprintf(path, sizeof path, "%s/train-00000.h5", dir);
  char *after = slurp(path, &after_len);
  cr_assert(after && after_len == before_len && !memcmp(before, after, (size_t)before_len));
  snprintf(path, sizeof path, "%s/manifest.json", dir);
  cr_assert_eq(access(path, F_OK), 0, "the manifest is still there");
  free(before), free(after);

  // The next run clears what the killed one left, then replaces the set.
  build_packet_set(dir, 9, TL_SPLIT_BY_FLOW, 60, 32);
  cr_assert_neq(access(stale, F_OK), 0, "stale temporary folder removed");
  snprintf(path, sizeof path, "%s/valid-00000.h5", dir);
  cr_assert_eq(access(path, F_OK), 0);
  DIR *d = opendir(dir);
  struct dirent *e;
  while ((e = readdir(d))) cr_assert(strncmp(e->d_name, ".tl-prep-", 9), "%s left", e->d_name);
  closedir(d);
  remove_dir(dir);
}

// The aftermath of a kill while the set built with seed 9 moved into dir over
// the set with seed 8: the old manifest gone, one new shard moved in (over its
// old namesake), the rest and the new manifest still in the temporary folder.
// Returns the temporary folder (static buffer).
static const char *killed_while_moving_in(const char *dir, const char *other) {
  static char tmp[700];
  char from[900], to[900];
  build_packet_set(dir, 8, TL_SPLIT_BY_FLOW, 60, 32);   // the previous set
  build_packet_set(other, 9, TL_SPLIT_BY_FLOW, 60, 32); // the new set, made elsewhere
  snprintf(tmp, sizeof tmp, "%s/.tl-prep-CRASHED", dir);
  cr_assert_eq(mkdir(tmp, 0755), 0);
  const char *moved = "train-00000.h5", *waiting[] = {"train-00001.h5", "valid-00000.h5",
                                                      "test-00000.h5", "manifest.json"};
  snprintf(to, sizeof to, "%s/manifest.json", dir);
  cr_assert_eq(unlink(to), 0);
  snprintf(from, sizeof from, "%s/%s", other, moved);
  snprintf(to, sizeof to, "%s/%s", dir, moved);
  cr_assert_eq(rename(from, to), 0);
  for (int i = 0; i < 4; i++) {
    snprintf(from, sizeof from, "%s/%s", other, waiting[i]);
    snprintf(to, sizeof to, "%s/%s", tmp, waiting[i]);
    if (access(from, F_OK) == 0) cr_assert_eq(rename(from, to), 0, "%s", waiting[i]);
  }
  return tmp;
}

// A run that stops before it builds anything (bad options, no inputs) still
// completes the move, so the folder is not left without a manifest.
Test(dataset, a_failing_run_still_completes_a_killed_move) {
  char *dir = make_dir(), *other = make_dir();
  const char *tmp = killed_while_moving_in(dir, other);
  tl_dataset_recover(dir);
  cr_assert_neq(access(tmp, F_OK), 0, "temporary folder gone");
  tl_shards *s = tl_shards_open(dir, "valid");
  cr_assert_not_null(s, "the completed set opens: %s", tl_last_error());
  tl_shards_close(s);
  remove_dir(dir), remove_dir(other);
}

// A run killed while it moved its finished set in: the next run completes the
// move, so the folder holds the new set whole (never a mix of the two).
Test(dataset, a_set_killed_while_moving_in_is_completed_by_the_next_run) {
  char *dir = make_dir(), *other = make_dir();
  const char *tmp = killed_while_moving_in(dir, other);
  char from[900], to[900];

  // The next run (here: opening a builder) finishes the move.
  tl_dataset_options o;
  tl_dataset_options_default(&o, TL_TASK_PACKET);
  o.out_dir = dir;
  tl_dataset_builder *b = tl_dataset_builder_open(&o, g_labels, 3, g_files, 10);
  cr_assert_not_null(b, "%s", tl_last_error());
  tl_dataset_builder_free(b);
  cr_assert_neq(access(tmp, F_OK), 0, "temporary folder gone");
  tl_shards *s = tl_shards_open(dir, "train");
  cr_assert_not_null(s, "the completed set opens: %s", tl_last_error());
  tl_shards_close(s);
  // Same rows as the new set built straight (seed 9).
  char *again = make_dir();
  build_packet_set(again, 9, TL_SPLIT_BY_FLOW, 60, 32);
  const char *files[] = {"manifest.json", "train-00000.h5", "valid-00000.h5"};
  for (int i = 0; i < 3; i++) {
    long na, nb;
    snprintf(from, sizeof from, "%s/%s", dir, files[i]);
    snprintf(to, sizeof to, "%s/%s", again, files[i]);
    char *a = slurp(from, &na), *c = slurp(to, &nb);
    cr_assert(a && c && na == nb && !memcmp(a, c, (size_t)na), "%s differs", files[i]);
    free(a), free(c);
  }
  remove_dir(dir), remove_dir(other), remove_dir(again);
}

// A write that fails (here: a file size limit, as a full disk) leaves the
// previous set as it was.
Test(dataset, a_failed_write_leaves_the_previous_set_whole) {
  char *dir = make_dir();
  build_packet_set(dir, 8, TL_SPLIT_BY_FLOW, 60, 32);
  char manifest[700];
  snprintf(manifest, sizeof manifest, "%s/manifest.json", dir);
  long n_before, n_after;
  char *before = slurp(manifest, &n_before);
  pid_t pid = fork();
  if (pid == 0) {
    signal(SIGXFSZ, SIG_IGN);
    struct rlimit small = {2048, 2048};
    setrlimit(RLIMIT_FSIZE, &small);
    _exit(try_build_packet_set(dir, 9, TL_SPLIT_BY_FLOW, 60, 32) == TL_OK ? 0 : 3);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 3, "the limited run must fail");
  char *after = slurp(manifest, &n_after);
  cr_assert(after && n_after == n_before && !memcmp(before, after, (size_t)n_before));
  tl_shards *s = tl_shards_open(dir, "valid");
  cr_assert_not_null(s, "%s", tl_last_error());
  tl_shards_close(s);
  free(before), free(after);
  remove_dir(dir);
}
