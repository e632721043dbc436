// ops_softmax.c: softmax and log-softmax over the last dim (tape glue; the
// loops are in kernels/cpu/softmax.c).
#include "core/ops.h"
#include "core/dev_kernels.h"

// Programmer errors: these ops take contiguous f32 CPU tensors of rank >= 1.
static void check_rows(const char *op, const tl_tensor *x) {
  TL_ASSERTF(x->dtype == TL_F32, "%s: x must be f32, got %s", op, tl_dtype_name(x->dtype));
  TL_ASSERTF(x->rank >= 1, "%s: x must have rank >= 1", op);
  TL_ASSERTF(tl_is_contiguous(x), "%s: x %s must be contiguous (tl_contiguous first)", op,
             tl_shape_str(x));
}

static void softmax_backward(tl_node *node) {
  tl_tensor *x = node->in[0], *y = node->out;
  if (!x->requires_grad || !y->grad) return;
  int64_t C = x->shape[x->rank - 1];
  tl_dev_softmax_bwd(x->device, y->data, y->grad->data, tl_grad(x)->data, tl_numel(x) / C, C);
}

tl_tensor *tl_softmax(tl_tensor *x) {
  check_rows("softmax", x);
  int64_t C = x->shape[x->rank - 1];
  tl_tensor *y = tl_empty_like(x);
  tl_dev_softmax_fwd(x->device, x->data, y->data, C ? tl_numel(x) / C : 0, C);

  // Backward needs only the output: d x = y * (dy - <dy, y>).
  if (tl_needs_grad(&x, 1)) tl_record("softmax", softmax_backward, y, &x, 1);
  return y;
}

static void log_softmax_backward(tl_node *node) {
  tl_tensor *x = node->in[0], *y = node->out;
  if (!x->requires_grad || !y->grad) return;
  int64_t C = x->shape[x->rank - 1];
  tl_dev_log_softmax_bwd(x->device, y->data, y->grad->data, tl_grad(x)->data, tl_numel(x) / C, C);
}

tl_tensor *tl_log_softmax(tl_tensor *x) {
  check_rows("log_softmax", x);
  int64_t C = x->shape[x->rank - 1];
  tl_tensor *y = tl_empty_like(x);
  tl_dev_log_softmax_fwd(x->device, x->data, y->data, C ? tl_numel(x) / C : 0, C);

  // Backward needs only the output: d x = dy - exp(y) * sum(dy).
  if (tl_needs_grad(&x, 1)) tl_record("log_softmax", log_softmax_backward, y, &x, 1);
  return y;
}
