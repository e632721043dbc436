// ops_dropout.c: dropout with a counter-based mask (see core/rng.h).
//
// The mask is never stored: element i is kept iff tl_rng_uniform(seed,
// offset + i) >= p, so backward recomputes it, the CUDA kernel (using the same
// mapping) draws the same mask, and a resumed run repeats the same masks when
// the caller derives (seed, offset) from the step. Callers give each dropout
// site in a step its own offset range (e.g. offset += numel after each call).
#include "core/ops.h"
#include "core/dev_kernels.h"
#include "core/device.h"

static void dropout_backward(tl_node *node) {
  tl_tensor *x = node->in[0];
  if (!x->requires_grad) return;
  tl_dev_dropout(x->device, tl_grad(x)->data, node->out->grad->data, tl_numel(x), node->f[0],
                 (uint64_t)node->i[0], (uint64_t)node->i[1], true);
}

tl_tensor *tl_dropout(tl_tensor *x, float p, uint64_t seed, uint64_t offset) {
  TL_ASSERTF(x->dtype == TL_F32, "dropout: expected f32, got %s", tl_dtype_name(x->dtype));
  TL_ASSERTF(p >= 0.0f && p < 1.0f, "dropout: p = %g outside [0, 1)", p);
  if (p == 0.0f) return x;
  x = tl_contiguous(x);

  tl_tensor *y = tl_empty_on(x->device, TL_F32, x->rank, x->shape);
  tl_dev_dropout(x->device, y->data, x->data, tl_numel(x), p, seed, offset, false);
  if (tl_needs_grad(&x, 1)) {
    tl_node *node = tl_record("dropout", dropout_backward, y, &x, 1);
    node->f[0] = p;
    node->i[0] = (int64_t)seed;
    node->i[1] = (int64_t)offset;
  }
  return y;
}
