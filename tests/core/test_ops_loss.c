// cross entropy: loss against a double-precision loop written here, gradient
// against the closed form (softmax - onehot) / count and against finite
// differences; ignored targets, all-ignored batches and a 65,541-word vocabulary.
#include <criterion/criterion.h>
#include <signal.h>

#include "core/ops.h"
#include "tests/core/check.h"

TestSuite(ops_loss, .init = tl_test_setup, .fini = tl_test_teardown);

#define IGNORE (-100)

// Reference loss: mean over non-ignored rows of logsumexp - logit[target].
static double ref_loss(const float *x, const int32_t *t, int64_t N, int64_t V, int64_t *count) {
  double total = 0;
  *count = 0;
  for (int64_t n = 0; n < N; n++) {
    if (t[n] == IGNORE) continue;
    const float *r = x + n * V;
    double m = -INFINITY, s = 0;
    for (int64_t v = 0; v < V; v++) m = r[v] > m ? r[v] : m;
    for (int64_t v = 0; v < V; v++) s += exp(r[v] - m);
    total += m + log(s) - r[t[n]];
    (*count)++;
  }
  return *count ? total / (double)*count : 0.0;
}

// Targets uniform in [0, V), with every third row (from row 1) ignored.
static tl_tensor *make_targets(uint64_t seed, int64_t N, int64_t V) {
  tl_tensor *t = tl_test_randint(seed, 0, (int)V, 1, (int64_t[]){N});
  int32_t *tv = t->data;
  for (int64_t n = 1; n < N; n += 3) tv[n] = IGNORE;
  return t;
}

// Loss and gradient of one case against the references. Tolerances: the loss is
// a mean of f32 logsumexps accumulated in double (rel 1e-6); each gradient
// element is an f32 expf times a scale (abs 1e-7 on values <= 1/count, rel 1e-5).
static void check_case(int64_t N, int64_t V, float scale, uint64_t seed) {
  tl_tensor *x = tl_test_randn(seed, scale, true, 2, (int64_t[]){N, V});
  tl_tensor *t = make_targets(seed + 1, N, V);
  tl_tensor *loss = tl_cross_entropy(x, t, IGNORE);
  int64_t count;
  double want = ref_loss(x->data, t->data, N, V, &count);
  float got = *(float *)loss->data;
  cr_assert_eq(loss->rank, 0);
  cr_assert(fabs(got - want) <= 1e-6 * fabs(want) + 1e-6, "[%ld, %ld]: loss %.9g want %.9g",
            (long)N, (long)V, got, want);
  if (count == 0) return;

  tl_backward(loss);
  const float *xv = x->data, *g = x->grad->data;
  const int32_t *tv = t->data;
  for (int64_t n = 0; n < N; n++) {
    const float *r = xv + n * V;
    double m = -INFINITY, s = 0;
    for (int64_t v = 0; v < V; v++) m = r[v] > m ? r[v] : m;
    for (int64_t v = 0; v < V; v++) s += exp(r[v] - m);
    for (int64_t v = 0; v < V; v++) {
      double w = tv[n] == IGNORE ? 0 : (exp(r[v] - m) / s - (v == tv[n])) / (double)count;
      double e = g[n * V + v];
      cr_assert(fabs(e - w) <= 1e-7 + 1e-5 * fabs(w), "[%ld, %ld] grad (%ld, %ld): %.9g want %.9g",
                (long)N, (long)V, (long)n, (long)v, e, w);
    }
  }
}

Test(ops_loss, forward_and_closed_form_grad_awkward_sizes) {
  int64_t sizes[][2] = {{1, 1}, {1, 7}, {2, 2}, {13, 131}, {7, 1031}};
  for (size_t k = 0; k < sizeof sizes / sizeof *sizes; k++) {
    tl_tape_reset();
    check_case(sizes[k][0], sizes[k][1], 2.0f, 60 + k);
  }
}

Test(ops_loss, full_vocabulary) {
  // The ET-BERT vocabulary: 65,541 ids; large logits stress the logsumexp.
  check_case(5, 65541, 8.0f, 70);
}

Test(ops_loss, all_ignored_gives_zero_and_no_grad) {
  tl_tensor *x = tl_test_randn(80, 1.0f, true, 2, (int64_t[]){3, 5});
  tl_tensor *t = tl_zeros(TL_I32, 1, (int64_t[]){3});
  for (int n = 0; n < 3; n++) ((int32_t *)t->data)[n] = IGNORE;
  tl_tensor *loss = tl_cross_entropy(x, t, IGNORE);
  cr_assert_eq(*(float *)loss->data, 0.0f);
  tl_backward(loss);
  if (x->grad)
    for (int i = 0; i < 15; i++) cr_assert_eq(((float *)x->grad->data)[i], 0.0f);
}

typedef struct { tl_tensor *targets; } ce_args;
static tl_tensor *run_ce(tl_tensor **in, void *ctx) {
  return tl_cross_entropy(in[0], ((ce_args *)ctx)->targets, IGNORE);
}

Test(ops_loss, backward_matches_finite_differences) {
  // eps 1e-2: the loss is smooth with curvature <= 1/4 per logit, so truncation
  // error ~1e-5; f32 rounding of a loss of ~3 gives ~3e-7 / 2e-2 ~ 2e-5 noise.
  tl_gradcheck_opts o = {.eps = 1e-2, .atol = 2e-4, .rtol = 1e-2};
  int64_t sizes[][2] = {{1, 3}, {4, 11}, {6, 37}};
  for (size_t k = 0; k < sizeof sizes / sizeof *sizes; k++) {
    tl_tensor *x = tl_test_randn(90 + k, 1.0f, true, 2, sizes[k]);
    ce_args a = {make_targets(95 + k, sizes[k][0], sizes[k][1])};
    cr_assert(tl_test_gradcheck(run_ce, &x, 1, &a, o), "size %zu", k);
  }
}

Test(ops_loss, target_out_of_range_aborts, .signal = SIGABRT) {
  tl_tensor *x = tl_test_randn(100, 1.0f, false, 2, (int64_t[]){2, 5});
  tl_tensor *t = tl_zeros(TL_I32, 1, (int64_t[]){2});
  ((int32_t *)t->data)[1] = 5;
  tl_cross_entropy(x, t, IGNORE);
}
