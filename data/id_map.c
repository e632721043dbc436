// id_map.c: linear probing over a power-of-two table kept at most half full.
#include "data/id_map.h"

#include <string.h>

#include "core/log.h"

// Spreads ids that differ only in high or low bits (flow ids are often counters).
static uint64_t mix(uint64_t x) {
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdULL;
  x ^= x >> 33;
  return x;
}

void tl_id_map_init(tl_id_map *m) { memset(m, 0, sizeof *m); }

void tl_id_map_free(tl_id_map *m) {
  free(m->keys);
  free(m->vals);
  memset(m, 0, sizeof *m);
}

int64_t tl_id_map_get(const tl_id_map *m, uint64_t key) {
  if (m->cap == 0) return -1;
  for (uint64_t i = mix(key) & (m->cap - 1);; i = (i + 1) & (m->cap - 1)) {
    if (m->vals[i] < 0) return -1;
    if (m->keys[i] == key) return m->vals[i];
  }
}

// Inserts into the current table, which has room.
static void insert(tl_id_map *m, uint64_t key, int64_t val) {
  for (uint64_t i = mix(key) & (m->cap - 1);; i = (i + 1) & (m->cap - 1)) {
    if (m->vals[i] < 0) {
      m->keys[i] = key;
      m->vals[i] = val;
      m->n++;
      return;
    }
    if (m->keys[i] == key) {
      m->vals[i] = val;
      return;
    }
  }
}

void tl_id_map_put(tl_id_map *m, uint64_t key, int64_t val) {
  TL_ASSERT(val >= 0);
  // Double the table before it passes half full, so probes stay short.
  if (2 * (m->n + 1) > m->cap) {
    tl_id_map old = *m;
    m->cap = old.cap ? 2 * old.cap : 64;
    m->n = 0;
    m->keys = tl_xmalloc((size_t)m->cap * sizeof *m->keys);
    m->vals = tl_xmalloc((size_t)m->cap * sizeof *m->vals);
    for (int64_t i = 0; i < m->cap; i++) m->vals[i] = -1;
    for (int64_t i = 0; i < old.cap; i++)
      if (old.vals[i] >= 0) insert(m, old.keys[i], old.vals[i]);
    free(old.keys);
    free(old.vals);
  }
  insert(m, key, val);
}
