// ops_norm.c: layernorm and RMSNorm over the last dim (tape glue; loops in
// kernels/cpu/norm.c).
#include <omp.h>

#include "core/ops.h"
#include "core/dev_kernels.h"
#include "core/device.h"

typedef struct norm_ctx {
  float *mean;  // [N] (layernorm only)
  float *rstd;  // [N]
  int64_t N, C;
} norm_ctx;

// Programmer errors: x contiguous f32 [..., C] on the CPU, gamma/beta f32 [C].
static void check_inputs(const char *op, const tl_tensor *x, const tl_tensor *gamma,
                         const tl_tensor *beta) {
  TL_ASSERTF(x->dtype == TL_F32 && x->rank >= 1 && tl_is_contiguous(x),
             "%s: x must be contiguous f32 of rank >= 1, got %s", op, tl_shape_str(x));
  TL_ASSERTF(!gamma || gamma->device == x->device, "%s: gamma on another device", op);
  TL_ASSERTF(!beta || beta->device == x->device, "%s: beta on another device", op);
  int64_t C = x->shape[x->rank - 1];
  const tl_tensor *p[2] = {gamma, beta};
  for (int i = 0; i < 2; i++) {
    if (!p[i]) continue;
    TL_ASSERTF(p[i]->dtype == TL_F32 && p[i]->rank == 1 && p[i]->shape[0] == C &&
                   tl_is_contiguous(p[i]),
               "%s: %s must be contiguous f32 [%lld], got %s", op, i ? "beta" : "gamma",
               (long long)C, tl_shape_str(p[i]));
  }
}

// ctx with room for the row statistics, in the current arena.
static norm_ctx *new_ctx(const tl_tensor *x, bool with_mean) {
  norm_ctx *c = tl_arena_alloc(tl_get_arena(), sizeof *c);
  c->C = x->shape[x->rank - 1];
  c->N = c->C ? tl_numel(x) / c->C : 0;
  size_t bytes = (size_t)(c->N ? c->N : 1) * sizeof(float);
  // The statistics live where the kernels read them: x's device.
  c->rstd = tl_alloc_on(x->device, bytes);
  c->mean = with_mean ? tl_alloc_on(x->device, bytes) : NULL;
  return c;
}

// The grad buffer of t when it wants one, else NULL (the kernels skip NULLs).
static float *grad_or_null(tl_tensor *t) {
  return t && t->requires_grad ? tl_grad(t)->data : NULL;
}

static void layernorm_backward(tl_node *node) {
  tl_tensor *x = node->in[0], *gamma = node->in[1], *beta = node->n_in > 2 ? node->in[2] : NULL;
  norm_ctx *c = node->ctx;
  if (!node->out->grad) return;

  // Per-thread partial sums for dgamma/dbeta live in the arena until reset.
  int nt = omp_get_max_threads();
  float *partial = tl_arena_alloc(tl_get_arena(), sizeof(float) * 2 * (c->C + 1) * nt);
  tl_dev_layernorm_bwd(x->device, x->data, gamma->data, c->mean, c->rstd, node->out->grad->data,
                       grad_or_null(x), grad_or_null(gamma), grad_or_null(beta), c->N, c->C,
                       partial, nt);
}

tl_tensor *tl_layernorm(tl_tensor *x, tl_tensor *gamma, tl_tensor *beta, float eps) {
  check_inputs("layernorm", x, gamma, beta);
  norm_ctx *c = new_ctx(x, true);
  tl_tensor *y = tl_empty_like(x);
  tl_dev_layernorm_fwd(x->device, x->data, gamma->data, beta ? beta->data : NULL, y->data, c->mean,
                       c->rstd, c->N, c->C, eps);

  // Backward recomputes xhat from x and the saved mean/rstd.
  tl_tensor *in[3] = {x, gamma, beta};
  int n_in = beta ? 3 : 2;
  if (tl_needs_grad(in, n_in)) tl_record("layernorm", layernorm_backward, y, in, n_in)->ctx = c;
  return y;
}

static void rmsnorm_backward(tl_node *node) {
  tl_tensor *x = node->in[0], *gamma = node->in[1];
  norm_ctx *c = node->ctx;
  if (!node->out->grad) return;

  int nt = omp_get_max_threads();
  float *partial = tl_arena_alloc(tl_get_arena(), sizeof(float) * (c->C + 1) * nt);
  tl_dev_rmsnorm_bwd(x->device, x->data, gamma->data, c->rstd, node->out->grad->data,
                     grad_or_null(x), grad_or_null(gamma), c->N, c->C, partial, nt);
}

tl_tensor *tl_rmsnorm(tl_tensor *x, tl_tensor *gamma, float eps) {
  check_inputs("rmsnorm", x, gamma, NULL);
  norm_ctx *c = new_ctx(x, false);
  tl_tensor *y = tl_empty_like(x);
  tl_dev_rmsnorm_fwd(x->device, x->data, gamma->data, y->data, c->rstd, c->N, c->C, eps);

  tl_tensor *in[2] = {x, gamma};
  if (tl_needs_grad(in, 2)) tl_record("rmsnorm", rmsnorm_backward, y, in, 2)->ctx = c;
  return y;
}
