// test_metrics.c: tl_metrics against scikit-learn's values, computed once by
// tests/make_metrics_fixtures.py and committed under tests/fixtures/metrics/.
#include <cjson/cJSON.h>
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "train/metrics.h"

// Tolerance: both sides compute the same ratios in double; 1e-12 allows for a
// different summation order only.
#define TOL 1e-12

typedef struct {
  int K;
  int64_t n;
  int32_t *y_true, *y_pred;
  cJSON *expected;
} fixture;

static char *slurp(const char *path) {
  FILE *f = fopen(path, "rb");
  cr_assert(f, "cannot open %s", path);
  fseek(f, 0, SEEK_END);
  long len = ftell(f);
  fseek(f, 0, SEEK_SET);
  char *buf = malloc((size_t)len + 1);
  cr_assert_eq(fread(buf, 1, (size_t)len, f), (size_t)len);
  buf[len] = 0;
  fclose(f);
  return buf;
}

// Reads NAME.txt ("classes K" then "true predicted" lines) and NAME.expected.json.
static fixture load(const char *name) {
  fixture fx = {0};
  char path[512];
  snprintf(path, sizeof path, "%s/tests/fixtures/metrics/%s.txt", TL_SOURCE_DIR, name);
  FILE *f = fopen(path, "r");
  cr_assert(f, "cannot open %s", path);
  cr_assert_eq(fscanf(f, "classes %d", &fx.K), 1);
  int64_t cap = 1024;
  fx.y_true = malloc(cap * sizeof(int32_t));
  fx.y_pred = malloc(cap * sizeof(int32_t));
  int t, p;
  while (fscanf(f, "%d %d", &t, &p) == 2) {
    cr_assert(fx.n < cap, "fixture %s larger than the test expects", name);
    fx.y_true[fx.n] = t, fx.y_pred[fx.n] = p, fx.n++;
  }
  fclose(f);
  snprintf(path, sizeof path, "%s/tests/fixtures/metrics/%s.expected.json", TL_SOURCE_DIR,
           name);
  char *text = slurp(path);
  fx.expected = cJSON_Parse(text);
  free(text);
  cr_assert(fx.expected, "bad JSON in %s", path);
  return fx;
}

static double num(const cJSON *obj, const char *key) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
  cr_assert(cJSON_IsNumber(v), "expected number %s", key);
  return v->valuedouble;
}

static double at(const cJSON *obj, const char *key, int i) {
  const cJSON *arr = cJSON_GetObjectItemCaseSensitive(obj, key);
  cr_assert(cJSON_IsArray(arr));
  return cJSON_GetArrayItem(arr, i)->valuedouble;
}

static void check_case(const char *name) {
  fixture fx = load(name);
  const cJSON *e = fx.expected;
  tl_metrics m;
  cr_assert_eq(tl_metrics_compute(fx.y_true, fx.y_pred, fx.n, fx.K, &m), TL_OK, "%s",
               tl_last_error());
  cr_assert_eq(m.n_classes, (int)num(e, "classes"));
  cr_assert_float_eq(m.accuracy, num(e, "accuracy"), TOL, "%s accuracy", name);
  for (int c = 0; c < fx.K; c++) {
    cr_assert_float_eq(m.per_class[c].precision, at(e, "precision", c), TOL,
                       "%s precision[%d]", name, c);
    cr_assert_float_eq(m.per_class[c].recall, at(e, "recall", c), TOL, "%s recall[%d]",
                       name, c);
    cr_assert_float_eq(m.per_class[c].f1, at(e, "f1", c), TOL, "%s f1[%d]", name, c);
    cr_assert_eq(m.per_class[c].support, (int64_t)at(e, "support", c), "%s support[%d]",
                 name, c);
  }
  cr_assert_float_eq(m.macro_precision, num(e, "macro_precision"), TOL, "%s", name);
  cr_assert_float_eq(m.macro_recall, num(e, "macro_recall"), TOL, "%s", name);
  cr_assert_float_eq(m.macro_f1, num(e, "macro_f1"), TOL, "%s", name);
  cr_assert_float_eq(m.weighted_precision, num(e, "weighted_precision"), TOL, "%s", name);
  cr_assert_float_eq(m.weighted_recall, num(e, "weighted_recall"), TOL, "%s", name);
  cr_assert_float_eq(m.weighted_f1, num(e, "weighted_f1"), TOL, "%s", name);
  const cJSON *conf = cJSON_GetObjectItemCaseSensitive(e, "confusion");
  for (int t = 0; t < fx.K; t++)
    for (int p = 0; p < fx.K; p++) {
      int want = cJSON_GetArrayItem(cJSON_GetArrayItem(conf, t), p)->valueint;
      cr_assert_eq(m.confusion[t * fx.K + p], want, "%s confusion[%d][%d]", name, t, p);
    }
  tl_metrics_free(&m);
  cJSON_Delete(fx.expected);
  free(fx.y_true);
  free(fx.y_pred);
}

Test(metrics, balanced) { check_case("balanced"); }
Test(metrics, imbalanced) { check_case("imbalanced"); }
Test(metrics, class_never_predicted) { check_case("never_predicted"); }
Test(metrics, class_absent_from_truth_but_predicted) { check_case("absent_from_truth"); }
Test(metrics, single_class) { check_case("k1"); }
Test(metrics, all_wrong) { check_case("all_wrong"); }
Test(metrics, random_seven_classes) { check_case("random7"); }

Test(metrics, rejects_out_of_range_label) {
  int32_t yt[] = {0, 1, 2}, yp[] = {0, 3, 1};
  tl_metrics m;
  cr_assert_eq(tl_metrics_compute(yt, yp, 3, 3, &m), TL_ERR);
  cr_assert(strstr(tl_last_error(), "row 1"), "message names the row: %s", tl_last_error());
  tl_metrics_free(&m);
  cr_assert_eq(tl_metrics_compute(yt, yp, 3, 0, &m), TL_ERR);
}
