// attention: forward against a naive double-precision loop that builds the full
// score matrix, backward against central finite differences; grouped-query heads
// (Hq = 6, Hkv = 2, and Hq = Hkv), key padding with fully padded sequences,
// causal masks, T != S, strided (transposed) inputs and Philox dropout.
#include <criterion/criterion.h>

#include "core/ops.h"
#include "core/rng.h"
#include "kernels/cpu/attention.h"
#include "tests/core/check.h"

TestSuite(ops_attention, .init = tl_test_setup, .fini = tl_test_teardown);

typedef struct shape {
  int64_t B, Hq, Hkv, T, S, D;
} shape;

// Reference: for each (b, h) the full T x S score matrix in double, masked,
// softmaxed (a row with no visible key gives 0), dropped out with the Philox
// uniforms of core/rng.h (drop when u < p), times V. Inputs contiguous.
static void ref_attention(const shape *s, const float *q, const float *k, const float *v,
                          const int32_t *mask, bool causal, float scale, float p,
                          uint64_t seed, uint64_t offset, double *out) {
  double *sc = tl_arena_alloc(&tl_test_arena, sizeof(double) * s->T * s->S);
  for (int64_t b = 0; b < s->B; b++)
    for (int64_t h = 0; h < s->Hq; h++) {
      int64_t kh = h / (s->Hq / s->Hkv);
      const float *qh = q + (b * s->Hq + h) * s->T * s->D;
      const float *kk = k + (b * s->Hkv + kh) * s->S * s->D;
      const float *vv = v + (b * s->Hkv + kh) * s->S * s->D;
      for (int64_t t = 0; t < s->T; t++) {
        double m = -INFINITY, sum = 0;
        double *row = sc + t * s->S;
        for (int64_t j = 0; j < s->S; j++) {
          double dot = 0;
          for (int64_t d = 0; d < s->D; d++) dot += (double)qh[t * s->D + d] * kk[j * s->D + d];
          bool hidden = (causal && j > t) || (mask && !mask[b * s->S + j]);
          row[j] = hidden ? -INFINITY : scale * dot;
          if (row[j] > m) m = row[j];
        }
        for (int64_t j = 0; j < s->S; j++) sum += row[j] == -INFINITY ? 0 : exp(row[j] - m);
        for (int64_t j = 0; j < s->S; j++) {
          row[j] = row[j] == -INFINITY ? 0 : exp(row[j] - m) / sum;
          uint64_t ctr = offset + (uint64_t)(((b * s->Hq + h) * s->T + t) * s->S + j);
          if (p > 0) row[j] = tl_rng_uniform(seed, ctr) < p ? 0 : row[j] / (1.0 - p);
        }
        for (int64_t d = 0; d < s->D; d++) {
          double o = 0;
          for (int64_t j = 0; j < s->S; j++) o += row[j] * vv[j * s->D + d];
          out[((b * s->Hq + h) * s->T + t) * s->D + d] = o;
        }
      }
    }
}

// i32 [B, S] mask: batch b keeps its first len[b] keys.
static tl_tensor *length_mask(int64_t B, int64_t S, const int64_t *len) {
  tl_tensor *m = tl_zeros(TL_I32, 2, (int64_t[]){B, S});
  int32_t *mv = m->data;
  for (int64_t b = 0; b < B; b++)
    for (int64_t j = 0; j < len[b] && j < S; j++) mv[b * S + j] = 1;
  return m;
}

typedef struct inputs {
  tl_tensor *q, *k, *v;
} inputs;

static inputs make_inputs(const shape *s, uint64_t seed, bool grad) {
  inputs in = {tl_test_randn(seed, 1.0f, grad, 4, (int64_t[]){s->B, s->Hq, s->T, s->D}),
               tl_test_randn(seed + 1, 1.0f, grad, 4, (int64_t[]){s->B, s->Hkv, s->S, s->D}),
               tl_test_randn(seed + 2, 1.0f, grad, 4, (int64_t[]){s->B, s->Hkv, s->S, s->D})};
  return in;
}

// Forward against the reference. f32 GEMMs over D and S terms of O(1) values,
// and a ~1 ulp exp: errors ~1e-6; 2e-5 absolute + 1e-4 relative (dropout scales
// by up to 1/(1-p)) is tight enough that a wrong mask or head mapping (O(0.1))
// cannot pass.
static void check_forward(const shape *s, const tl_attention_opts *o, uint64_t seed) {
  inputs in = make_inputs(s, seed, false);
  tl_tensor *out = tl_attention(in.q, in.k, in.v, o);
  cr_assert_eq(out->rank, 4);
  cr_assert(out->shape[0] == s->B && out->shape[1] == s->Hq && out->shape[2] == s->T &&
            out->shape[3] == s->D);
  int64_t n = s->B * s->Hq * s->T * s->D;
  double *ref = tl_arena_alloc(&tl_test_arena, sizeof(double) * n);
  float scale = o->scale != 0 ? o->scale : 1.0f / sqrtf((float)s->D);
  ref_attention(s, in.q->data, in.k->data, in.v->data,
                o->key_mask ? o->key_mask->data : NULL, o->causal, scale, o->dropout, o->seed,
                o->offset, ref);
  const float *got = out->data;
  for (int64_t i = 0; i < n; i++)
    cr_assert(fabs(got[i] - ref[i]) <= 2e-5 + 1e-4 * fabs(ref[i]),
              "B%ld Hq%ld Hkv%ld T%ld S%ld D%ld causal %d mask %d p %g: element %ld got %.8g "
              "want %.8g", (long)s->B, (long)s->Hq, (long)s->Hkv, (long)s->T, (long)s->S,
              (long)s->D, o->causal, o->key_mask != NULL, o->dropout, (long)i, got[i], ref[i]);
}

static const shape shapes[] = {
    {1, 1, 1, 1, 1, 1},   // smallest: one key, softmax of one score is 1
    {2, 6, 2, 7, 7, 5},   // grouped-query, 3 query heads per kv head
    {2, 3, 3, 13, 11, 8}, // Hq = Hkv, T != S, primes
    {1, 4, 1, 17, 17, 16} // multi-query: one kv head
};
#define NSHAPES (sizeof shapes / sizeof *shapes)

Test(ops_attention, forward_plain_and_causal) {
  for (size_t i = 0; i < NSHAPES; i++) {
    check_forward(&shapes[i], &(tl_attention_opts){0}, 10 + i);
    if (shapes[i].T == shapes[i].S)
      check_forward(&shapes[i], &(tl_attention_opts){.causal = true}, 20 + i);
  }
  check_forward(&shapes[2], &(tl_attention_opts){.scale = 0.3f}, 30);
}

Test(ops_attention, forward_key_padding) {
  // Batch 1 keeps 3 keys, batch 0 keeps all; then a sequence with no key at all
  // (output 0, not NaN), also under the causal mask.
  for (size_t i = 1; i < NSHAPES; i++) {
    const shape *s = &shapes[i];
    int64_t len[2] = {s->S, 3};
    tl_tensor *m = length_mask(s->B, s->S, len);
    check_forward(s, &(tl_attention_opts){.key_mask = m}, 40 + i);
    if (s->T == s->S) check_forward(s, &(tl_attention_opts){.key_mask = m, .causal = true}, 50);
  }
  const shape s = {2, 6, 2, 7, 7, 5};
  int64_t len[2] = {0, 5};
  tl_tensor *m = length_mask(2, 7, len);
  check_forward(&s, &(tl_attention_opts){.key_mask = m}, 60);
  check_forward(&s, &(tl_attention_opts){.key_mask = m, .causal = true}, 61);
}

// i32 [B, S] mask from a string per batch row: '1' attend, '0' padding.
static tl_tensor *pattern_mask(int64_t B, int64_t S, const char *const *rows) {
  tl_tensor *m = tl_zeros(TL_I32, 2, (int64_t[]){B, S});
  for (int64_t b = 0; b < B; b++)
    for (int64_t j = 0; j < S; j++) ((int32_t *)m->data)[b * S + j] = rows[b][j] == '1';
  return m;
}

// Holes and left padding (a decoder batch padded on the left), not only a tail.
static const char *const holes[2] = {"0011101", "1001100"};

Test(ops_attention, forward_padding_with_holes) {
  const shape s = {2, 6, 2, 7, 7, 5};
  tl_tensor *m = pattern_mask(2, 7, holes);
  check_forward(&s, &(tl_attention_opts){.key_mask = m}, 65);
  check_forward(&s, &(tl_attention_opts){.key_mask = m, .causal = true}, 66);
  check_forward(&s, &(tl_attention_opts){.key_mask = m, .causal = true, .dropout = 0.2f,
                                         .seed = 8}, 67);
}

Test(ops_attention, forward_bert_sized_heads) {
  // More (b, h) tasks than threads and T, S not multiples of any block size.
  const shape s = {3, 12, 12, 67, 67, 64};
  int64_t len[3] = {67, 40, 1};
  check_forward(&s, &(tl_attention_opts){.key_mask = length_mask(3, 67, len)}, 70);
  check_forward(&s, &(tl_attention_opts){.causal = true}, 71);
}

Test(ops_attention, forward_dropout_matches_philox_reference) {
  const shape s = {2, 6, 2, 9, 9, 4};
  int64_t len[2] = {9, 6};
  tl_tensor *m = length_mask(2, 9, len);
  check_forward(&s, &(tl_attention_opts){.dropout = 0.3f, .seed = 1234, .offset = 7}, 80);
  check_forward(&s, &(tl_attention_opts){.dropout = 0.1f, .seed = 99, .offset = 1ull << 33,
                                         .causal = true, .key_mask = m}, 81);
}

Test(ops_attention, forward_dropout_long_rows) {
  // Rows of 70 and 131 keys take the vectorised Philox (32 counters at a time)
  // between scalar heads and tails; the second case's counters cross 2^34, where
  // Philox block numbers carry into their high word.
  const shape s = {1, 2, 1, 5, 70, 4};
  check_forward(&s, &(tl_attention_opts){.dropout = 0.5f, .seed = 42, .offset = 3}, 85);
  const shape t = {2, 2, 2, 3, 131, 8};
  check_forward(&t, &(tl_attention_opts){.dropout = 0.1f, .seed = 1ull << 40,
                                         .offset = (1ull << 34) - 900}, 86);
  tl_tensor *m = length_mask(2, 131, (int64_t[]){131, 97});
  check_forward(&t, &(tl_attention_opts){.dropout = 0.3f, .seed = 5, .offset = 1, .key_mask = m},
                87);
}

typedef struct attn_args {
  tl_attention_opts o;
} attn_args;
static tl_tensor *run_attention(tl_tensor **in, void *ctx) {
  return tl_attention(in[0], in[1], in[2], &((attn_args *)ctx)->o);
}

// eps 1e-2 on O(1) inputs: the softmax's third derivative is O(scale^3 D) ~ 1,
// so truncation ~1e-4; f32 rounding of sums of O(1) terms ~1e-6 / eps ~ 1e-4.
// atol 2e-3 + rtol 1e-2 is well below a wrong gradient's O(0.1) error.
static const tl_gradcheck_opts fd = {.eps = 1e-2, .atol = 2e-3, .rtol = 1e-2, .max_checks = 96};

static void check_grad(const shape *s, attn_args *a, uint64_t seed) {
  inputs in = make_inputs(s, seed, true);
  tl_tensor *x[3] = {in.q, in.k, in.v};
  cr_assert(tl_test_gradcheck(run_attention, x, 3, a, fd),
            "B%ld Hq%ld Hkv%ld T%ld S%ld D%ld causal %d mask %d p %g", (long)s->B, (long)s->Hq,
            (long)s->Hkv, (long)s->T, (long)s->S, (long)s->D, a->o.causal,
            a->o.key_mask != NULL, a->o.dropout);
}

Test(ops_attention, backward_plain_gqa_and_causal) {
  for (size_t i = 0; i < NSHAPES; i++) {
    check_grad(&shapes[i], &(attn_args){{0}}, 100 + i);
    if (shapes[i].T == shapes[i].S)
      check_grad(&shapes[i], &(attn_args){{.causal = true}}, 110 + i);
  }
}

Test(ops_attention, backward_causal_row_blocks) {
  // T = 70 > 64: causal heads run in row blocks of 64 with narrower GEMMs; the
  // second block also meets a padded tail (S_eff = 66 < 70).
  const shape s = {1, 2, 1, 70, 70, 4};
  check_grad(&s, &(attn_args){{.causal = true}}, 115);
  int64_t len[1] = {66};
  check_grad(&s, &(attn_args){{.causal = true, .key_mask = length_mask(1, 70, len),
                               .dropout = 0.1f, .seed = 4}}, 116);
  check_forward(&s, &(tl_attention_opts){.causal = true, .key_mask = length_mask(1, 70, len)},
                117);
}

Test(ops_attention, backward_padding_and_dropout) {
  const shape s = {2, 6, 2, 7, 7, 5};
  int64_t len[2] = {4, 0}; // batch 1 fully padded: its gradients must be 0
  tl_tensor *m = length_mask(2, 7, len);
  check_grad(&s, &(attn_args){{.key_mask = m}}, 120);
  check_grad(&s, &(attn_args){{.key_mask = m, .causal = true}}, 121);
  check_grad(&s, &(attn_args){{.dropout = 0.25f, .seed = 5, .offset = 3}}, 122);
  tl_tensor *h = pattern_mask(2, 7, holes);
  check_grad(&s, &(attn_args){{.key_mask = h, .causal = true}}, 124);
  check_grad(&s, &(attn_args){{.key_mask = h, .dropout = 0.3f, .seed = 9}}, 125);
  // Causal rows 0 and 1 of batch 0 see only padding: no draws, zero gradients.
  check_grad(&s, &(attn_args){{.key_mask = h, .causal = true, .dropout = 0.3f, .seed = 10}},
             126);
  const shape t = {2, 3, 3, 5, 8, 4};
  int64_t len2[2] = {8, 3};
  check_grad(&t, &(attn_args){{.key_mask = length_mask(2, 8, len2), .dropout = 0.2f,
                               .seed = 77}}, 123);
}

Test(ops_attention, fully_padded_sequence_is_zero_not_nan) {
  const shape s = {2, 2, 1, 3, 4, 2};
  inputs in = make_inputs(&s, 130, true);
  int64_t len[2] = {4, 0};
  tl_tensor *out = tl_attention(in.q, in.k, in.v,
                                &(tl_attention_opts){.key_mask = length_mask(2, 4, len)});
  tl_tensor *w = tl_test_randn(131, 1.0f, false, 4, out->shape);
  tl_backward_with(out, w);
  const float *o = out->data, *dq = in.q->grad->data, *dk = in.k->grad->data;
  for (int64_t i = 2 * 3 * 2; i < 2 * 2 * 3 * 2; i++) cr_assert_eq(o[i], 0.0f, "out %ld", (long)i);
  for (int64_t i = 0; i < 2 * 2 * 3 * 2; i++) cr_assert(isfinite(dq[i]));
  for (int64_t i = 4 * 2; i < 2 * 4 * 2; i++) cr_assert_eq(dk[i], 0.0f, "dk %ld", (long)i);
}

// A [B, H, T, D] view of a contiguous [B, T, H, D] tensor, as a transpose makes.
static tl_tensor *as_bhtd(tl_tensor *bthd) {
  tl_tensor *t = tl_arena_alloc(&tl_test_arena, sizeof *t);
  *t = *bthd;
  t->shape[1] = bthd->shape[2], t->shape[2] = bthd->shape[1];
  t->stride[1] = bthd->stride[2], t->stride[2] = bthd->stride[1];
  t->grad = NULL;
  return t;
}

Test(ops_attention, strided_inputs_match_contiguous) {
  // q, k, v read in place from [B, T, H, D] projections: same output and grads
  // as on contiguous copies (the order of f32 sums is the same, so 1e-6).
  tl_tensor *q = as_bhtd(tl_test_randn(140, 1.0f, true, 4, (int64_t[]){2, 11, 6, 8}));
  tl_tensor *k = as_bhtd(tl_test_randn(141, 1.0f, true, 4, (int64_t[]){2, 11, 2, 8}));
  tl_tensor *v = as_bhtd(tl_test_randn(142, 1.0f, true, 4, (int64_t[]){2, 11, 2, 8}));
  cr_assert_not(tl_is_contiguous(q));
  tl_tensor *qc = tl_test_dense(q), *kc = tl_test_dense(k), *vc = tl_test_dense(v);
  qc->requires_grad = kc->requires_grad = vc->requires_grad = true;
  tl_attention_opts o = {.causal = true, .dropout = 0.1f, .seed = 3};
  // One tape per run: a second backward would replay the first node too.
  tl_tensor *a = tl_attention(q, k, v, &o);
  tl_tensor *w = tl_test_randn(143, 1.0f, false, 4, a->shape);
  tl_backward_with(a, w);
  tl_tape_reset();
  tl_tensor *b = tl_attention(qc, kc, vc, &o);
  tl_backward_with(b, w);
  const tl_tensor *pairs[4][2] = {{a, b}, {q->grad, qc->grad}, {k->grad, kc->grad},
                                  {v->grad, vc->grad}};
  for (int p = 0; p < 4; p++) {
    const float *x = pairs[p][0]->data, *y = pairs[p][1]->data;
    for (int64_t i = 0; i < tl_numel(pairs[p][1]); i++)
      cr_assert(fabsf(x[i] - y[i]) <= 1e-6f + 1e-6f * fabsf(y[i]), "pair %d element %ld: %g %g",
                p, (long)i, x[i], y[i]);
  }
}

Test(ops_attention, scratch_is_released) {
  // The per-thread T x S scratch must not stay in the arena: only the output,
  // the saved logsumexp and small headers remain after the call.
  const shape s = {1, 2, 2, 300, 300, 4};
  inputs in = make_inputs(&s, 150, false);
  size_t before = tl_test_arena.used;
  tl_attention(in.q, in.k, in.v, NULL);
  size_t kept = tl_test_arena.used - before, out_bytes = 2 * 300 * 4 * sizeof(float);
  cr_assert_lt(kept, out_bytes + 2 * 300 * sizeof(float) + 4096, "kept %zu bytes", kept);
  cr_assert_geq(tl_test_arena.high_water, before + 300 * 300 * sizeof(float));
}

Test(ops_attention, kept_dropout_bits_equal_redrawn) {
  // Backward either reads the keep bits forward stored or redraws Philox: the
  // gradients must be bit-identical (same multipliers, same order of sums).
  const shape s = {2, 4, 2, 6, 45, 8};
  inputs in = make_inputs(&s, 160, false);
  tl_cpu_attn a = {.B = 2, .Hq = 4, .Hkv = 2, .T = 6, .S = 45, .D = 8, .q = in.q->data,
                   .k = in.k->data, .v = in.v->data, .scale = 0.35f, .dropout = 0.4f,
                   .seed = 11, .offset = 5};
  for (int d = 0; d < 3; d++) {
    a.q_stride[d] = in.q->stride[d];
    a.k_stride[d] = a.v_stride[d] = in.k->stride[d];
  }
  int64_t nq = tl_numel(in.q), nk = tl_numel(in.k);
  float *out = tl_arena_alloc(&tl_test_arena, sizeof(float) * 2 * (nq + 2 * nq + 4 * nk));
  float *lse = tl_arena_alloc(&tl_test_arena, sizeof(float) * 2 * 4 * 6);
  float *scratch = tl_arena_alloc(&tl_test_arena,
                                  sizeof(float) * tl_cpu_attention_bwd_scratch(&a, 4));
  memset(out, 0, sizeof(float) * 2 * (nq + 2 * nq + 4 * nk));
  float *grads[2];
  for (int kept = 0; kept < 2; kept++) {
    a.drop_bits = kept ? tl_arena_alloc(&tl_test_arena, 2 * 4 * 6 * 6) : NULL;
    float *o = out + kept * (3 * nq + 2 * nk);
    grads[kept] = o + nq;
    tl_cpu_attention_fwd(&a, o, lse, scratch, 2);
    // dout = the output itself: any fixed tensor will do.
    tl_cpu_attention_bwd(&a, lse, o, o + nq, o + 2 * nq, o + 2 * nq + nk, scratch, 2);
  }
  cr_assert(memcmp(grads[0], grads[1], sizeof(float) * (nq + 2 * nk)) == 0);
  cr_assert(memcmp(out, out + 3 * nq + 2 * nk, sizeof(float) * nq) == 0);
}

// Llama's attention input path through ops A's views: q and k rotated, all
// three read in place from [B, T, H, D] projections via tl_transpose.
static tl_tensor *run_llama_attention(tl_tensor **in, void *ctx) {
  tl_tensor *q = tl_rope(tl_transpose(in[0], 1, 2), 3, 10000.0f);
  tl_tensor *k = tl_rope(tl_transpose(in[1], 1, 2), 3, 10000.0f);
  tl_tensor *v = tl_transpose(in[2], 1, 2);
  return tl_attention(q, k, v, &((attn_args *)ctx)->o);
}

Test(ops_attention, backward_through_transposed_views_and_rope) {
  tl_tensor *x[3] = {tl_test_randn(170, 1.0f, true, 4, (int64_t[]){2, 9, 6, 8}),
                     tl_test_randn(171, 1.0f, true, 4, (int64_t[]){2, 9, 2, 8}),
                     tl_test_randn(172, 1.0f, true, 4, (int64_t[]){2, 9, 2, 8})};
  int64_t len[2] = {9, 7};
  attn_args a = {{.causal = true, .key_mask = length_mask(2, 9, len), .dropout = 0.1f,
                  .seed = 21}};
  cr_assert(tl_test_gradcheck(run_llama_attention, x, 3, &a, fd));
}
