// attention.c: scaled dot-product attention, one (batch, head) per task.
//
// Per (b, h): S = scale * Q K^T with sgemm into a T x S scratch, masked
// softmax row by row (its logsumexp saved), dropout, then O = P V with sgemm.
// Backward rebuilds P from the saved logsumexp, so forward keeps no T x S
// floats (with dropout, T x S bits of keep mask). Causal heads go in blocks of
// query rows so the GEMMs skip most of the masked upper triangle.
// Tasks run in an OpenMP loop, each calling a single-threaded sgemm: the OpenMP
// build of OpenBLAS runs one thread when called inside a parallel
// region (num_cpu_avail checks omp_in_parallel), so the two never oversubscribe.
// We do not call openblas_set_num_threads: in that build it also sets the
// OpenMP thread count for the whole process.
#include "kernels/cpu/attention.h"

#include <cblas.h>
#include <immintrin.h>
#include <math.h>
#include <omp.h>
#include <string.h>

#include "core/rng.h"
#include "kernels/cpu/softmax.h"

// One (batch, head)'s view of the strided inputs.
typedef struct head_view {
  const float *q, *k, *v; // [T, D] rows q_stride[2] apart; k, v [S, D]
  int64_t ldq, ldk, ldv;
  const int32_t *key_mask; // [S] or NULL
  int64_t S_eff;           // keys past the last unpadded one are skipped entirely
} head_view;

static head_view view_of(const tl_cpu_attn *a, int64_t b, int64_t h) {
  int64_t kvh = h / (a->Hq / a->Hkv); // grouped-query: Hq / Hkv query heads per kv head
  head_view hv;
  hv.q = a->q + b * a->q_stride[0] + h * a->q_stride[1];
  hv.k = a->k + b * a->k_stride[0] + kvh * a->k_stride[1];
  hv.v = a->v + b * a->v_stride[0] + kvh * a->v_stride[1];
  hv.ldq = a->q_stride[2], hv.ldk = a->k_stride[2], hv.ldv = a->v_stride[2];
  hv.key_mask = a->key_mask ? a->key_mask + b * a->S : NULL;

  // Padding is usually a suffix: GEMMs and softmax stop at the last real key,
  // so a half-padded batch costs half (keys past it get exactly 0 weight).
  hv.S_eff = a->S;
  if (hv.key_mask)
    while (hv.S_eff > 0 && !hv.key_mask[hv.S_eff - 1]) hv.S_eff--;
  return hv;
}

// Keys [0, limit) of query row t survive the causal mask and the padded tail.
static int64_t row_limit(const tl_cpu_attn *a, const head_view *hv, int64_t t) {
  return a->causal && t + 1 < hv->S_eff ? t + 1 : hv->S_eff;
}

// Padding keys inside [0, limit) become -inf, so the softmax gives them exactly 0.
static int64_t mask_row(const tl_cpu_attn *a, const head_view *hv, int64_t t, float *row) {
  int64_t limit = row_limit(a, hv, t);
  const int32_t *km = hv->key_mask;
  if (km) {
#pragma omp simd
    for (int64_t j = 0; j < limit; j++) row[j] = km[j] ? row[j] : -INFINITY;
  }
  return limit;
}

// --- dropout ----------------------------------------------------------------
// Multipliers 0 (probability p) or 1 / (1 - p) from Philox at counters
// counter + j, by the mapping in core/rng.h (dropped when uniform < p); forward
// keeps them as bits for backward when asked (drop_bits). Scalar Philox costs
// ~10 ns an element here, a quarter of attention's time at p > 0, so on AVX2
// eight blocks (32 counters) run at once in vector lanes.

// The multiplier for 32 random bits.
static inline float keep_or_drop(uint32_t bits, float p, float keep) {
  return tl_rng_bits_to_uniform(bits) < p ? 0.0f : keep;
}

// Functions compiled for AVX2 whatever the build's -march; called only after a
// runtime check (have_avx2). An attribute, not a pragma: clang too.
#define TL_AVX2 __attribute__((target("avx2")))

// Philox4x32-10 of blocks block0 .. block0 + 7, lane i of out[w] = word w of
// block0 + i; the same rounds as tl_philox4x32_10, with the 32x32->64 products
// done as even and odd lanes of _mm256_mul_epu32.
TL_AVX2 static void philox8(uint64_t block0, const uint32_t key[2], uint32_t out[4][8]) {
  const __m256i sign = _mm256_set1_epi32(INT32_MIN);
  __m256i base = _mm256_set1_epi32((int)(uint32_t)block0);
  __m256i c0 = _mm256_add_epi32(base, _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
  // Lanes whose low word wrapped carry into the high word (unsigned compare).
  __m256i wrapped = _mm256_cmpgt_epi32(_mm256_xor_si256(base, sign), _mm256_xor_si256(c0, sign));
  __m256i c1 = _mm256_sub_epi32(_mm256_set1_epi32((int)(uint32_t)(block0 >> 32)), wrapped);
  __m256i c2 = _mm256_setzero_si256(), c3 = _mm256_setzero_si256();
  __m256i k0 = _mm256_set1_epi32((int)key[0]), k1 = _mm256_set1_epi32((int)key[1]);
  const __m256i m0 = _mm256_set1_epi32((int)TL_PHILOX_M0);
  const __m256i m1 = _mm256_set1_epi32((int)TL_PHILOX_M1);
  const __m256i w0 = _mm256_set1_epi32((int)TL_PHILOX_W0);
  const __m256i w1 = _mm256_set1_epi32((int)TL_PHILOX_W1);
  const __m256i odd = _mm256_set1_epi64x((int64_t)0xFFFFFFFF00000000ull);
  for (int r = 0; r < 10; r++) {
    __m256i pe0 = _mm256_mul_epu32(c0, m0), po0 = _mm256_mul_epu32(_mm256_srli_epi64(c0, 32), m0);
    __m256i pe1 = _mm256_mul_epu32(c2, m1), po1 = _mm256_mul_epu32(_mm256_srli_epi64(c2, 32), m1);
    __m256i hi0 = _mm256_or_si256(_mm256_srli_epi64(pe0, 32), _mm256_and_si256(po0, odd));
    __m256i lo0 = _mm256_or_si256(_mm256_andnot_si256(odd, pe0), _mm256_slli_epi64(po0, 32));
    __m256i hi1 = _mm256_or_si256(_mm256_srli_epi64(pe1, 32), _mm256_and_si256(po1, odd));
    __m256i lo1 = _mm256_or_si256(_mm256_andnot_si256(odd, pe1), _mm256_slli_epi64(po1, 32));
    __m256i n0 = _mm256_xor_si256(_mm256_xor_si256(hi1, c1), k0);
    __m256i n2 = _mm256_xor_si256(_mm256_xor_si256(hi0, c3), k1);
    c1 = lo1, c3 = lo0, c0 = n0, c2 = n2;
    k0 = _mm256_add_epi32(k0, w0), k1 = _mm256_add_epi32(k1, w1);
  }
  _mm256_storeu_si256((__m256i *)out[0], c0);
  _mm256_storeu_si256((__m256i *)out[1], c1);
  _mm256_storeu_si256((__m256i *)out[2], c2);
  _mm256_storeu_si256((__m256i *)out[3], c3);
}

// Multipliers for counters [c, c + n), c a multiple of 4, n a multiple of 32.
TL_AVX2 static void dropout_avx2(uint64_t c, const uint32_t key[2], float p, float keep,
                                 float *mult, int64_t n) {
  uint32_t bits[4][8];
  for (int64_t j = 0; j < n; j += 32) {
    philox8((c + (uint64_t)j) >> 2, key, bits);
    for (int i = 0; i < 8; i++)
      for (int w = 0; w < 4; w++) mult[j + 4 * i + w] = keep_or_drop(bits[w][i], p, keep);
  }
}
// Keep bits of mult[0, n), n a multiple of 8: one movemask per 8 floats.
TL_AVX2 static void pack_avx2(const float *mult, uint8_t *bits, int64_t n) {
  for (int64_t j = 0; j < n; j += 8)
    bits[j >> 3] = (uint8_t)_mm256_movemask_ps(
        _mm256_cmp_ps(_mm256_loadu_ps(mult + j), _mm256_setzero_ps(), _CMP_NEQ_OQ));
}

// mult[0, n) from keep bits, n a multiple of 8: each byte's bits as lane masks.
TL_AVX2 static void unpack_avx2(const uint8_t *bits, float keep, float *mult, int64_t n) {
  const __m256i lanes = _mm256_setr_epi32(1, 2, 4, 8, 16, 32, 64, 128);
  const __m256 k = _mm256_set1_ps(keep);
  for (int64_t j = 0; j < n; j += 8) {
    __m256i b = _mm256_and_si256(_mm256_set1_epi32(bits[j >> 3]), lanes);
    __m256 on = _mm256_castsi256_ps(_mm256_cmpeq_epi32(b, lanes));
    _mm256_storeu_ps(mult + j, _mm256_and_ps(on, k));
  }
}
static int have_avx2(void) {
  static int cached = -1;
  if (cached < 0) cached = __builtin_cpu_supports("avx2");
  return cached;
}

// mult[j] for counters counter + j, j < n: scalar Philox at the unaligned head
// and the tail, vector Philox in between.
static void dropout_row(const tl_cpu_attn *a, uint64_t counter, float *mult, int64_t n) {
  uint32_t key[2] = {(uint32_t)a->seed, (uint32_t)(a->seed >> 32)};
  float p = a->dropout, keep = 1.0f / (1.0f - p);
  uint32_t bits[4];
  uint64_t block = UINT64_MAX;
  int64_t j = 0;
  while (j < n) {
    uint64_t c = counter + (uint64_t)j;
    if (c % 4 == 0 && n - j >= 32 && have_avx2()) {
      int64_t m = (n - j) / 32 * 32;
      dropout_avx2(c, key, p, keep, mult + j, m);
      j += m;
      continue;
    }
    if (c >> 2 != block) {
      block = c >> 2;
      uint32_t ctr[4] = {(uint32_t)block, (uint32_t)(block >> 32), 0, 0};
      tl_philox4x32_10(ctr, key, bits);
    }
    mult[j++] = keep_or_drop(bits[c & 3], p, keep);
  }
}

// Query row r = (b * Hq + h) * T + t: its Philox counter and its keep bits.
static uint64_t row_counter(const tl_cpu_attn *a, int64_t r) {
  return a->offset + (uint64_t)r * (uint64_t)a->S;
}
static uint8_t *row_bits(const tl_cpu_attn *a, int64_t r) {
  return a->drop_bits + r * ((a->S + 7) / 8);
}

// Forward: draw the row's multipliers and keep their bits for backward.
static void draw_row(const tl_cpu_attn *a, int64_t r, float *mult, int64_t n) {
  dropout_row(a, row_counter(a, r), mult, n);
  if (!a->drop_bits) return;
  uint8_t *bits = row_bits(a, r);
  int64_t j = have_avx2() ? n / 8 * 8 : 0;
  if (j) pack_avx2(mult, bits, j);
  memset(bits + j / 8, 0, (size_t)(n - j + 7) / 8);
  for (; j < n; j++) bits[j >> 3] |= (uint8_t)((mult[j] != 0) << (j & 7));
}

// Backward: the same multipliers, from the kept bits when there are some.
static void redraw_row(const tl_cpu_attn *a, int64_t r, float *mult, int64_t n) {
  if (!a->drop_bits) {
    dropout_row(a, row_counter(a, r), mult, n);
    return;
  }
  const uint8_t *bits = row_bits(a, r);
  float keep = 1.0f / (1.0f - a->dropout);
  int64_t j = have_avx2() ? n / 8 * 8 : 0;
  if (j) unpack_avx2(bits, keep, mult, j);
  for (; j < n; j++) mult[j] = (bits[j >> 3] >> (j & 7)) & 1 ? keep : 0.0f;
}

// Causal heads run in blocks of this many query rows, each block's GEMMs only
// as wide as the keys its last row sees: about half the work of the full
// square. Without the causal mask, one block of all T rows keeps GEMMs large.
#define TL_ATTN_CAUSAL_ROWS 64

static int64_t block_rows(const tl_cpu_attn *a) { return a->causal ? TL_ATTN_CAUSAL_ROWS : a->T; }

// Keys any row of the block [t0, t0 + nt) sees: the GEMMs' width.
static int64_t block_keys(const tl_cpu_attn *a, const head_view *hv, int64_t t0, int64_t nt) {
  return a->causal && t0 + nt < hv->S_eff ? t0 + nt : hv->S_eff;
}

// Forward of query rows [t0, t0 + nt) of one (b, h); P: rows of stride S.
static void fwd_block(const tl_cpu_attn *a, const head_view *hv, int64_t r0, int64_t t0,
                      int64_t nt, float *P, float *mult, float *out, float *lse) {
  int64_t S = a->S, D = a->D, w = block_keys(a, hv, t0, nt);

  // Scores, already scaled: P = scale * Q K^T  [nt, w].
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)nt, (int)w, (int)D, a->scale,
              hv->q + t0 * hv->ldq, (int)hv->ldq, hv->k, (int)hv->ldk, 0.0f, P, (int)S);

  // Masked softmax per row; the logsumexp is all backward needs to rebuild it.
  for (int64_t i = 0; i < nt; i++) {
    int64_t t = t0 + i;
    float *row = P + i * S;
    int64_t limit = mask_row(a, hv, t, row);
    float m = tl_cpu_row_max(row, limit);
    if (m == -INFINITY) { // every visible key padded: P = 0, and no draws
      memset(row, 0, sizeof(float) * w);
      lse[t] = INFINITY;
      if (a->dropout > 0 && a->drop_bits) memset(row_bits(a, r0 + t), 0, (size_t)(limit + 7) / 8);
      continue;
    }
    double sum = tl_cpu_row_exp_sum(row, row, limit, m);
    float inv = (float)(1.0 / sum);
#pragma omp simd
    for (int64_t j = 0; j < limit; j++) row[j] *= inv;
    memset(row + limit, 0, sizeof(float) * (w - limit));
    lse[t] = m + (float)log(sum);

    if (a->dropout > 0) {
      draw_row(a, r0 + t, mult, limit);
#pragma omp simd
      for (int64_t j = 0; j < limit; j++) row[j] *= mult[j];
    }
  }

  // Weighted sum of values: O = P V  [nt, D].
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)nt, (int)D, (int)w, 1.0f, P,
              (int)S, hv->v, (int)hv->ldv, 0.0f, out + t0 * D, (int)D);
}

// One (b, h) forward. P: T x S scratch (row stride S); out: [T, D]; lse: [T].
static void fwd_head(const tl_cpu_attn *a, int64_t b, int64_t h, float *P, float *mult,
                     float *out, float *lse) {
  int64_t T = a->T, D = a->D, bt = block_rows(a);
  head_view hv = view_of(a, b, h);
  if (hv.S_eff == 0) {
    // No key at all (a fully padded sequence): output 0; +inf makes backward's
    // exp(s - lse) give 0 too.
    memset(out, 0, sizeof(float) * T * D);
    for (int64_t t = 0; t < T; t++) lse[t] = INFINITY;
    return;
  }
  for (int64_t t0 = 0; t0 < T; t0 += bt)
    fwd_block(a, &hv, (b * a->Hq + h) * T, t0, T - t0 < bt ? T - t0 : bt, P, mult, out, lse);
}

int64_t tl_cpu_attention_fwd_scratch(const tl_cpu_attn *a, int nthreads) {
  return (int64_t)nthreads * (a->T * a->S + a->S);
}

int64_t tl_cpu_attention_bwd_scratch(const tl_cpu_attn *a, int nthreads) {
  return (int64_t)nthreads * (2 * a->T * a->S + a->S);
}

void tl_cpu_attention_fwd(const tl_cpu_attn *a, float *out, float *lse, float *scratch,
                          int nthreads) {
  int64_t tasks = a->B * a->Hq, per_thread = a->T * a->S + a->S;
  // One head per thread, single-threaded sgemm (bench-ops: an order of
  // magnitude faster than heads in turn with threaded sgemms). Only a single
  // task leaves the threads to OpenBLAS.
  int nt = tasks < nthreads ? (int)tasks : nthreads;
#pragma omp parallel for schedule(dynamic, 1) num_threads(nt) if (nt > 1)
  for (int64_t task = 0; task < tasks; task++) {
    float *P = scratch + omp_get_thread_num() * per_thread;
    int64_t b = task / a->Hq, h = task % a->Hq;
    fwd_head(a, b, h, P, P + a->T * a->S, out + task * a->T * a->D, lse + task * a->T);
  }
}

// Backward of one query row, in place: on entry P holds the probabilities and
// dP = dO V^T; on exit P holds the dropped-out probabilities (what multiplied
// V) and dP holds dS, the gradient of the scaled scores:
//   dS_j = P_j (m_j dP_j - sum_i P_i m_i dP_i), m the dropout multipliers.
// Columns [limit, w) are zeroed in both.
static void bwd_row(const tl_cpu_attn *a, int64_t r, float *P, float *dP, float *mult,
                    int64_t limit, int64_t w) {
  if (a->dropout > 0) {
    redraw_row(a, r, mult, limit);
#pragma omp simd
    for (int64_t j = 0; j < limit; j++) dP[j] *= mult[j];
  }
  double dot = 0;
#pragma omp simd reduction(+ : dot)
  for (int64_t j = 0; j < limit; j++) dot += (double)P[j] * dP[j];
  float d = (float)dot;
#pragma omp simd
  for (int64_t j = 0; j < limit; j++) dP[j] = P[j] * (dP[j] - d);
  memset(dP + limit, 0, sizeof(float) * (w - limit));
  if (a->dropout > 0) {
#pragma omp simd
    for (int64_t j = 0; j < limit; j++) P[j] *= mult[j];
  }
}

// Gradient pointers of one (b, h): dq [T, D], dk and dv [S, D]; NULL = not wanted.
typedef struct head_grads {
  const float *lse, *dout;
  float *dq, *dk, *dv;
} head_grads;

// Backward of query rows [t0, t0 + nt) of one (b, h); P, dP: rows of stride S.
static void bwd_block(const tl_cpu_attn *a, const head_view *hv, int64_t r0, int64_t t0,
                      int64_t nt, const head_grads *g, float *P, float *dP, float *mult) {
  int64_t S = a->S, D = a->D, w = block_keys(a, hv, t0, nt);
  const float *q = hv->q + t0 * hv->ldq, *dout = g->dout + t0 * D;

  // Rebuild the probabilities: P = exp(scale * Q K^T - lse), masked as forward.
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)nt, (int)w, (int)D, a->scale, q,
              (int)hv->ldq, hv->k, (int)hv->ldk, 0.0f, P, (int)S);
  for (int64_t i = 0; i < nt; i++) {
    float *row = P + i * S;
    int64_t limit = mask_row(a, hv, t0 + i, row);
    tl_cpu_row_exp_sum(row, row, limit, g->lse[t0 + i]);
    memset(row + limit, 0, sizeof(float) * (w - limit));
  }

  // Upstream gradient of the probabilities: dP = dO V^T  [nt, w], then dS.
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)nt, (int)w, (int)D, 1.0f, dout,
              (int)D, hv->v, (int)hv->ldv, 0.0f, dP, (int)S);
  for (int64_t i = 0; i < nt; i++)
    bwd_row(a, r0 + t0 + i, P + i * S, dP + i * S, mult, row_limit(a, hv, t0 + i), w);

  // dV += P^T dO; dQ += scale dS K; dK += scale dS^T Q (keys past w get 0).
  if (g->dv)
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)w, (int)D, (int)nt, 1.0f, P,
                (int)S, dout, (int)D, 1.0f, g->dv, (int)D);
  if (g->dq)
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)nt, (int)D, (int)w, a->scale,
                dP, (int)S, hv->k, (int)hv->ldk, 1.0f, g->dq + t0 * D, (int)D);
  if (g->dk)
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)w, (int)D, (int)nt, a->scale,
                dP, (int)S, q, (int)hv->ldq, 1.0f, g->dk, (int)D);
}

// One (b, h) backward, block after block of query rows.
static void bwd_head(const tl_cpu_attn *a, int64_t b, int64_t h, const head_grads *g,
                     float *P, float *dP, float *mult) {
  int64_t T = a->T, bt = block_rows(a);
  head_view hv = view_of(a, b, h);
  if (hv.S_eff == 0) return; // no visible key: output was 0 whatever the inputs
  for (int64_t t0 = 0; t0 < T; t0 += bt)
    bwd_block(a, &hv, (b * a->Hq + h) * T, t0, T - t0 < bt ? T - t0 : bt, g, P, dP, mult);
}

void tl_cpu_attention_bwd(const tl_cpu_attn *a, const float *lse, const float *dout,
                          float *dq, float *dk, float *dv, float *scratch, int nthreads) {
  // Tasks are (b, kv head): the query heads sharing a kv head run in one task,
  // so their dK and dV sums never race.
  int64_t T = a->T, S = a->S, D = a->D, group = a->Hq / a->Hkv;
  int64_t tasks = a->B * a->Hkv, per_thread = 2 * T * S + S;
  int nt = tasks < nthreads ? (int)tasks : nthreads;
#pragma omp parallel for schedule(dynamic, 1) num_threads(nt) if (nt > 1)
  for (int64_t task = 0; task < tasks; task++) {
    float *P = scratch + omp_get_thread_num() * per_thread;
    int64_t b = task / a->Hkv, kvh = task % a->Hkv;
    float *dk_h = dk ? dk + task * S * D : NULL, *dv_h = dv ? dv + task * S * D : NULL;
    for (int64_t h = kvh * group; h < (kvh + 1) * group; h++) {
      int64_t qh = b * a->Hq + h; // index of (b, h) among [B, Hq]
      head_grads g = {lse + qh * T, dout + qh * T * D, dq ? dq + qh * T * D : NULL, dk_h, dv_h};
      bwd_head(a, b, h, &g, P, P + T * S, P + 2 * T * S);
    }
  }
}
