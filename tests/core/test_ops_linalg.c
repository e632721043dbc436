// matmul and linear: forward against a triple loop in double written here, the
// no-copy paths for transposed views, and backward by finite differences.
#include <criterion/criterion.h>

#include "core/ops.h"
#include "tests/core/check.h"

TestSuite(ops_linalg, .init = tl_test_setup, .fini = tl_test_teardown);

// Products are bilinear, so central differences have no truncation error; what
// is left is the f32 rounding of the perturbed outputs (a few ulp of |y| ~ 5,
// ~1e-6 after the weighted sum) over 2 eps = 2e-2, i.e. ~1e-4. atol = rtol =
// 1e-3 gives a 10x margin; a wrong or missing term is off by O(1).
static const tl_gradcheck_opts GC = {.eps = 1e-2, .atol = 1e-3, .rtol = 1e-3};

// Forward bound: recursive f32 summation of K products errs by at most
// K u sum_k |a_k b_k| (u = 2^-24, Higham's gamma_K); BLAS's blocked sums do better.
static double dot_tol(int64_t K, double abs_sum) { return (K + 2) * 6e-8 * abs_sum + 1e-30; }

static float *F(const tl_tensor *t) { return (float *)t->data; }

// Element (r, c) of the logical matrix of x at batch b (a rank-2 x ignores b),
// through x's strides; trans reads x^T.
static double mat_at(const tl_tensor *x, int64_t b, int64_t r, int64_t c, bool trans) {
  int64_t idx[4] = {0}, R = trans ? c : r, C = trans ? r : c;
  int k = x->rank;
  if (k == 4) idx[0] = b / x->shape[1], idx[1] = b % x->shape[1];
  if (k == 3) idx[0] = b;
  idx[k - 2] = R;
  idx[k - 1] = C;
  return tl_get_f32(x, idx);
}

// y = op(a) op(b) checked element by element.
static void check_matmul(const tl_tensor *a, const tl_tensor *b, bool ta, bool tb,
                         const tl_tensor *y) {
  int64_t M = y->shape[y->rank - 2], N = y->shape[y->rank - 1];
  int64_t K = ta ? a->shape[a->rank - 2] : a->shape[a->rank - 1];
  int64_t batches = tl_numel(y) / (M * N > 0 ? M * N : 1);
  for (int64_t bt = 0; bt < batches; bt++)
    for (int64_t i = 0; i < M; i++)
      for (int64_t j = 0; j < N; j++) {
        double s = 0, sa = 0;
        for (int64_t k = 0; k < K; k++) {
          double p = mat_at(a, bt, i, k, ta) * mat_at(b, bt, k, j, tb);
          s += p, sa += fabs(p);
        }
        float got = F(y)[(bt * M + i) * N + j];
        cr_assert(fabs(got - s) <= dot_tol(K, sa), "batch %ld (%ld, %ld): %g vs %g",
                  (long)bt, (long)i, (long)j, got, s);
      }
}

typedef struct { int ra; int64_t a[4]; int rb; int64_t b[4]; bool ta, tb; } mm_case;

// Shapes of a and b as stored (already transposed where ta/tb).
static const mm_case CASES[] = {
    {2, {7, 13}, 2, {13, 5}, false, false},
    {2, {13, 7}, 2, {13, 5}, true, false},
    {2, {7, 13}, 2, {5, 13}, false, true},
    {2, {13, 7}, 2, {5, 13}, true, true},
    {2, {1, 1}, 2, {1, 1}, false, false},
    {2, {1, 31}, 2, {31, 1}, false, false},
    {3, {3, 7, 13}, 3, {3, 13, 5}, false, false},
    {3, {3, 13, 7}, 3, {3, 5, 13}, true, true},
    {4, {2, 3, 7, 13}, 4, {2, 3, 13, 5}, false, false},
    {4, {2, 3, 7, 13}, 4, {2, 3, 5, 13}, false, true},
    {4, {2, 3, 7, 13}, 2, {13, 5}, false, false},  // shared b, one tall GEMM
    {3, {5, 13, 7}, 2, {13, 5}, true, false},      // shared b, per-batch loop
    {3, {5, 7, 13}, 2, {5, 13}, false, true},
    {3, {5, 13, 7}, 2, {5, 13}, true, true},
};
#define N_CASES (int)(sizeof CASES / sizeof *CASES)

static tl_tensor *matmul_fn(tl_tensor **in, void *ctx) {
  const mm_case *c = ctx;
  return tl_matmul(in[0], in[1], c->ta, c->tb);
}

Test(ops_linalg, matmul_forward) {
  for (int k = 0; k < N_CASES; k++) {
    const mm_case *c = &CASES[k];
    tl_tensor *a = tl_test_randn(k, 1.0f, false, c->ra, c->a);
    tl_tensor *b = tl_test_randn(100 + k, 1.0f, false, c->rb, c->b);
    tl_tensor *y = tl_matmul(a, b, c->ta, c->tb);
    cr_assert_eq(y->rank, c->ra, "case %d", k);
    check_matmul(a, b, c->ta, c->tb, y);
  }
}

Test(ops_linalg, matmul_backward) {
  for (int k = 0; k < N_CASES; k++) {
    const mm_case *c = &CASES[k];
    tl_tensor *in[2] = {tl_test_randn(200 + k, 1.0f, true, c->ra, c->a),
                        tl_test_randn(300 + k, 1.0f, true, c->rb, c->b)};
    cr_assert(tl_test_gradcheck(matmul_fn, in, 2, (void *)c, GC), "case %d", k);
  }
}

// Transposed views of the last two dims reach BLAS as trans flags: the tape gets
// the two transposes and the matmul, no contiguous copy, and the result matches.
static tl_tensor *transposed_views_fn(tl_tensor **in, void *ctx) {
  return tl_matmul(tl_transpose(in[0], -1, -2), tl_transpose(in[1], 1, 2), false, true);
}

Test(ops_linalg, transposed_views_without_copies) {
  tl_tensor *in[2] = {tl_test_randn(1, 1.0f, true, 3, (int64_t[]){3, 13, 7}),
                      tl_test_randn(2, 1.0f, true, 3, (int64_t[]){3, 13, 5})};
  tl_tape_reset();
  tl_tensor *y = transposed_views_fn(in, NULL);
  cr_assert_eq(tl_tape_length(), 3);
  check_matmul(in[0], in[1], true, false, y);
  cr_assert(tl_test_gradcheck(transposed_views_fn, in, 2, NULL, GC));
}

// Attention's layout: q, k come out of a linear as [B, T, H, D] and are viewed as
// [B, H, T, D] (transpose 1, 2): rows ld = H*D apart, batch strides (T*H*D, D)
// that do not stack. scores = q k^T goes to BLAS without copies.
static tl_tensor *attention_layout_fn(tl_tensor **in, void *ctx) {
  tl_tensor *q = tl_transpose(in[0], 1, 2), *k = tl_transpose(in[1], 1, 2);
  return tl_matmul(q, k, false, true); // [2, 3, 7, 5] x [2, 3, 11, 5]^T -> [2, 3, 7, 11]
}

Test(ops_linalg, attention_layout) {
  tl_tensor *in[2] = {tl_test_randn(7, 1.0f, true, 4, (int64_t[]){2, 7, 3, 5}),
                      tl_test_randn(8, 1.0f, true, 4, (int64_t[]){2, 11, 3, 5})};
  tl_tape_reset();
  tl_tensor *y = attention_layout_fn(in, NULL);
  cr_assert_eq(tl_tape_length(), 3); // two transposes and the matmul
  check_matmul(tl_transpose(in[0], 1, 2), tl_transpose(in[1], 1, 2), false, true, y);
  cr_assert(tl_test_gradcheck(attention_layout_fn, in, 2, NULL, GC));
}

// A view whose last two dims have no unit stride is copied first (on the tape),
// and a slice of rows keeps its leading dimension (no copy).
static tl_tensor *strided_fn(tl_tensor **in, void *ctx) {
  tl_tensor *a = tl_transpose(in[0], 0, 2);    // [7, 3, 13] -> [13, 3, 7]: no unit stride
  tl_tensor *b = tl_slice(in[1], 1, 2, 7);     // [13, 11] -> [13, 7], ld 11
  return tl_matmul(a, b, false, true);         // [13, 3, 7] x [13, 7]^T -> [13, 3, 13]
}

Test(ops_linalg, strided_operands) {
  tl_tensor *in[2] = {tl_test_randn(3, 1.0f, true, 3, (int64_t[]){7, 3, 13}),
                      tl_test_randn(4, 1.0f, true, 2, (int64_t[]){13, 11})};
  tl_tape_reset();
  tl_tensor *y = strided_fn(in, NULL);
  cr_assert_eq(tl_tape_length(), 4); // transpose, contiguous, slice, matmul
  check_matmul(tl_transpose(in[0], 0, 2), tl_slice(in[1], 1, 2, 7), false, true, y);
  cr_assert(tl_test_gradcheck(strided_fn, in, 2, NULL, GC));
}

// A bigger product, so BLAS threads and blocks: the same bound holds.
Test(ops_linalg, matmul_large) {
  tl_tensor *a = tl_test_randn(5, 1.0f, false, 3, (int64_t[]){2, 67, 257});
  tl_tensor *b = tl_test_randn(6, 1.0f, false, 2, (int64_t[]){131, 257});
  check_matmul(a, b, false, true, tl_matmul(a, b, false, true));
}

// --- linear ------------------------------------------------------------------------

typedef struct { int rx; int64_t x[4]; int64_t out; bool bias; } lin_case;

static const lin_case LIN[] = {
    {1, {13}, 7, true},
    {2, {1, 1}, 1, true},
    {2, {7, 13}, 5, false},
    {3, {2, 7, 31}, 13, true},
    {4, {2, 3, 5, 7}, 11, true},
    {2, {67, 257}, 131, true}, // big enough for BLAS threading
};
#define N_LIN (int)(sizeof LIN / sizeof *LIN)

static tl_tensor *linear_fn(tl_tensor **in, void *ctx) {
  const lin_case *c = ctx;
  return tl_linear(in[0], in[1], c->bias ? in[2] : NULL);
}

static tl_tensor **linear_inputs(int k, bool grad) {
  const lin_case *c = &LIN[k];
  int64_t in = c->x[c->rx - 1];
  tl_tensor **t = tl_arena_alloc(&tl_test_arena, 3 * sizeof *t);
  t[0] = tl_test_randn(400 + k, 1.0f, grad, c->rx, c->x);
  t[1] = tl_test_randn(500 + k, 1.0f, grad, 2, (int64_t[]){c->out, in});
  t[2] = tl_test_randn(600 + k, 1.0f, grad, 1, &c->out);
  return t;
}

Test(ops_linalg, linear_forward) {
  for (int k = 0; k < N_LIN; k++) {
    const lin_case *c = &LIN[k];
    tl_tensor **t = linear_inputs(k, false);
    tl_tensor *y = linear_fn(t, (void *)c);
    int64_t in = c->x[c->rx - 1], rows = tl_numel(t[0]) / in;
    cr_assert_eq(y->shape[y->rank - 1], c->out);
    for (int64_t r = 0; r < rows; r++)
      for (int64_t o = 0; o < c->out; o++) {
        double s = c->bias ? F(t[2])[o] : 0, sa = fabs(s);
        for (int64_t i = 0; i < in; i++) {
          double p = (double)F(t[0])[r * in + i] * F(t[1])[o * in + i];
          s += p, sa += fabs(p);
        }
        cr_assert(fabs(F(y)[r * c->out + o] - s) <= dot_tol(in + 1, sa), "case %d (%ld, %ld)",
                  k, (long)r, (long)o);
      }
  }
}

Test(ops_linalg, linear_backward) {
  for (int k = 0; k < N_LIN; k++) {
    tl_tensor **t = linear_inputs(k, true);
    tl_gradcheck_opts o = GC;
    o.max_checks = 32; // the big case: a random subset of each input
    cr_assert(tl_test_gradcheck(linear_fn, t, LIN[k].bias ? 3 : 2, (void *)&LIN[k], o),
              "case %d", k);
  }
}

// Frozen weight (LoRA base): x still gets its gradient, w gets none.
Test(ops_linalg, linear_frozen_weight) {
  tl_tensor **t = linear_inputs(3, true);
  t[1]->requires_grad = false;
  cr_assert(tl_test_gradcheck(linear_fn, t, 3, (void *)&LIN[3], GC));
  cr_assert_null(t[1]->grad);
}

// --- randomised layouts -------------------------------------------------------------
// Random ranks, sizes 1..9, transpose flags, shared b, and operand layouts: dense,
// a transposed view of the last two dims (BLAS trans flag), a column slice (ld >
// cols), or a batch-dim transpose (strided batches; rank 3+). Forward against the
// triple loop, backward against finite differences on a random subset.

typedef struct {
  int rank;           // rank of a (and of b unless shared)
  int64_t batch[2];   // batch dims (rank - 2 of them used)
  int64_t M, N, K;
  bool ta, tb, shared;
  int layout[2];      // 0 dense, 1 transposed view, 2 column slice, 3 batch transpose
} fuzz_case;

// The stored matrix of operand k ([.., R, C] as the op reads it) built from a
// dense base tensor by the case's layout; base_shape gives the base to allocate.
static void fuzz_base_shape(const fuzz_case *c, int k, int *rank, int64_t shape[4]) {
  bool shared = k == 1 && c->shared;
  int r = shared ? 2 : c->rank;
  int64_t R, C;
  if (k == 0) R = c->ta ? c->K : c->M, C = c->ta ? c->M : c->K;
  else R = c->tb ? c->N : c->K, C = c->tb ? c->K : c->N;
  for (int d = 0; d < r - 2; d++) shape[d] = c->batch[d];
  shape[r - 2] = R, shape[r - 1] = C;
  int layout = c->layout[k];
  if (layout == 1) shape[r - 2] = C, shape[r - 1] = R;   // transposed back in the view
  if (layout == 2) shape[r - 1] = C + 3;                 // sliced back to C columns
  if (layout == 3 && r >= 3) {                           // batch dim swapped with rows
    shape[r - 3] = R, shape[r - 2] = c->batch[r - 3];
  }
  *rank = r;
}

static tl_tensor *fuzz_view(const fuzz_case *c, int k, tl_tensor *base) {
  int r = base->rank;
  switch (c->layout[k]) {
  case 1: return tl_transpose(base, -1, -2);
  case 2: return tl_slice(base, -1, 1, base->shape[r - 1] - 3);
  case 3: return r >= 3 ? tl_transpose(base, -3, -2) : base;
  default: return base;
  }
}

static tl_tensor *fuzz_fn(tl_tensor **in, void *ctx) {
  const fuzz_case *c = ctx;
  return tl_matmul(fuzz_view(c, 0, in[0]), fuzz_view(c, 1, in[1]), c->ta, c->tb);
}

Test(ops_linalg, randomised_layouts) {
  uint64_t st = 2026;
  for (int n = 0; n < 150; n++) {
    fuzz_case c = {0};
    c.rank = 2 + (int)(tl_test_uniform(&st) * 3);
    for (int d = 0; d < 2; d++) c.batch[d] = 1 + (int64_t)(tl_test_uniform(&st) * 3);
    c.M = 1 + (int64_t)(tl_test_uniform(&st) * 9);
    c.N = 1 + (int64_t)(tl_test_uniform(&st) * 9);
    c.K = 1 + (int64_t)(tl_test_uniform(&st) * 9);
    c.ta = tl_test_uniform(&st) < 0.5, c.tb = tl_test_uniform(&st) < 0.5;
    c.shared = c.rank == 2 || tl_test_uniform(&st) < 0.3;
    for (int k = 0; k < 2; k++) c.layout[k] = (int)(tl_test_uniform(&st) * 4);

    tl_tensor *in[2];
    for (int k = 0; k < 2; k++) {
      int r;
      int64_t shape[4];
      fuzz_base_shape(&c, k, &r, shape);
      in[k] = tl_test_randn(1000 + 2 * n + k, 1.0f, true, r, shape);
    }
    tl_tensor *y = fuzz_fn(in, &c);
    check_matmul(fuzz_view(&c, 0, in[0]), fuzz_view(&c, 1, in[1]), c.ta, c.tb, y);
    tl_gradcheck_opts o = GC;
    o.max_checks = 12;
    cr_assert(tl_test_gradcheck(fuzz_fn, in, 2, &c, o),
              "case %d: rank %d M %ld N %ld K %ld ta %d tb %d shared %d layouts %d %d", n,
              c.rank, (long)c.M, (long)c.N, (long)c.K, c.ta, c.tb, c.shared, c.layout[0],
              c.layout[1]);
    tl_tape_reset();
  }
}
