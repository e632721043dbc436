// ops_select.c: embedding, gather_rows and concat with their backward passes.
#include "core/ops.h"
#include "core/dev_kernels.h"
#include "core/device.h"
#include "core/ops_cuda.h"
#include "kernels/cpu/select.h"

static void check_f32(const tl_tensor *x, const char *op) {
  TL_ASSERTF(x->dtype == TL_F32, "%s: expected f32, got %s", op, tl_dtype_name(x->dtype));
}

static const char *shp(const tl_tensor *t, char *buf) {
  snprintf(buf, 96, "%s", tl_shape_str(t));
  return buf;
}
#define SHP(t) shp((t), (char[96]){0})

static float *fdata(const tl_tensor *t) { return (float *)t->data; }

// ids must be dense i32 with every value in [0, n_rows); aborts naming the first bad one.
static void check_ids(const tl_tensor *ids, int64_t n_rows, const char *op) {
  TL_ASSERTF(ids->dtype == TL_I32, "%s: ids must be i32, got %s", op,
             tl_dtype_name(ids->dtype));
  TL_ASSERTF(tl_is_contiguous(ids), "%s: ids %s must be contiguous", op, SHP(ids));
  const int32_t *id = ids->data;
  for (int64_t i = 0; i < tl_numel(ids); i++)
    TL_ASSERTF(id[i] >= 0 && id[i] < n_rows, "%s: id %d at position %ld is outside [0, %ld)",
               op, id[i], (long)i, (long)n_rows);
}

// --- embedding and gather_rows: y[i, :] = table[ids[i], :] -------------------------

static void lookup_backward(tl_node *node) {
  tl_tensor *table = node->in[0], *ids = node->in[1];
  if (!table->requires_grad) return;
  int64_t C = table->shape[1];
  tl_cpu_scatter_add_rows(fdata(tl_grad(table)), fdata(node->out->grad), ids->data,
                          tl_numel(ids), C);
}

// Rows of table [V, C] picked by ids; output shape = ids' shape + [C].
static tl_tensor *lookup(tl_tensor *table, tl_tensor *ids, const char *name) {
  check_f32(table, name);
  TL_ASSERTF(table->rank == 2, "%s: table %s must be [rows, C]", name, SHP(table));
  TL_ASSERTF(ids->rank < TL_MAX_RANK, "%s: ids %s leave no room for C", name, SHP(ids));
#ifdef TL_HAVE_CUDA
  if (table->device == TL_CUDA) return tl_lookup_cuda(table, ids, name);
#endif
  check_ids(ids, table->shape[0], name);
  table = tl_contiguous(table);

  int64_t shape[TL_MAX_RANK], C = table->shape[1];
  for (int d = 0; d < ids->rank; d++) shape[d] = ids->shape[d];
  shape[ids->rank] = C;
  tl_tensor *y = tl_empty(TL_F32, ids->rank + 1, shape);
  tl_cpu_gather_rows(fdata(y), fdata(table), ids->data, tl_numel(ids), C);

  tl_tensor *in[2] = {table, ids};
  if (tl_needs_grad(in, 2)) tl_record(name, lookup_backward, y, in, 2);
  return y;
}

tl_tensor *tl_embedding(tl_tensor *table, tl_tensor *ids) {
  return lookup(table, ids, "embedding");
}

tl_tensor *tl_gather_rows(tl_tensor *x, tl_tensor *rows) {
  TL_ASSERTF(rows->rank == 1, "gather_rows: rows %s must be [M]", SHP(rows));
  return lookup(x, rows, "gather_rows");
}

// --- concat --------------------------------------------------------------------------

// Rows before dim, and each input's elements per such row.
static int64_t outer_size(const tl_tensor *x, int dim) {
  int64_t n = 1;
  for (int d = 0; d < dim; d++) n *= x->shape[d];
  return n;
}

static int64_t inner_size(const tl_tensor *x, int dim) {
  int64_t n = 1;
  for (int d = dim; d < x->rank; d++) n *= x->shape[d];
  return n;
}

static void concat_backward(tl_node *node) {
  int dim = (int)node->i[0];
  tl_tensor *y = node->out;
  int64_t outer = outer_size(y, dim), total = inner_size(y, dim), off = 0;
  // Each input takes back its band of every output row.
  for (int k = 0; k < node->n_in; k++) {
    tl_tensor *x = node->in[k];
    int64_t inner = inner_size(x, dim);
    if (x->requires_grad)
      tl_dev_split_add(x->device, fdata(tl_grad(x)), fdata(y->grad), outer, inner, total, off);
    off += inner;
  }
}

// At most TL_NODE_MAX_INPUTS inputs, all contiguous-able and shape-checked.
static tl_tensor *concat_few(tl_tensor *const *xs_in, int n, int dim) {
  tl_tensor *xs[TL_NODE_MAX_INPUTS];
  const float *ptr[TL_NODE_MAX_INPUTS];
  int64_t inner[TL_NODE_MAX_INPUTS], shape[TL_MAX_RANK];
  const tl_tensor *x0 = xs_in[0];
  for (int d = 0; d < x0->rank; d++) shape[d] = x0->shape[d];
  shape[dim] = 0;

  // Same rank and equal dims except dim; the output's dim is the sum.
  for (int k = 0; k < n; k++) {
    check_f32(xs_in[k], "concat");
    TL_ASSERTF(xs_in[k]->device == x0->device, "concat: inputs on different devices");
    TL_ASSERTF(xs_in[k]->rank == x0->rank, "concat: %s and %s differ in rank", SHP(x0),
               SHP(xs_in[k]));
    for (int d = 0; d < x0->rank; d++)
      TL_ASSERTF(d == dim || xs_in[k]->shape[d] == x0->shape[d],
                 "concat: %s and %s differ outside dim %d", SHP(x0), SHP(xs_in[k]), dim);
    xs[k] = tl_contiguous(xs_in[k]);
    ptr[k] = fdata(xs[k]);
    inner[k] = inner_size(xs[k], dim);
    shape[dim] += xs[k]->shape[dim];
  }

  tl_tensor *y = tl_empty_on(x0->device, TL_F32, x0->rank, shape);
  tl_dev_concat(x0->device, fdata(y), ptr, inner, n, outer_size(y, dim));
  if (tl_needs_grad(xs, n)) tl_record("concat", concat_backward, y, xs, n)->i[0] = dim;
  return y;
}

tl_tensor *tl_concat(tl_tensor *const *xs, int n, int dim) {
  TL_ASSERTF(n >= 1, "concat: no inputs");
  if (dim < 0) dim += xs[0]->rank;
  TL_ASSERTF(dim >= 0 && dim < xs[0]->rank, "concat: dim %d of %s", dim, SHP(xs[0]));
  if (n == 1) return xs[0];

  // A node holds at most four inputs: longer lists fold in groups, the running
  // result first (copies the head again per group; concat of many is rare).
  tl_tensor *y = concat_few(xs, n < TL_NODE_MAX_INPUTS ? n : TL_NODE_MAX_INPUTS, dim);
  for (int k = TL_NODE_MAX_INPUTS; k < n; k += TL_NODE_MAX_INPUTS - 1) {
    tl_tensor *group[TL_NODE_MAX_INPUTS] = {y};
    int m = n - k < TL_NODE_MAX_INPUTS - 1 ? n - k : TL_NODE_MAX_INPUTS - 1;
    for (int j = 0; j < m; j++) group[1 + j] = xs[k + j];
    y = concat_few(group, 1 + m, dim);
  }
  return y;
}
