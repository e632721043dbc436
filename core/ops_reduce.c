// ops_reduce.c: sum and mean of all elements, to a rank-0 scalar.
#include "core/ops.h"
#include "core/ops_cuda.h"
#include "kernels/cpu/elementwise.h"

static void reduce_backward(tl_node *node) {
  tl_tensor *x = node->in[0];
  if (!x->requires_grad) return;
  // Every element contributed with weight f[0] (1 for sum, 1/n for mean).
  float dy = ((float *)node->out->grad->data)[0];
  tl_cpu_add_scalar(tl_grad(x)->data, dy * node->f[0], tl_numel(x));
}

static tl_tensor *reduce(tl_tensor *x, bool mean, const char *name) {
  TL_ASSERTF(x->dtype == TL_F32, "%s: expected f32, got %s", name, tl_dtype_name(x->dtype));
#ifdef TL_HAVE_CUDA
  if (x->device == TL_CUDA) return tl_reduce_cuda(x, mean, name);
#endif
  TL_ASSERTF(x->device == TL_CPU, "%s: tl was built without CUDA", name);
  x = tl_contiguous(x);
  int64_t n = tl_numel(x);

  // Summed in double; the mean of nothing is 0 rather than NaN.
  double s = tl_cpu_sum(x->data, n);
  float w = mean ? (n ? 1.0f / (float)n : 0.0f) : 1.0f;
  tl_tensor *y = tl_empty(TL_F32, 0, NULL);
  y->device = x->device;
  ((float *)y->data)[0] = (float)(mean ? (n ? s / (double)n : 0.0) : s);
  if (tl_needs_grad(&x, 1)) tl_record(name, reduce_backward, y, &x, 1)->f[0] = w;
  return y;
}

tl_tensor *tl_sum(tl_tensor *x) { return reduce(x, false, "sum"); }
tl_tensor *tl_mean(tl_tensor *x) { return reduce(x, true, "mean"); }
