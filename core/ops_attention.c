// ops_attention.c: multi-head attention (tape glue; loops in kernels/cpu/attention.c).
#include <math.h>
#include <omp.h>

#include "core/ops.h"
#include "core/ops_cuda.h"
#include "kernels/cpu/attention.h"

typedef struct attn_ctx {
  tl_cpu_attn a;  // shapes, strides, masks, scale, dropout: what forward ran with
  float *lse;     // [B, Hq, T] per-row logsumexp, from which backward rebuilds P
} attn_ctx;

// Programmer errors: f32 CPU rank-4 tensors with contiguous rows and matching
// shapes, a valid mask and a dropout probability in [0, 1).
static void check_inputs(const tl_tensor *q, const tl_tensor *k, const tl_tensor *v,
                         const tl_attention_opts *o) {
  const tl_tensor *t[3] = {q, k, v};
  for (int i = 0; i < 3; i++) {
    TL_ASSERTF(t[i]->dtype == TL_F32 && t[i]->rank == 4 && t[i]->device == q->device,
               "attention: %c must be an f32 tensor [B, H, T, D] on q's device, got %s",
               "qkv"[i], tl_shape_str(t[i]));
    TL_ASSERTF(t[i]->stride[3] == 1 || t[i]->shape[3] == 1,
               "attention: %c's last dim must be contiguous", "qkv"[i]);
  }
  TL_ASSERTF(tl_same_shape(k, v), "attention: k %s and v %s differ", tl_shape_str(k),
             tl_shape_str(v));
  TL_ASSERTF(q->shape[0] == k->shape[0] && q->shape[3] == k->shape[3],
             "attention: q %s and k %s disagree on batch or head dim", tl_shape_str(q),
             tl_shape_str(k));
  TL_ASSERTF(k->shape[1] > 0 && q->shape[1] % k->shape[1] == 0,
             "attention: %ld query heads are not a multiple of %ld kv heads",
             (long)q->shape[1], (long)k->shape[1]);
  TL_ASSERTF(!o->causal || q->shape[2] == k->shape[2],
             "attention: causal needs T == S, got %ld and %ld", (long)q->shape[2],
             (long)k->shape[2]);
  TL_ASSERTF(o->dropout >= 0 && o->dropout < 1, "attention: dropout %g not in [0, 1)",
             o->dropout);
  const tl_tensor *m = o->key_mask;
  TL_ASSERTF(!m || (m->dtype == TL_I32 && m->rank == 2 && m->shape[0] == q->shape[0] &&
                    m->shape[1] == k->shape[2] && tl_is_contiguous(m)),
             "attention: key_mask must be contiguous i32 [B, S] = [%ld, %ld]",
             (long)q->shape[0], (long)k->shape[2]);
}

static tl_cpu_attn make_args(const tl_tensor *q, const tl_tensor *k, const tl_tensor *v,
                             const tl_attention_opts *o) {
  tl_cpu_attn a = {
      .B = q->shape[0], .Hq = q->shape[1], .Hkv = k->shape[1],
      .T = q->shape[2], .S = k->shape[2], .D = q->shape[3],
      .q = q->data, .k = k->data, .v = v->data,
      .key_mask = o->key_mask ? o->key_mask->data : NULL,
      .causal = o->causal,
      .scale = o->scale != 0 ? o->scale : 1.0f / sqrtf((float)q->shape[3]),
      .dropout = o->dropout, .seed = o->seed, .offset = o->offset};
  for (int d = 0; d < 3; d++) {
    a.q_stride[d] = q->stride[d];
    a.k_stride[d] = k->stride[d];
    a.v_stride[d] = v->stride[d];
  }
  return a;
}

// The grad buffer of t when it wants one, else NULL (the kernel skips NULLs).
static float *grad_or_null(tl_tensor *t) { return t->requires_grad ? tl_grad(t)->data : NULL; }

static void attention_backward(tl_node *node) {
  attn_ctx *c = node->ctx;
  float *dq = grad_or_null(node->in[0]), *dk = grad_or_null(node->in[1]),
        *dv = grad_or_null(node->in[2]);

  // Scratch (two T x S matrices per thread) lives only for this call: rewind
  // the arena after, so it counts in the high-water mark but not in what stays.
  tl_arena *arena = tl_get_arena();
  size_t mark = arena->used;
  int nt = omp_get_max_threads();
  float *scratch = tl_arena_alloc(arena, sizeof(float) * tl_cpu_attention_bwd_scratch(&c->a, nt));
  tl_cpu_attention_bwd(&c->a, c->lse, node->out->grad->data, dq, dk, dv, scratch, nt);
  arena->used = mark;
}

tl_tensor *tl_attention(tl_tensor *q, tl_tensor *k, tl_tensor *v, const tl_attention_opts *o) {
  static const tl_attention_opts none = {0};
  if (!o) o = &none;
  check_inputs(q, k, v, o);
#ifdef TL_HAVE_CUDA
  if (q->device == TL_CUDA) return tl_attention_cuda(q, k, v, o);
#endif
  tl_arena *arena = tl_get_arena();
  attn_ctx *c = tl_arena_alloc(arena, sizeof *c);
  c->a = make_args(q, k, v, o);
  tl_tensor *out = tl_empty(TL_F32, 4, (int64_t[]){c->a.B, c->a.Hq, c->a.T, c->a.D});
  c->lse = tl_arena_alloc(arena, sizeof(float) * (size_t)(c->a.B * c->a.Hq * c->a.T + 1));
  tl_tensor *in[3] = {q, k, v};
  bool record = tl_needs_grad(in, 3);

  // With dropout and a backward to come, keep the draws as bits (S / 8 bytes
  // per query row) rather than run Philox twice.
  if (record && c->a.dropout > 0)
    c->a.drop_bits = tl_arena_alloc(arena, (size_t)(c->a.B * c->a.Hq * c->a.T) *
                                               (size_t)((c->a.S + 7) / 8) + 1);

  // Per-thread T x S score scratch, released when the kernel returns.
  size_t mark = arena->used;
  int nt = omp_get_max_threads();
  float *scratch = tl_arena_alloc(arena, sizeof(float) * tl_cpu_attention_fwd_scratch(&c->a, nt));
  tl_cpu_attention_fwd(&c->a, out->data, c->lse, scratch, nt);
  arena->used = mark;

  if (record) tl_record("attention", attention_backward, out, in, 3)->ctx = c;
  return out;
}
