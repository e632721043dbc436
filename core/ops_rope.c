// ops_rope.c: rotary position embedding (tape glue; loops in kernels/cpu/rope.c).
#include "core/ops.h"
#include "core/ops_cuda.h"
#include "kernels/cpu/rope.h"

typedef struct rope_ctx {
  float *cos, *sin; // [T, D/2] angle tables, shared by forward and backward
} rope_ctx;

static void rope_backward(tl_node *node) {
  tl_tensor *x = node->in[0], *y = node->out;
  rope_ctx *c = node->ctx;
  if (!x->requires_grad) return;

  // The rotation is orthogonal: dx = R^T dy, a rotation by minus the angle.
  tl_tensor *dx = tl_grad(x);
  int64_t contiguous[3] = {y->stride[0], y->stride[1], y->stride[2]};
  tl_cpu_rope(y->grad->data, contiguous, dx->data, x->shape[0], x->shape[1], x->shape[2],
              x->shape[3], c->cos, c->sin, true, true);
}

tl_tensor *tl_rope(tl_tensor *x, int64_t pos0, float theta) {
  TL_ASSERTF(x->dtype == TL_F32 && x->rank == 4,
             "rope: x must be an f32 tensor [B, H, T, D], got %s", tl_shape_str(x));
  int64_t B = x->shape[0], H = x->shape[1], T = x->shape[2], D = x->shape[3];
  TL_ASSERTF(D % 2 == 0, "rope: head dim %ld must be even", (long)D);
  TL_ASSERTF(x->stride[3] == 1 || D == 1, "rope: x's last dim must be contiguous");
  TL_ASSERTF(pos0 >= 0 && theta > 0, "rope: pos0 %ld, theta %g", (long)pos0, theta);
#ifdef TL_HAVE_CUDA
  if (x->device == TL_CUDA) return tl_rope_cuda(x, pos0, theta);
#endif

  // Angle tables for this call's positions; kept for backward.
  tl_arena *arena = tl_get_arena();
  rope_ctx *c = tl_arena_alloc(arena, sizeof *c);
  size_t table = sizeof(float) * (size_t)(T * D / 2 + 1);
  c->cos = tl_arena_alloc(arena, table);
  c->sin = tl_arena_alloc(arena, table);
  tl_cpu_rope_table(c->cos, c->sin, T, D, pos0, theta);

  // Output contiguous [B, H, T, D]; x may be a transposed [B, T, H, D] view.
  tl_tensor *y = tl_empty(TL_F32, 4, x->shape);
  tl_cpu_rope(x->data, x->stride, y->data, B, H, T, D, c->cos, c->sin, false, false);

  if (tl_needs_grad(&x, 1)) tl_record("rope", rope_backward, y, &x, 1)->ctx = c;
  return y;
}
