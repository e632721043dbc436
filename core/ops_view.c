// ops_view.c: reshape, transpose, slice and contiguous.
//
// A view is a new tensor header over the source's memory, with its own shape,
// strides and data pointer. Gradients, though, are always contiguous in their
// tensor's logical shape (tl_grad), so a view's backward lays the view's
// geometry over the source's gradient and adds the view's gradient into it.
#include <string.h>

#include "core/ops.h"
#include "core/dev_kernels.h"
#include "core/device.h"

// Views take any dtype (reshaping i32 ids is common); only f32 has gradients.
static void check_input(const tl_tensor *x, const char *op) {
  (void)x, (void)op; // any dtype, any device
}

// Row-major strides of shape (what the tensor's gradient uses).
static void contiguous_strides(int rank, const int64_t *shape, int64_t *stride) {
  int64_t s = 1;
  for (int d = rank - 1; d >= 0; d--) {
    stride[d] = s;
    s *= shape[d];
  }
}

// A header sharing x's memory; the caller adjusts shape, strides and data.
static tl_tensor *view_of(tl_tensor *x, int rank, const int64_t *shape) {
  tl_tensor *v = tl_from_data(x->dtype, rank, shape, x->data);
  v->device = x->device;
  return v;
}

// --- reshape -------------------------------------------------------------------

static void reshape_backward(tl_node *node) {
  tl_tensor *x = node->in[0];
  if (!x->requires_grad) return;
  // Same elements in the same order: a flat add.
  tl_dev_axpy(x->device, tl_grad(x)->data, node->out->grad->data, 1.0f, tl_numel(x));
}

tl_tensor *tl_reshape(tl_tensor *x, int rank, const int64_t *shape) {
  check_input(x, "reshape");
  TL_ASSERTF(rank >= 0 && rank <= TL_MAX_RANK, "reshape: rank %d", rank);

  // Resolve one -1 dimension from the element count.
  int64_t dims[TL_MAX_RANK], known = 1;
  int infer = -1;
  for (int d = 0; d < rank; d++) {
    dims[d] = shape[d];
    if (shape[d] == -1) {
      TL_ASSERTF(infer < 0, "reshape: more than one -1 in the new shape");
      infer = d;
    } else {
      known *= shape[d];
    }
  }
  int64_t n = tl_numel(x);
  if (infer >= 0) {
    TL_ASSERTF(known > 0 && n % known == 0, "reshape: %s cannot fill -1", tl_shape_str(x));
    dims[infer] = n / known;
    known *= dims[infer];
  }
  TL_ASSERTF(known == n, "reshape: %s has %ld elements, new shape %ld", tl_shape_str(x),
             (long)n, (long)known);

  // A strided source has no flat order in memory: copy it first (recorded).
  if (!tl_is_contiguous(x)) x = tl_contiguous(x);
  tl_tensor *v = view_of(x, rank, dims);
  if (tl_needs_grad(&x, 1)) tl_record("reshape", reshape_backward, v, &x, 1);
  return v;
}

// --- transpose -------------------------------------------------------------------

static void transpose_backward(tl_node *node) {
  tl_tensor *x = node->in[0], *v = node->out;
  if (!x->requires_grad) return;
  // The source gradient seen through the same permutation as the view.
  int64_t gstride[TL_MAX_RANK], vstride[TL_MAX_RANK];
  contiguous_strides(x->rank, x->shape, gstride);
  contiguous_strides(v->rank, v->shape, vstride);
  int d0 = (int)node->i[0], d1 = (int)node->i[1];
  int64_t t = gstride[d0];
  gstride[d0] = gstride[d1];
  gstride[d1] = t;
  tl_dev_strided_add(x->device, tl_grad(x)->data, gstride, v->grad->data, vstride, v->shape,
                     v->rank);
}

tl_tensor *tl_transpose(tl_tensor *x, int dim0, int dim1) {
  check_input(x, "transpose");
  if (dim0 < 0) dim0 += x->rank;
  if (dim1 < 0) dim1 += x->rank;
  TL_ASSERTF(dim0 >= 0 && dim0 < x->rank && dim1 >= 0 && dim1 < x->rank,
             "transpose: dims %d, %d of %s", dim0, dim1, tl_shape_str(x));

  // Swap the two dims' sizes and strides; the data pointer stays.
  tl_tensor *v = view_of(x, x->rank, x->shape);
  memcpy(v->stride, x->stride, sizeof v->stride);
  v->shape[dim0] = x->shape[dim1];
  v->shape[dim1] = x->shape[dim0];
  v->stride[dim0] = x->stride[dim1];
  v->stride[dim1] = x->stride[dim0];
  if (tl_needs_grad(&x, 1)) {
    tl_node *node = tl_record("transpose", transpose_backward, v, &x, 1);
    node->i[0] = dim0;
    node->i[1] = dim1;
  }
  return v;
}

// --- slice -------------------------------------------------------------------------

static void slice_backward(tl_node *node) {
  tl_tensor *x = node->in[0], *v = node->out;
  if (!x->requires_grad) return;
  // The window of the source gradient that the slice covers.
  int64_t gstride[TL_MAX_RANK], vstride[TL_MAX_RANK];
  contiguous_strides(x->rank, x->shape, gstride);
  contiguous_strides(v->rank, v->shape, vstride);
  float *g = (float *)tl_grad(x)->data + node->i[1] * gstride[node->i[0]];
  tl_dev_strided_add(x->device, g, gstride, v->grad->data, vstride, v->shape, v->rank);
}

tl_tensor *tl_slice(tl_tensor *x, int dim, int64_t start, int64_t length) {
  check_input(x, "slice");
  if (dim < 0) dim += x->rank;
  TL_ASSERTF(dim >= 0 && dim < x->rank, "slice: dim %d of %s", dim, tl_shape_str(x));
  TL_ASSERTF(start >= 0 && length >= 0 && start + length <= x->shape[dim],
             "slice: [%ld, %ld) of dim %d of %s", (long)start, (long)(start + length), dim,
             tl_shape_str(x));

  // Same strides; shorter along dim; data moved to the window's first element.
  tl_tensor *v = view_of(x, x->rank, x->shape);
  memcpy(v->stride, x->stride, sizeof v->stride);
  v->shape[dim] = length;
  v->data = (char *)x->data + start * x->stride[dim] * (int64_t)tl_dtype_size(x->dtype);
  if (tl_needs_grad(&x, 1)) {
    tl_node *node = tl_record("slice", slice_backward, v, &x, 1);
    node->i[0] = dim;
    node->i[1] = start;
  }
  return v;
}

// --- contiguous --------------------------------------------------------------------

static void contiguous_backward(tl_node *node) {
  tl_tensor *x = node->in[0];
  if (!x->requires_grad) return;
  // The copy and the source's gradient share the logical order: a flat add.
  tl_dev_axpy(x->device, tl_grad(x)->data, node->out->grad->data, 1.0f, tl_numel(x));
}

tl_tensor *tl_contiguous(tl_tensor *x) {
  check_input(x, "contiguous");
  if (tl_is_contiguous(x)) return x;
  tl_tensor *y = tl_empty_on(x->device, x->dtype, x->rank, x->shape);
  // f32 through the parallel strided kernel (either device); other dtypes (ids,
  // masks) are small and go through tl_copy's generic element walk (CPU).
  if (x->dtype == TL_F32)
    tl_dev_strided_copy(x->device, y->data, y->stride, x->data, x->stride, x->shape, x->rank);
  else
    tl_copy(y, x);
  if (tl_needs_grad(&x, 1)) tl_record("contiguous", contiguous_backward, y, &x, 1);
  return y;
}
