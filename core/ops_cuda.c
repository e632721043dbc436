// ops_cuda.c: CUDA paths of attention, cross entropy, rope, sum/mean and the row
// lookups (see ops_cuda.h). f32 tensors; kernels in kernels/cuda.
#include "core/ops_cuda.h"

#ifdef TL_HAVE_CUDA
#include <math.h>

#include "core/dev_kernels.h"
#include "core/device.h"
#include "kernels/cuda/tl_cuda.h"

#define F32 TL_CUDA_F32

static float *fdata(const tl_tensor *t) { return (float *)t->data; }

// Small i32 inputs (ids, targets, masks) given on the CPU are copied to the GPU,
// so model code may build them on the host (position ids, [CLS] rows).
static tl_tensor *on_gpu(tl_tensor *t) {
  if (!t || t->device == TL_CUDA) return t;
  return tl_to_device(tl_get_device_arena(), tl_is_contiguous(t) ? t : tl_contiguous(t));
}
static float *grad_or_null(tl_tensor *t) { return t->requires_grad ? fdata(tl_grad(t)) : NULL; }

// --- attention ----------------------------------------------------------------------------

typedef struct cuda_attn_ctx {
  tl_cuda_attn a;
  float *lse; // [B, Hq, T] on the device
} cuda_attn_ctx;

static void attention_cuda_backward(tl_node *node) {
  cuda_attn_ctx *c = node->ctx;
  tl_tensor *q = node->in[0], *k = node->in[1], *v = node->in[2];
  tl_cuda_attention_bwd(F32, &c->a, grad_or_null(q), grad_or_null(k), grad_or_null(v),
                        node->out->grad->data, q->data, k->data, v->data, node->out->data,
                        c->lse, NULL);
}

tl_tensor *tl_attention_cuda(tl_tensor *q, tl_tensor *k, tl_tensor *v,
                             const tl_attention_opts *o) {
  // The fused kernel reads dense [B, H, T, D]: copy views first (on the tape).
  q = tl_contiguous(q), k = tl_contiguous(k), v = tl_contiguous(v);
  tl_tensor *mask = on_gpu(o->key_mask);
  cuda_attn_ctx *c = tl_arena_alloc(tl_get_arena(), sizeof *c);
  tl_cuda_attn a = {q->shape[0], q->shape[1], k->shape[1], q->shape[2], k->shape[2],
                    q->shape[3], mask ? mask->data : NULL, o->causal,
                    o->scale, o->dropout, o->seed, o->offset};
  c->a = a;
  c->lse = tl_alloc_on(TL_CUDA, sizeof(float) * (size_t)(a.B * a.Hq * a.T + 1));
  tl_tensor *out = tl_empty_on(TL_CUDA, TL_F32, 4, (int64_t[]){a.B, a.Hq, a.T, a.D});
  tl_cuda_attention(F32, &c->a, out->data, c->lse, q->data, k->data, v->data);

  tl_tensor *in[3] = {q, k, v};
  if (tl_needs_grad(in, 3)) tl_record("attention", attention_cuda_backward, out, in, 3)->ctx = c;
  return out;
}

// --- cross entropy ------------------------------------------------------------------------

typedef struct cuda_ce_ctx {
  tl_tensor *targets;
  float *lse, *count; // device: [N] and the number of counted rows
  int ignore_index;
} cuda_ce_ctx;

static void cross_entropy_cuda_backward(tl_node *node) {
  tl_tensor *logits = node->in[0], *loss = node->out;
  cuda_ce_ctx *c = node->ctx;
  if (!logits->requires_grad || !loss->grad) return;
  // Scale dloss / count is read on the device: no host round trip.
  tl_cuda_cross_entropy_bwd(F32, fdata(tl_grad(logits)), fdata(loss->grad), c->count, c->lse,
                            logits->data, c->targets->data, logits->shape[0], logits->shape[1],
                            c->ignore_index);
}

tl_tensor *tl_cross_entropy_cuda(tl_tensor *logits, tl_tensor *targets, int ignore_index) {
  targets = on_gpu(targets);
  int64_t N = logits->shape[0], V = logits->shape[1];
  cuda_ce_ctx *c = tl_arena_alloc(tl_get_arena(), sizeof *c);
  c->targets = targets;
  c->ignore_index = ignore_index;
  c->lse = tl_alloc_on(TL_CUDA, sizeof(float) * (size_t)(N ? N : 1));
  c->count = tl_alloc_on(TL_CUDA, sizeof(float));
  tl_tensor *loss = tl_empty_on(TL_CUDA, TL_F32, 0, NULL);
  tl_cuda_cross_entropy(F32, loss->data, c->count, c->lse, logits->data, targets->data, N, V,
                        ignore_index);

  // The CPU op checks targets before; here the kernel notes a bad one (a sync).
  int64_t bad = tl_cuda_take_bad_index();
  TL_ASSERTF(bad < 0, "cross_entropy: target %ld is outside [0, %ld)", (long)bad, (long)V);
  if (tl_needs_grad(&logits, 1))
    tl_record("cross_entropy", cross_entropy_cuda_backward, loss, &logits, 1)->ctx = c;
  return loss;
}

// --- rope -----------------------------------------------------------------------------------

static void rope_cuda_backward(tl_node *node) {
  tl_tensor *x = node->in[0], *y = node->out;
  if (!x->requires_grad) return;
  tl_cuda_rope_bwd(F32, fdata(tl_grad(x)), y->grad->data, x->shape[0] * x->shape[1],
                   x->shape[2], x->shape[3], node->i[0], node->f[0]);
}

tl_tensor *tl_rope_cuda(tl_tensor *x, int64_t pos0, float theta) {
  x = tl_contiguous(x); // the kernel reads dense [B, H, T, D]
  tl_tensor *y = tl_empty_on(TL_CUDA, TL_F32, 4, x->shape);
  tl_cuda_rope(F32, y->data, x->data, x->shape[0] * x->shape[1], x->shape[2], x->shape[3], pos0,
               theta);
  if (tl_needs_grad(&x, 1)) {
    tl_node *node = tl_record("rope", rope_cuda_backward, y, &x, 1);
    node->i[0] = pos0;
    node->f[0] = theta;
  }
  return y;
}

// --- sum and mean ---------------------------------------------------------------------------

static void reduce_cuda_backward(tl_node *node) {
  tl_tensor *x = node->in[0];
  if (!x->requires_grad) return;
  // dx += w * dy, with dy read on the device.
  tl_dev_add_scalar_from(TL_CUDA, fdata(tl_grad(x)), fdata(node->out->grad), node->f[0],
                         tl_numel(x));
}

tl_tensor *tl_reduce_cuda(tl_tensor *x, bool mean, const char *name) {
  x = tl_contiguous(x);
  int64_t n = tl_numel(x);
  float w = mean ? (n ? 1.0f / (float)n : 0.0f) : 1.0f;
  tl_tensor *y = tl_empty_on(TL_CUDA, TL_F32, 0, NULL);
  tl_cuda_sum(F32, y->data, x->data, n, w);
  if (tl_needs_grad(&x, 1)) tl_record(name, reduce_cuda_backward, y, &x, 1)->f[0] = w;
  return y;
}

// --- embedding and gather_rows ----------------------------------------------------------------

static void lookup_cuda_backward(tl_node *node) {
  tl_tensor *table = node->in[0], *ids = node->in[1];
  if (!table->requires_grad) return;
  tl_dev_scatter_add_rows(TL_CUDA, fdata(tl_grad(table)), fdata(node->out->grad), ids->data,
                          tl_numel(ids), table->shape[1], table->shape[0]);
}

tl_tensor *tl_lookup_cuda(tl_tensor *table, tl_tensor *ids, const char *name) {
  TL_ASSERTF(ids->dtype == TL_I32, "%s: ids must be i32", name);
  ids = on_gpu(ids);
  table = tl_contiguous(table);
  int64_t shape[TL_MAX_RANK], C = table->shape[1];
  for (int d = 0; d < ids->rank; d++) shape[d] = ids->shape[d];
  shape[ids->rank] = C;
  tl_tensor *y = tl_empty_on(TL_CUDA, TL_F32, ids->rank + 1, shape);
  tl_dev_gather_rows(TL_CUDA, fdata(y), fdata(table), ids->data, tl_numel(ids), C,
                     table->shape[0]);
  tl_tensor *in[2] = {table, ids};
  if (tl_needs_grad(in, 2)) tl_record(name, lookup_cuda_backward, y, in, 2);
  return y;
}
#endif
