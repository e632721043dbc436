// add, sub, mul (same shape and row broadcast), scale, gelu, tanh, silu, swiglu:
// forward against plain double-precision loops written here, backward against
// central finite differences (tests/core/check.h).
#include <criterion/criterion.h>

#include "core/ops.h"
#include "tests/core/check.h"

TestSuite(ops_elementwise, .init = tl_test_setup, .fini = tl_test_teardown);

// Finite differences for the smooth ops here: eps = 1e-2 keeps the f32 rounding
// of the perturbed outputs (~1e-7 relative, divided by 2 eps -> ~1e-5) small,
// while the central-difference truncation error, eps^2/6 |f'''| <= 2e-5 for
// these activations (and 0 for the bilinear ones), is as small. atol 1e-3 and
// rtol 1e-3 leave a 10x margin over both; a wrong formula is off by O(1).
static const tl_gradcheck_opts GC = {.eps = 1e-2, .atol = 1e-3, .rtol = 1e-3};

typedef struct { int rank_a; int64_t a[4]; int rank_b; int64_t b[4]; } pair_shape;

// Same shapes and row broadcasts at awkward sizes (1, primes, rank 0).
static const pair_shape PAIRS[] = {
    {1, {1}, 1, {1}},
    {1, {7}, 1, {7}},
    {2, {13, 31}, 2, {13, 31}},
    {3, {3, 5, 7}, 3, {3, 5, 7}},
    {2, {13, 31}, 1, {31}},
    {3, {3, 5, 7}, 2, {5, 7}},
    {4, {2, 3, 5, 7}, 1, {7}},
    {1, {7}, 0, {0}},
    {2, {1, 1}, 1, {1}},
};
#define N_PAIRS (int)(sizeof PAIRS / sizeof *PAIRS)

static float *F(const tl_tensor *t) { return (float *)t->data; }

static double ref_binary(char op, double a, double b) {
  return op == '+' ? a + b : op == '-' ? a - b : a * b;
}

static tl_tensor *run_binary(char op, tl_tensor *a, tl_tensor *b) {
  return op == '+' ? tl_add(a, b) : op == '-' ? tl_sub(a, b) : tl_mul(a, b);
}

static tl_tensor *binary_fn(tl_tensor **in, void *ctx) {
  return run_binary(*(char *)ctx, in[0], in[1]);
}

// Forward: y[i] = a[i] op b[i mod numel(b)], one f32 rounding from the double result.
static void check_binary_forward(char op) {
  for (int p = 0; p < N_PAIRS; p++) {
    tl_tensor *a = tl_test_randn(10 + p, 1.0f, false, PAIRS[p].rank_a, PAIRS[p].a);
    tl_tensor *b = tl_test_randn(20 + p, 1.0f, false, PAIRS[p].rank_b, PAIRS[p].b);
    tl_tensor *y = run_binary(op, a, b);
    cr_assert(tl_same_shape(y, a));
    int64_t n = tl_numel(a), nb = tl_numel(b);
    for (int64_t i = 0; i < n; i++) {
      double ref = ref_binary(op, F(a)[i], F(b)[i % nb]);
      cr_assert(fabs(F(y)[i] - ref) <= 1e-7 * fabs(ref), "op %c pair %d element %ld", op, p,
                (long)i);
    }
  }
}

static void check_binary_backward(char op) {
  for (int p = 0; p < N_PAIRS; p++) {
    tl_tensor *in[2] = {
        tl_test_randn(30 + p, 1.0f, true, PAIRS[p].rank_a, PAIRS[p].a),
        tl_test_randn(40 + p, 1.0f, true, PAIRS[p].rank_b, PAIRS[p].b),
    };
    cr_assert(tl_test_gradcheck(binary_fn, in, 2, &op, GC), "op %c pair %d", op, p);
  }
}

Test(ops_elementwise, add_forward) { check_binary_forward('+'); }
Test(ops_elementwise, sub_forward) { check_binary_forward('-'); }
Test(ops_elementwise, mul_forward) { check_binary_forward('*'); }
Test(ops_elementwise, add_backward) { check_binary_backward('+'); }
Test(ops_elementwise, sub_backward) { check_binary_backward('-'); }
Test(ops_elementwise, mul_backward) { check_binary_backward('*'); }

// Only one side requiring grad: the other gets no gradient buffer at all.
Test(ops_elementwise, grad_only_where_required) {
  tl_tensor *a = tl_test_randn(1, 1.0f, true, 2, (int64_t[]){13, 31});
  tl_tensor *b = tl_test_randn(2, 1.0f, false, 1, (int64_t[]){31});
  tl_backward(tl_sum(tl_mul(a, b)));
  cr_assert_not_null(a->grad);
  cr_assert_null(b->grad);
  for (int64_t i = 0; i < 13 * 31; i++) cr_assert_eq(F(a->grad)[i], F(b)[i % 31]);
}

// --- scale and the activations ----------------------------------------------------

typedef struct {
  const char *name;
  tl_tensor *(*op)(tl_tensor *);
  double (*ref)(double);
  double ulps; // base relative tolerance in units of 1e-7 (see unary_forward)
} unary;

// x Phi(x) via erfc: 1 + erf(x/sqrt 2) cancels even in double for x < -5.
static double ref_gelu(double x) { return 0.5 * x * erfc(-x / sqrt(2.0)); }
static double ref_silu(double x) { return x / (1.0 + exp(-x)); }
static tl_tensor *scale_by_3(tl_tensor *x) { return tl_scale(x, -3.25f); }
static double ref_scale(double x) { return -3.25 * x; }

static const unary UNARY[] = {
    {"gelu", tl_gelu, ref_gelu, 6},
    {"tanh", tl_tanh, tanh, 4},
    {"silu", tl_silu, ref_silu, 4},
    {"scale", scale_by_3, ref_scale, 4},
};

static const int64_t UNARY_SIZES[] = {1, 7, 31, 1000, 20011};

static tl_tensor *unary_fn(tl_tensor **in, void *ctx) { return ((const unary *)ctx)->op(in[0]); }

// Forward against double libm. The kernels' exp (vexp) and libm's tanhf are
// within 2 ulp, so a few roundings stay under 4e-7 relative; GELU's inline normal
// cdf was measured within 3.3e-7 (1 + x^2/4) relative on a dense grid over
// [-16, 16], so 6e-7 base. Rounding the argument (x^2/2 for GELU, -x for exp)
// to f32 is amplified in the tails by the relative condition numbers x^2 and
// |x|. Tolerance (base + x^2) 1e-7 relative, plus 1e-30 for (near-)zeros.
// Inputs are scale-3 normals, so both saturated tails are covered.
Test(ops_elementwise, unary_forward) {
  for (size_t u = 0; u < sizeof UNARY / sizeof *UNARY; u++)
    for (size_t s = 0; s < sizeof UNARY_SIZES / sizeof *UNARY_SIZES; s++) {
      tl_tensor *x = tl_test_randn(50 + s, 3.0f, false, 1, &UNARY_SIZES[s]);
      tl_tensor *y = UNARY[u].op(x);
      for (int64_t i = 0; i < UNARY_SIZES[s]; i++) {
        double ref = UNARY[u].ref(F(x)[i]);
        double xi = F(x)[i], tol = (UNARY[u].ulps + xi * xi) * 1e-7 * fabs(ref) + 1e-30;
        cr_assert(fabs(F(y)[i] - ref) <= tol, "%s(%.9g) = %.9g, ref %.9g",
                  UNARY[u].name, F(x)[i], F(y)[i], ref);
      }
    }
}

Test(ops_elementwise, unary_backward) {
  for (size_t u = 0; u < sizeof UNARY / sizeof *UNARY; u++)
    for (size_t s = 0; s < 4; s++) {
      tl_tensor *x = tl_test_randn(60 + s, 2.0f, true, 1, &UNARY_SIZES[s]);
      cr_assert(tl_test_gradcheck(unary_fn, &x, 1, (void *)&UNARY[u], GC), "%s size %ld",
                UNARY[u].name, (long)UNARY_SIZES[s]);
    }
}

static tl_tensor *swiglu_fn(tl_tensor **in, void *ctx) { return tl_swiglu(in[0], in[1]); }

Test(ops_elementwise, swiglu_forward_and_backward) {
  static const int64_t shapes[][2] = {{1, 1}, {7, 13}, {3, 31}};
  for (int s = 0; s < 3; s++) {
    tl_tensor *g = tl_test_randn(70 + s, 2.0f, false, 2, shapes[s]);
    tl_tensor *u = tl_test_randn(80 + s, 1.0f, false, 2, shapes[s]);
    tl_tensor *y = tl_swiglu(g, u);
    // silu(g) * up: libm exp and three roundings; exp(-g) conditioned by |g|.
    for (int64_t i = 0; i < tl_numel(g); i++) {
      double ref = ref_silu(F(g)[i]) * F(u)[i], gi = F(g)[i];
      double tol = (5 + fabs(gi)) * 1e-7 * fabs(ref) + 1e-30;
      cr_assert(fabs(F(y)[i] - ref) <= tol, "element %ld", (long)i);
    }
    g->requires_grad = u->requires_grad = true;
    tl_tensor *in[2] = {g, u};
    cr_assert(tl_test_gradcheck(swiglu_fn, in, 2, NULL, GC), "shape %d", s);
  }
}

// Strided inputs go through tl_contiguous; the gradient still reaches the source.
static tl_tensor *gelu_of_transpose(tl_tensor **in, void *ctx) {
  return tl_gelu(tl_transpose(in[0], 0, 1));
}

Test(ops_elementwise, strided_input) {
  tl_tensor *x = tl_test_randn(90, 1.0f, true, 2, (int64_t[]){7, 13});
  tl_tensor *y = gelu_of_transpose(&x, NULL);
  for (int64_t i = 0; i < 13; i++)
    for (int64_t j = 0; j < 7; j++)
      cr_assert(fabs(F(y)[i * 7 + j] - ref_gelu(F(x)[j * 13 + i])) < 1e-6);
  cr_assert(tl_test_gradcheck(gelu_of_transpose, &x, 1, NULL, GC));
}
