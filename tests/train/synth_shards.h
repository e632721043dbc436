// synth_shards.h: a small synthetic pre-training shard set for train tests,
// made through tl-prep's own dataset builder (data/dataset.h), so the tests read
// exactly the format tl-prep writes.
#pragma once
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "data/dataset.h"

// Bytes with structure a model can learn: each flow repeats a per-flow header
// with a counter, plus a few random bytes.
static inline void tl_test_packet(uint8_t *p, size_t n, uint64_t flow, int k, uint64_t *state) {
  for (size_t i = 0; i < n; i++) {
    *state = *state * 6364136223846793005ULL + 1442695040888963407ULL;
    uint8_t noise = (uint8_t)(*state >> 56);
    p[i] = i < 20 ? (uint8_t)(0x45 + i * 7 + (flow % 5) * 3) : (i < 24 ? (uint8_t)k : noise);
  }
}

// Writes a pre-training shard set with n_flows flows of bursts_per_flow bursts
// (2-3 packets of 24-64 bytes) into dir, rows_per_shard rows per file, seq_len
// tokens per row. Returns TL_OK or TL_ERR with tl_last_error() set.
static inline tl_status tl_test_make_pretrain_shards(const char *dir, int n_flows,
                                                     int bursts_per_flow, int seq_len,
                                                     int rows_per_shard, uint64_t seed) {
  tl_dataset_options o;
  tl_dataset_options_default(&o, TL_TASK_PRETRAIN);
  o.out_dir = dir;
  o.seq_len = seq_len;
  o.seed = seed;
  o.rows_per_shard = rows_per_shard;
  const char *files[] = {"synthetic.pcap"};
  tl_dataset_builder *b = tl_dataset_builder_open(&o, NULL, 0, files, 1);
  if (!b) return TL_ERR;
  uint64_t state = seed * 2654435761ULL + 1;
  uint8_t buf[3][64];
  const uint8_t *pkts[3] = {buf[0], buf[1], buf[2]};
  size_t lens[3];
  tl_status st = TL_OK;
  for (int f = 0; f < n_flows && st == TL_OK; f++) {
    for (int k = 0; k < bursts_per_flow && st == TL_OK; k++) {
      int n_pkts = 2 + (int)((state >> 33) % 2);
      for (int i = 0; i < n_pkts; i++) {
        lens[i] = 24 + (size_t)((state >> 40) % 41);
        tl_test_packet(buf[i], lens[i], (uint64_t)f, k * 3 + i, &state);
      }
      st = tl_dataset_add_burst(b, (uint64_t)f + 1, 0, pkts, lens, n_pkts);
    }
  }
  const tl_dataset_summary *summary;
  if (st == TL_OK) st = tl_dataset_builder_finish(b, &summary);
  tl_dataset_builder_free(b);
  return st;
}
