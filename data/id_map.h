// id_map.h: a small open-addressing hash map from 64-bit ids (flow ids) to
// non-negative indexes, for the dataset builder's per-flow tables.
#pragma once
#include <stdint.h>

typedef struct {
  uint64_t *keys;
  int64_t *vals; // -1 marks an empty slot
  int64_t cap;   // a power of two (0 before the first put)
  int64_t n;
} tl_id_map;

// Starts an empty map; tl_id_map_free() releases it (a zeroed map is also empty).
void tl_id_map_init(tl_id_map *m);
void tl_id_map_free(tl_id_map *m);

// Returns the index stored for key, or -1.
int64_t tl_id_map_get(const tl_id_map *m, uint64_t key);

// Stores val (>= 0) for key, replacing any previous value; grows as needed.
void tl_id_map_put(tl_id_map *m, uint64_t key, int64_t val);
