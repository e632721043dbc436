// ops_linalg.c: matmul (batched, either operand transposed, rank-2 b shared over
// a's batch) and linear (x W^T + bias), with their backward passes. Every product
// is one cblas_sgemm or a loop of them (kernels/cpu/linalg.c); strided operands
// whose last two dims are row- or column-major go to BLAS as they are, with a
// leading dimension and a trans flag, and only other layouts are copied.
#include "core/ops.h"
#include "core/dev_kernels.h"
#include "core/device.h"

static void check_input(const tl_tensor *x, const char *op) {
  TL_ASSERTF(x->dtype == TL_F32, "%s: expected f32, got %s", op, tl_dtype_name(x->dtype));
}

static const char *shp(const tl_tensor *t, char *buf) {
  snprintf(buf, 96, "%s", tl_shape_str(t));
  return buf;
}
#define SHP(t) shp((t), (char[96]){0})

static float *fdata(const tl_tensor *t) { return (float *)t->data; }

// --- operand layouts ---------------------------------------------------------------

// The last two dims of x [.., R, C] as a BLAS matrix, or false when neither
// row-major (unit column stride) nor column-major (unit row stride) in memory.
// Batch dims (up to two, leading) keep their strides.
static bool blas_layout(const tl_tensor *x, tl_cpu_mat *m) {
  int r = x->rank;
  int64_t R = x->shape[r - 2], C = x->shape[r - 1];
  int64_t sr = x->stride[r - 2], sc = x->stride[r - 1];
  // A dimension of size 1 is never stepped along: give it the stride that fits.
  if (C == 1) sc = 1;
  if (R == 1) sr = C > 1 ? C : 1;
  m->p = x->data;
  m->bstride[0] = r == 4 ? x->stride[0] : 0;
  m->bstride[1] = r >= 3 ? x->stride[r - 3] : 0;
  if (sc == 1 && sr >= (C > 1 ? C : 1)) {
    m->ld = sr, m->t = false; // rows of C elements, ld apart
    return true;
  }
  if (sr == 1 && sc >= (R > 1 ? R : 1)) {
    m->ld = sc, m->t = true;  // stored as the transpose: columns are contiguous
    return true;
  }
  return false;
}

// The contiguous layout of a gradient (or output) of shape [.., R, C].
static tl_cpu_mat dense_layout(float *p, const tl_tensor *like) {
  int r = like->rank;
  int64_t R = like->shape[r - 2], C = like->shape[r - 1];
  tl_cpu_mat m = {.p = p, .ld = C > 1 ? C : 1, .t = false};
  m.bstride[1] = r >= 3 ? R * C : 0;
  m.bstride[0] = r == 4 ? like->shape[1] * R * C : 0;
  return m;
}

// Batch dims of a [.., M, K]: {dim 0 of a rank-4, the dim before the matrix}.
static void batch_dims(const tl_tensor *a, int64_t nb[2]) {
  nb[0] = a->rank == 4 ? a->shape[0] : 1;
  nb[1] = a->rank >= 3 ? a->shape[a->rank - 3] : 1;
}

// True when m's matrices, batch after batch, are one tall row-major matrix:
// consecutive rows ld apart across batch boundaries too.
static bool rows_flatten(tl_cpu_mat m, int64_t rows, const int64_t nb[2]) {
  if (m.t) return false;
  if (nb[1] > 1 && m.bstride[1] != rows * m.ld) return false;
  if (nb[0] > 1 && m.bstride[0] != nb[1] * rows * m.ld) return false;
  return true;
}

// --- matmul ------------------------------------------------------------------------

typedef struct {
  int64_t M, N, K, nb[2];
  bool shared_b; // b is rank 2, used by every batch of a
} matmul_dims;

static matmul_dims matmul_shape(const tl_tensor *a, const tl_tensor *b, bool ta, bool tb) {
  matmul_dims d;
  int ra = a->rank, rb = b->rank;
  d.M = ta ? a->shape[ra - 1] : a->shape[ra - 2];
  d.K = ta ? a->shape[ra - 2] : a->shape[ra - 1];
  d.N = tb ? b->shape[rb - 2] : b->shape[rb - 1];
  int64_t kb = tb ? b->shape[rb - 1] : b->shape[rb - 2];
  TL_ASSERTF(kb == d.K, "matmul: inner dims differ: a %s%s, b %s%s", SHP(a), ta ? "^T" : "",
             SHP(b), tb ? "^T" : "");
  batch_dims(a, d.nb);
  d.shared_b = rb == 2;
  TL_ASSERTF(d.shared_b || rb == ra, "matmul: b %s must be rank 2 or match a %s", SHP(b),
             SHP(a));
  for (int k = 0; k < ra - 2 && !d.shared_b; k++)
    TL_ASSERTF(a->shape[k] == b->shape[k], "matmul: batch dims of a %s and b %s differ",
               SHP(a), SHP(b));
  return d;
}

// Operand as BLAS sees it, after the op's own transpose flag.
static tl_cpu_mat op_layout(const tl_tensor *x, bool trans, bool shared) {
  tl_cpu_mat m;
  TL_ASSERT(blas_layout(x, &m));
  if (shared) m.bstride[0] = m.bstride[1] = 0;
  return trans ? tl_cpu_mat_t(m) : m;
}

static void matmul_backward(tl_node *node) {
  tl_tensor *a = node->in[0], *b = node->in[1], *y = node->out;
  bool ta = node->i[0], tb = node->i[1];
  matmul_dims d = matmul_shape(a, b, ta, tb);
  tl_cpu_mat opa = op_layout(a, ta, false), opb = op_layout(b, tb, d.shared_b);
  tl_cpu_mat g = dense_layout(fdata(y->grad), y); // dY [.., M, N]
  tl_device dev = a->device;

  if (a->requires_grad) {
    tl_tensor *ga = tl_grad(a);
    tl_cpu_mat gm = dense_layout(fdata(ga), a);
    int64_t gs[2] = {gm.bstride[0], gm.bstride[1]};
    if (!ta && d.shared_b) {
      // dA = dY B^T for all batches at once: both are dense [batch*M, ..].
      tl_dev_gemm(dev, d.nb[0] * d.nb[1] * d.M, d.K, d.N, g, tl_cpu_mat_t(opb), 1.0f, fdata(ga),
                  gm.ld);
    } else if (!ta) {
      tl_dev_gemm_batched(dev, d.nb, d.M, d.K, d.N, g, tl_cpu_mat_t(opb), 1.0f, fdata(ga), gm.ld,
                          gs);
    } else {
      // a holds A^T [K, M]: its gradient is (dY B^T)^T = B dY^T.
      tl_dev_gemm_batched(dev, d.nb, d.K, d.M, d.N, opb, tl_cpu_mat_t(g), 1.0f, fdata(ga), gm.ld,
                          gs);
    }
  }

  if (b->requires_grad) {
    tl_tensor *gb = tl_grad(b);
    tl_cpu_mat gm = dense_layout(fdata(gb), b);
    int64_t gs[2] = {d.shared_b ? 0 : gm.bstride[0], d.shared_b ? 0 : gm.bstride[1]};
    int64_t rows = d.nb[0] * d.nb[1] * d.M;
    if (d.shared_b && rows_flatten(opa, d.M, d.nb)) {
      // Shared b: the batch sum is one product over the stacked rows of A and dY.
      if (!tb) tl_dev_gemm(dev, d.K, d.N, rows, tl_cpu_mat_t(opa), g, 1.0f, fdata(gb), gm.ld);
      else tl_dev_gemm(dev, d.N, d.K, rows, tl_cpu_mat_t(g), opa, 1.0f, fdata(gb), gm.ld);
    } else if (!tb) {
      // dB = A^T dY per batch (summed in order into a shared b's gradient).
      tl_dev_gemm_batched(dev, d.nb, d.K, d.N, d.M, tl_cpu_mat_t(opa), g, 1.0f, fdata(gb), gm.ld,
                          gs);
    } else {
      // b holds B^T [N, K]: its gradient is dY^T A.
      tl_dev_gemm_batched(dev, d.nb, d.N, d.K, d.M, tl_cpu_mat_t(g), opa, 1.0f, fdata(gb), gm.ld,
                          gs);
    }
  }
}

tl_tensor *tl_matmul(tl_tensor *a, tl_tensor *b, bool trans_a, bool trans_b) {
  check_input(a, "matmul");
  check_input(b, "matmul");
  TL_ASSERTF(a->rank >= 2 && b->rank >= 2, "matmul: a %s and b %s need rank >= 2", SHP(a),
             SHP(b));
  matmul_dims d = matmul_shape(a, b, trans_a, trans_b);
  TL_ASSERTF(a->device == b->device, "matmul: a and b are on different devices");
  tl_device dev = a->device;

  // Operands BLAS cannot read in place become contiguous copies (on the tape).
  tl_cpu_mat m;
  if (!blas_layout(a, &m)) a = tl_contiguous(a);
  if (!blas_layout(b, &m)) b = tl_contiguous(b);
  tl_cpu_mat opa = op_layout(a, trans_a, false), opb = op_layout(b, trans_b, d.shared_b);

  // Output [batch.., M, N], dense.
  int64_t shape[TL_MAX_RANK];
  for (int k = 0; k < a->rank - 2; k++) shape[k] = a->shape[k];
  shape[a->rank - 2] = d.M;
  shape[a->rank - 1] = d.N;
  tl_tensor *y = tl_empty_on(dev, TL_F32, a->rank, shape);
  tl_cpu_mat ym = dense_layout(fdata(y), y);

  if (d.shared_b && rows_flatten(opa, d.M, d.nb)) {
    // Every batch times the same b: one tall product, which BLAS threads best.
    tl_dev_gemm(dev, d.nb[0] * d.nb[1] * d.M, d.N, d.K, opa, opb, 0.0f, fdata(y), ym.ld);
  } else {
    int64_t ys[2] = {ym.bstride[0], ym.bstride[1]};
    tl_dev_gemm_batched(dev, d.nb, d.M, d.N, d.K, opa, opb, 0.0f, fdata(y), ym.ld, ys);
  }

  tl_tensor *in[2] = {a, b};
  if (tl_needs_grad(in, 2)) {
    tl_node *node = tl_record("matmul", matmul_backward, y, in, 2);
    node->i[0] = trans_a;
    node->i[1] = trans_b;
  }
  return y;
}

// --- linear ------------------------------------------------------------------------

static void linear_backward(tl_node *node) {
  tl_tensor *x = node->in[0], *w = node->in[1], *bias = node->n_in > 2 ? node->in[2] : NULL;
  int64_t in = w->shape[1], out = w->shape[0];
  int64_t rows = tl_numel(node->out) / (out ? out : 1);
  tl_device dev = x->device;
  tl_cpu_mat dy = {.p = fdata(node->out->grad), .ld = out > 1 ? out : 1};
  tl_cpu_mat xm = {.p = fdata(x), .ld = in > 1 ? in : 1};
  tl_cpu_mat wm = {.p = fdata(w), .ld = in > 1 ? in : 1};

  // dX [rows, in] += dY [rows, out] W [out, in]
  if (x->requires_grad) tl_dev_gemm(dev, rows, in, out, dy, wm, 1.0f, fdata(tl_grad(x)), wm.ld);
  // dW [out, in] += dY^T [out, rows] X [rows, in]
  if (w->requires_grad)
    tl_dev_gemm(dev, out, in, rows, tl_cpu_mat_t(dy), xm, 1.0f, fdata(tl_grad(w)), wm.ld);
  // dbias [out] += column sums of dY
  if (bias && bias->requires_grad)
    tl_dev_colsum_acc(dev, fdata(tl_grad(bias)), dy.p, NULL, 1.0f, rows * out, out);
}

tl_tensor *tl_linear(tl_tensor *x, tl_tensor *w, tl_tensor *bias) {
  check_input(x, "linear");
  check_input(w, "linear");
  TL_ASSERTF(w->rank == 2 && x->rank >= 1 && x->shape[x->rank - 1] == w->shape[1],
             "linear: x %s, w %s: expected x [.., in] and w [out, in]", SHP(x), SHP(w));
  int64_t in = w->shape[1], out = w->shape[0];
  TL_ASSERTF(x->device == w->device && (!bias || bias->device == x->device),
             "linear: x, w and bias are on different devices");
  tl_device dev = x->device;
  if (bias) {
    check_input(bias, "linear");
    TL_ASSERTF(bias->rank == 1 && bias->shape[0] == out, "linear: bias %s for w %s",
               SHP(bias), SHP(w));
    bias = tl_contiguous(bias);
  }
  x = tl_contiguous(x);
  w = tl_contiguous(w);

  // y [.., out]: bias rows first, then one GEMM y += x W^T over all rows.
  int64_t shape[TL_MAX_RANK];
  for (int k = 0; k < x->rank; k++) shape[k] = x->shape[k];
  shape[x->rank - 1] = out;
  tl_tensor *y = tl_empty_on(dev, TL_F32, x->rank, shape);
  int64_t rows = tl_numel(y) / (out ? out : 1);
  if (bias) tl_dev_fill_rows(dev, fdata(y), fdata(bias), rows, out);
  tl_cpu_mat xm = {.p = fdata(x), .ld = in > 1 ? in : 1};
  tl_cpu_mat wt = {.p = fdata(w), .ld = in > 1 ? in : 1, .t = true};
  tl_dev_gemm(dev, rows, out, in, xm, wt, bias ? 1.0f : 0.0f, fdata(y), out > 1 ? out : 1);

  tl_tensor *inputs[3] = {x, w, bias};
  int n_in = bias ? 3 : 2;
  if (tl_needs_grad(inputs, n_in)) tl_record("linear", linear_backward, y, inputs, n_in);
  return y;
}
