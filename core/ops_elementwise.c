// ops_elementwise.c: add, sub, mul (same shape or row broadcast), scale and the
// activations (gelu, tanh, silu, swiglu). Shape checks and the tape here; the
// loops in kernels/cpu/elementwise.c.
#include "core/ops.h"
#include "core/dev_kernels.h"
#include "core/device.h"

static void check_input(const tl_tensor *x, const char *op) {
  TL_ASSERTF(x->dtype == TL_F32, "%s: expected f32, got %s", op, tl_dtype_name(x->dtype));
}

static float *fdata(const tl_tensor *t) { return (float *)t->data; }

// tl_shape_str into the caller's buffer, so one message can name two shapes.
static const char *shp(const tl_tensor *t, char *buf) {
  snprintf(buf, 96, "%s", tl_shape_str(t));
  return buf;
}
#define SHP(t) shp((t), (char[96]){0})

// Output of an elementwise op: contiguous, a's shape, a's device.
static tl_tensor *new_like(const tl_tensor *a) {
  return tl_empty_on(a->device, TL_F32, a->rank, a->shape);
}

// --- add, sub, mul -------------------------------------------------------------

// True when b's shape equals the trailing dims of a's (same shape included).
static bool row_broadcastable(const tl_tensor *a, const tl_tensor *b) {
  if (b->rank > a->rank) return false;
  for (int d = 0; d < b->rank; d++)
    if (b->shape[d] != a->shape[a->rank - b->rank + d]) return false;
  return true;
}

static void binary_backward(tl_node *node) {
  tl_tensor *a = node->in[0], *b = node->in[1];
  tl_cpu_binop op = (tl_cpu_binop)node->i[0];
  const float *dy = fdata(node->out->grad);
  int64_t n = tl_numel(a), nb = tl_numel(b);
  tl_device dev = a->device;

  // d/da: dy for add and sub, dy * b (b broadcast over rows) for mul.
  if (a->requires_grad) {
    if (op == TL_BIN_MUL) tl_dev_mul_acc(dev, fdata(tl_grad(a)), dy, fdata(b), n, nb);
    else tl_dev_axpy(dev, fdata(tl_grad(a)), dy, 1.0f, n);
  }
  // d/db: the same with the broadcast rows summed out.
  if (b->requires_grad) {
    float s = op == TL_BIN_SUB ? -1.0f : 1.0f;
    const float *w = op == TL_BIN_MUL ? fdata(a) : NULL;
    float *db = fdata(tl_grad(b));
    if (nb == n && w) tl_dev_mul_acc(dev, db, dy, w, n, n);
    else if (nb == n) tl_dev_axpy(dev, db, dy, s, n);
    else tl_dev_colsum_acc(dev, db, dy, w, s, n, nb);
  }
}

static tl_tensor *binary(tl_tensor *a, tl_tensor *b, tl_cpu_binop op, const char *name) {
  check_input(a, name);
  check_input(b, name);
  TL_ASSERTF(row_broadcastable(a, b), "%s: b %s is neither a's shape %s nor its trailing dims",
             name, SHP(b), SHP(a));
  TL_ASSERTF(a->device == b->device, "%s: a and b are on different devices", name);
  a = tl_contiguous(a);
  b = tl_contiguous(b);

  tl_tensor *y = new_like(a);
  tl_dev_binary(a->device, op, fdata(a), fdata(b), fdata(y), tl_numel(a), tl_numel(b));
  tl_tensor *in[2] = {a, b};
  if (tl_needs_grad(in, 2)) tl_record(name, binary_backward, y, in, 2)->i[0] = op;
  return y;
}

tl_tensor *tl_add(tl_tensor *a, tl_tensor *b) { return binary(a, b, TL_BIN_ADD, "add"); }
tl_tensor *tl_sub(tl_tensor *a, tl_tensor *b) { return binary(a, b, TL_BIN_SUB, "sub"); }
tl_tensor *tl_mul(tl_tensor *a, tl_tensor *b) { return binary(a, b, TL_BIN_MUL, "mul"); }

// --- scale -----------------------------------------------------------------------

static void scale_backward(tl_node *node) {
  tl_tensor *a = node->in[0];
  if (a->requires_grad)
    tl_dev_axpy(a->device, fdata(tl_grad(a)), fdata(node->out->grad), node->f[0], tl_numel(a));
}

tl_tensor *tl_scale(tl_tensor *a, float s) {
  check_input(a, "scale");
  a = tl_contiguous(a);
  tl_tensor *y = new_like(a);
  tl_dev_scale(a->device, fdata(y), fdata(a), s, tl_numel(a));
  if (tl_needs_grad(&a, 1)) tl_record("scale", scale_backward, y, &a, 1)->f[0] = s;
  return y;
}

// --- unary activations -----------------------------------------------------------

typedef void (*unary_fwd)(tl_device dev, float *y, const float *x, int64_t n);

// Runs a unary kernel on a contiguous copy of x and records backward.
static tl_tensor *unary(tl_tensor *x, unary_fwd fwd, tl_backward_fn bwd, const char *name) {
  check_input(x, name);
  x = tl_contiguous(x);
  tl_tensor *y = new_like(x);
  fwd(x->device, fdata(y), fdata(x), tl_numel(x));
  if (tl_needs_grad(&x, 1)) tl_record(name, bwd, y, &x, 1);
  return y;
}

static void gelu_backward(tl_node *node) {
  tl_tensor *x = node->in[0];
  if (x->requires_grad)
    tl_dev_gelu_bwd(x->device, fdata(tl_grad(x)), fdata(node->out->grad), fdata(x),
                    tl_numel(x));
}

static void tanh_backward(tl_node *node) {
  tl_tensor *x = node->in[0];
  // 1 - tanh^2 from the saved output, not recomputed.
  if (x->requires_grad)
    tl_dev_tanh_bwd(x->device, fdata(tl_grad(x)), fdata(node->out->grad), fdata(node->out),
                    tl_numel(x));
}

static void silu_backward(tl_node *node) {
  tl_tensor *x = node->in[0];
  if (x->requires_grad)
    tl_dev_silu_bwd(x->device, fdata(tl_grad(x)), fdata(node->out->grad), fdata(x),
                    tl_numel(x));
}

tl_tensor *tl_gelu(tl_tensor *x) { return unary(x, tl_dev_gelu, gelu_backward, "gelu"); }
tl_tensor *tl_tanh(tl_tensor *x) { return unary(x, tl_dev_tanh, tanh_backward, "tanh"); }
tl_tensor *tl_silu(tl_tensor *x) { return unary(x, tl_dev_silu, silu_backward, "silu"); }

// --- swiglu ----------------------------------------------------------------------

static void swiglu_backward(tl_node *node) {
  tl_tensor *g = node->in[0], *u = node->in[1];
  float *dg = g->requires_grad ? fdata(tl_grad(g)) : NULL;
  float *du = u->requires_grad ? fdata(tl_grad(u)) : NULL;
  tl_dev_swiglu_bwd(g->device, dg, du, fdata(node->out->grad), fdata(g), fdata(u),
                    tl_numel(g));
}

tl_tensor *tl_swiglu(tl_tensor *gate, tl_tensor *up) {
  check_input(gate, "swiglu");
  check_input(up, "swiglu");
  TL_ASSERTF(tl_same_shape(gate, up), "swiglu: gate %s, up %s", SHP(gate), SHP(up));
  TL_ASSERTF(gate->device == up->device, "swiglu: gate and up are on different devices");
  gate = tl_contiguous(gate);
  up = tl_contiguous(up);
  tl_tensor *y = new_like(gate);
  tl_dev_swiglu(gate->device, fdata(y), fdata(gate), fdata(up), tl_numel(gate));
  tl_tensor *in[2] = {gate, up};
  if (tl_needs_grad(in, 2)) tl_record("swiglu", swiglu_backward, y, in, 2);
  return y;
}
