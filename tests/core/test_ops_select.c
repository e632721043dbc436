// embedding, gather_rows, concat, and the reductions sum and mean: forward
// against loops written here, backward by finite differences, plus the
// determinism of the embedding scatter-add and the out-of-range abort.
#include <criterion/criterion.h>
#include <omp.h>
#include <signal.h>

#include "core/ops.h"
#include "tests/core/check.h"

TestSuite(ops_select, .init = tl_test_setup, .fini = tl_test_teardown);

// These ops are linear in their f32 inputs: no truncation error, only the f32
// rounding of the weighted output sum over 2 eps (~1e-5); eps 1e-2, atol and rtol
// 1e-4 flag any misplaced or missing gradient (O(1) errors).
static const tl_gradcheck_opts GC = {.eps = 1e-2, .atol = 1e-4, .rtol = 1e-4};

static float *F(const tl_tensor *t) { return (float *)t->data; }
static int32_t *I(const tl_tensor *t) { return (int32_t *)t->data; }

// --- embedding -------------------------------------------------------------------

typedef struct { int64_t V, C; int rank; int64_t ids[3]; } emb_case;
static const emb_case EMB[] = {
    {1, 1, 1, {1}},
    {7, 13, 1, {31}},       // more ids than rows: repeats
    {31, 7, 2, {3, 5}},
    {13, 300, 3, {2, 3, 5}}, // C over one 256-column band
};

static tl_tensor *emb_fn(tl_tensor **in, void *ctx) { return tl_embedding(in[0], in[1]); }

Test(ops_select, embedding_forward) {
  for (int k = 0; k < 4; k++) {
    const emb_case *c = &EMB[k];
    tl_tensor *table = tl_test_randn(k, 1.0f, false, 2, (int64_t[]){c->V, c->C});
    tl_tensor *ids = tl_test_randint(k, 0, (int)c->V, c->rank, c->ids);
    tl_tensor *y = tl_embedding(table, ids);
    cr_assert_eq(y->rank, c->rank + 1);
    cr_assert_eq(y->shape[c->rank], c->C);
    for (int64_t i = 0; i < tl_numel(ids); i++)
      for (int64_t j = 0; j < c->C; j++)
        cr_assert_eq(F(y)[i * c->C + j], F(table)[I(ids)[i] * c->C + j]);
  }
}

Test(ops_select, embedding_backward) {
  for (int k = 0; k < 4; k++) {
    const emb_case *c = &EMB[k];
    tl_tensor *in[2] = {tl_test_randn(10 + k, 1.0f, true, 2, (int64_t[]){c->V, c->C}),
                        tl_test_randint(10 + k, 0, (int)c->V, c->rank, c->ids)};
    cr_assert(tl_test_gradcheck(emb_fn, in, 2, NULL, GC), "case %d", k);
  }
}

// Repeated ids add in id-position order: the gradient equals a serial f32 loop
// bit for bit, on every run and thread count.
Test(ops_select, embedding_backward_deterministic) {
  int64_t V = 5, C = 600, n = 4096;
  tl_tensor *table = tl_test_randn(20, 1.0f, true, 2, (int64_t[]){V, C});
  tl_tensor *ids = tl_test_randint(21, 0, (int)V, 1, &n);
  tl_tensor *up = tl_test_randn(22, 1.0f, false, 2, (int64_t[]){n, C});
  float *ref = calloc((size_t)(V * C), sizeof(float));
  for (int64_t i = 0; i < n; i++)
    for (int64_t j = 0; j < C; j++) ref[I(ids)[i] * C + j] += F(up)[i * C + j];
  for (int run = 0; run < 2; run++) {
    table->grad = NULL;
    tl_backward_with(tl_embedding(table, ids), up);
    tl_tape_reset();
    cr_assert(memcmp(F(table->grad), ref, (size_t)(V * C) * sizeof(float)) == 0, "run %d", run);
  }
  free(ref);
}

Test(ops_select, embedding_id_out_of_range, .signal = SIGABRT) {
  tl_tensor *table = tl_test_randn(1, 1.0f, false, 2, (int64_t[]){7, 3});
  tl_tensor *ids = tl_test_randint(1, 0, 7, 1, (int64_t[]){5});
  I(ids)[3] = 7;
  tl_embedding(table, ids);
}

// --- gather_rows --------------------------------------------------------------------

static tl_tensor *gather_fn(tl_tensor **in, void *ctx) { return tl_gather_rows(in[0], in[1]); }

Test(ops_select, gather_rows) {
  static const int64_t shapes[][3] = {{1, 1, 1}, {13, 7, 5}, {7, 31, 13}}; // N, C, M
  for (int k = 0; k < 3; k++) {
    int64_t N = shapes[k][0], C = shapes[k][1], M = shapes[k][2];
    tl_tensor *in[2] = {tl_test_randn(30 + k, 1.0f, true, 2, (int64_t[]){N, C}),
                        tl_test_randint(30 + k, 0, (int)N, 1, &M)};
    tl_tensor *y = tl_gather_rows(in[0], in[1]);
    for (int64_t i = 0; i < M; i++)
      for (int64_t j = 0; j < C; j++) cr_assert_eq(F(y)[i * C + j], F(in[0])[I(in[1])[i] * C + j]);
    cr_assert(tl_test_gradcheck(gather_fn, in, 2, NULL, GC), "case %d", k);
  }
}

// --- concat -------------------------------------------------------------------------

typedef struct { int n, dim; } cat_case;

// n inputs of shape [2, 3+k, 5] (dim 1), [1+k, 3, 5] (dim 0) or [2, 3, 1+k] (dim 2).
static tl_tensor **cat_inputs(const cat_case *c, bool grad, uint64_t seed) {
  tl_tensor **xs = tl_arena_alloc(&tl_test_arena, (size_t)c->n * sizeof *xs);
  for (int k = 0; k < c->n; k++) {
    int64_t shape[3] = {2, 3, 5};
    shape[c->dim] = 1 + k;
    xs[k] = tl_test_randn(seed + k, 1.0f, grad, 3, shape);
  }
  return xs;
}

static tl_tensor *cat_fn(tl_tensor **in, void *ctx) {
  const cat_case *c = ctx;
  return tl_concat(in, c->n, c->dim);
}

static const cat_case CAT[] = {{2, 0}, {3, 1}, {2, 2}, {6, 1}, {9, 2}, {1, 0}};

Test(ops_select, concat_forward) {
  for (int t = 0; t < 6; t++) {
    const cat_case *c = &CAT[t];
    tl_tensor **xs = cat_inputs(c, false, 40);
    tl_tensor *y = tl_concat(xs, c->n, c->dim);
    // Walk the output by index; find which input and position each element is from.
    int64_t idx[3];
    for (idx[0] = 0; idx[0] < y->shape[0]; idx[0]++)
      for (idx[1] = 0; idx[1] < y->shape[1]; idx[1]++)
        for (idx[2] = 0; idx[2] < y->shape[2]; idx[2]++) {
          int64_t src[3] = {idx[0], idx[1], idx[2]};
          int k = 0;
          while (src[c->dim] >= xs[k]->shape[c->dim]) src[c->dim] -= xs[k++]->shape[c->dim];
          cr_assert_eq(tl_get_f32(y, idx), tl_get_f32(xs[k], src), "case %d", t);
        }
  }
}

Test(ops_select, concat_backward) {
  for (int t = 0; t < 6; t++) {
    tl_tensor **xs = cat_inputs(&CAT[t], true, 50);
    if (CAT[t].n == 1) continue; // returns its input: nothing recorded
    cr_assert(tl_test_gradcheck(cat_fn, xs, CAT[t].n, (void *)&CAT[t], GC), "case %d", t);
  }
}

// Strided inputs are copied first and still get their gradient.
static tl_tensor *cat_strided_fn(tl_tensor **in, void *ctx) {
  tl_tensor *xs[2] = {tl_transpose(in[0], 0, 1), in[1]}; // [7, 3] and [4, 3]
  return tl_concat(xs, 2, 0);
}

Test(ops_select, concat_strided) {
  tl_tensor *in[2] = {tl_test_randn(60, 1.0f, true, 2, (int64_t[]){3, 7}),
                      tl_test_randn(61, 1.0f, true, 2, (int64_t[]){4, 3})};
  tl_tensor *y = cat_strided_fn(in, NULL);
  for (int64_t r = 0; r < 7; r++)
    for (int64_t c = 0; c < 3; c++) cr_assert_eq(F(y)[r * 3 + c], F(in[0])[c * 7 + r]);
  cr_assert(tl_test_gradcheck(cat_strided_fn, in, 2, NULL, GC));
}

// --- sum and mean --------------------------------------------------------------------

static tl_tensor *sum_fn(tl_tensor **in, void *ctx) { return tl_sum(in[0]); }
static tl_tensor *mean_fn(tl_tensor **in, void *ctx) { return tl_mean(in[0]); }

// Forward: summed in double, so within one f32 rounding of the double sum of
// the same values (plus n * 1e-16 relative for the double accumulation).
Test(ops_select, sum_and_mean) {
  static const int64_t sizes[] = {1, 7, 13, 31, 100003};
  for (int s = 0; s < 5; s++) {
    tl_tensor *x = tl_test_randn(70 + s, 1.0f, true, 1, &sizes[s]);
    double ref = 0, ref_abs = 0;
    for (int64_t i = 0; i < sizes[s]; i++) ref += F(x)[i], ref_abs += fabs(F(x)[i]);
    tl_tensor *sum = tl_sum(x), *mean = tl_mean(x);
    cr_assert_eq(sum->rank, 0);
    double tol = 6e-8 * fabs(ref) + 1e-15 * ref_abs;
    cr_assert(fabs(F(sum)[0] - ref) <= tol, "n %ld: %g vs %g", (long)sizes[s], F(sum)[0], ref);
    cr_assert(fabs(F(mean)[0] - ref / sizes[s]) <= tol / sizes[s] + 1e-30);
    if (s < 4) {
      cr_assert(tl_test_gradcheck(sum_fn, &x, 1, NULL, GC));
      cr_assert(tl_test_gradcheck(mean_fn, &x, 1, NULL, GC));
    }
  }
}

// The reductions promise results independent of the thread count: the sum's 64
// fixed chunks, the column sums' per-band order, the scatter-add's per-band order.
Test(ops_select, reductions_independent_of_thread_count) {
  int64_t n = 100003, V = 11, C = 517, N = 2003;
  tl_tensor *x = tl_test_randn(80, 1.0f, false, 1, &n);
  tl_tensor *a = tl_test_randn(81, 1.0f, false, 2, (int64_t[]){N, C});
  tl_tensor *table = tl_test_randn(82, 1.0f, true, 2, (int64_t[]){V, C});
  tl_tensor *bias = tl_test_randn(83, 1.0f, true, 1, &C);
  tl_tensor *ids = tl_test_randint(84, 0, (int)V, 1, &N);
  float sums[2], *tg[2], *bg[2];
  int threads[2] = {1, 3};
  int saved = omp_get_max_threads();
  for (int k = 0; k < 2; k++) {
    omp_set_num_threads(threads[k]);
    sums[k] = F(tl_sum(x))[0];
    table->grad = bias->grad = NULL;
    tl_backward_with(tl_add(tl_embedding(table, ids), bias), a);
    tl_tape_reset();
    tg[k] = F(table->grad), bg[k] = F(bias->grad);
  }
  omp_set_num_threads(saved);
  cr_assert_eq(sums[0], sums[1]);
  cr_assert(memcmp(tg[0], tg[1], (size_t)(V * C) * sizeof(float)) == 0);
  cr_assert(memcmp(bg[0], bg[1], (size_t)C * sizeof(float)) == 0);
}
