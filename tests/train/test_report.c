// test_report.c: the files an evaluation writes, read back and checked against
// the metrics they were made from (and against counts made here by hand).
#include <cjson/cJSON.h>
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "train/report.h"

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

static int count_of(const char *hay, const char *needle) {
  int n = 0;
  for (const char *p = hay; (p = strstr(p, needle)); p += strlen(needle)) n++;
  return n;
}

// Six samples, three classes; one class name needs CSV quoting and XML escaping.
static const char *k_names[] = {"http", "a<b,c", "dns"};
static const int32_t k_true[] = {0, 0, 1, 1, 2, 2};
static const int32_t k_pred[] = {0, 1, 1, 1, 2, 0};
static const int32_t k_short[] = {0, 0, 0, 0, 0, 0};
static const uint64_t k_flow[] = {11, 11, 12, 13, 14, 15};
static const float k_probs[] = {.8f, .1f, .1f, .3f, .6f, .1f, .2f, .7f, .1f,
                                .1f, .8f, .1f, .1f, .1f, .8f, .5f, .2f, .3f};

typedef struct {
  tl_metrics model, shortcut, majority;
  tl_report r;
  char dir[64];
} setup_t;

static void make(setup_t *s) {
  cr_assert_eq(tl_metrics_compute(k_true, k_pred, 6, 3, &s->model), TL_OK);
  cr_assert_eq(tl_metrics_compute(k_true, k_short, 6, 3, &s->shortcut), TL_OK);
  cr_assert_eq(tl_report_majority(k_pred, 6, k_true, 6, 3, &s->majority), TL_OK);
  s->r = (tl_report){.n_classes = 3, .class_names = k_names, .n = 6, .y_true = k_true,
                     .y_pred = k_pred, .flow_id = k_flow, .probs = k_probs,
                     .model = &s->model, .shortcut = &s->shortcut,
                     .shortcut_desc = "header fields", .shortcut_root = "p1.ttl",
                     .majority = &s->majority, .task = "packet", .split = "test",
                     .split_policy = "flow", .data_dir = "shards/x", .checkpoint = "best"};
  strcpy(s->dir, "/tmp/tl-test-report-XXXXXX");
  cr_assert(mkdtemp(s->dir));
  cr_assert_eq(tl_report_write(&s->r, s->dir), TL_OK, "%s", tl_last_error());
}

static char *read_out(setup_t *s, const char *name) {
  char path[128];
  snprintf(path, sizeof path, "%s/%s", s->dir, name);
  return slurp(path);
}

static void done(setup_t *s) {
  const char *files[] = {"eval.json", "predictions.csv", "confusion.csv", "confusion.svg"};
  char path[128];
  for (int i = 0; i < 4; i++) {
    snprintf(path, sizeof path, "%s/%s", s->dir, files[i]);
    unlink(path);
  }
  rmdir(s->dir);
  tl_metrics_free(&s->model);
  tl_metrics_free(&s->shortcut);
  tl_metrics_free(&s->majority);
}

Test(report, eval_json_holds_the_figures) {
  setup_t s;
  make(&s);
  char *text = read_out(&s, "eval.json");
  cJSON *o = cJSON_Parse(text);
  cr_assert(o);
  // Hand counts: 4 of 6 right; per class (tp, fp, fn) = (1,1,1), (2,1,0), (1,0,1),
  // so F1 = 2tp / (2tp + fp + fn) = 1/2, 4/5, 2/3.
  double f1[] = {0.5, 4.0 / 5, 2.0 / 3};
  cr_assert_float_eq(cJSON_GetObjectItem(o, "accuracy")->valuedouble, 4.0 / 6, 1e-12);
  cr_assert_float_eq(cJSON_GetObjectItem(o, "macro_f1")->valuedouble,
                     (f1[0] + f1[1] + f1[2]) / 3, 1e-12);
  cr_assert_float_eq(cJSON_GetObjectItem(o, "weighted_f1")->valuedouble,
                     (f1[0] + f1[1] + f1[2]) / 3, 1e-12, "equal supports");
  const char *keys[] = {"macro_precision", "macro_recall", "weighted_precision",
                        "weighted_recall", "split_policy", "data_dir", "labels"};
  for (int i = 0; i < 7; i++) cr_assert(cJSON_GetObjectItem(o, keys[i]), "%s", keys[i]);
  cJSON *pc = cJSON_GetObjectItem(o, "per_class");
  cr_assert_eq(cJSON_GetArraySize(pc), 3);
  cJSON *c1 = cJSON_GetArrayItem(pc, 1);
  cr_assert_str_eq(cJSON_GetObjectItem(c1, "name")->valuestring, "a<b,c");
  cr_assert_float_eq(cJSON_GetObjectItem(c1, "f1")->valuedouble, f1[1], 1e-12);
  cr_assert_eq(cJSON_GetObjectItem(c1, "support")->valueint, 2);
  cJSON *conf = cJSON_GetObjectItem(o, "confusion");
  cr_assert_eq(cJSON_GetArrayItem(cJSON_GetArrayItem(conf, 2), 0)->valueint, 1);
  cr_assert_eq(cJSON_GetArrayItem(cJSON_GetArrayItem(conf, 0), 1)->valueint, 1);
  // The shortcut always answers class 0: accuracy 2/6, F1 of class 0 = 2*2/(4+4).
  cJSON *sc = cJSON_GetObjectItem(o, "shortcut");
  cr_assert_float_eq(cJSON_GetObjectItem(sc, "accuracy")->valuedouble, 2.0 / 6, 1e-12);
  cr_assert_float_eq(cJSON_GetObjectItem(sc, "macro_f1")->valuedouble, 0.5 / 3, 1e-12);
  cr_assert_str_eq(cJSON_GetObjectItem(sc, "root_split")->valuestring, "p1.ttl");
  // Majority of the "train" labels k_pred is class 0 (3 of 6) as well.
  cJSON *mj = cJSON_GetObjectItem(o, "majority");
  cr_assert_float_eq(cJSON_GetObjectItem(mj, "macro_f1")->valuedouble, 0.5 / 3, 1e-12);
  cJSON_Delete(o);
  free(text);
  done(&s);
}

Test(report, predictions_and_confusion_csv) {
  setup_t s;
  make(&s);
  char *p = read_out(&s, "predictions.csv");
  cr_assert_eq(count_of(p, "\n"), 7, "header + 6 rows");
  cr_assert(!strncmp(p, "row,flow_id,true,predicted,p_http,\"p_a<b,c\",p_dns\n", 49), "%s", p);
  cr_assert(strstr(p, "\n1,11,http,\"a<b,c\",0.3,0.6,0.1\n"), "%s", p);
  cr_assert(strstr(p, "\n5,15,dns,http,0.5,0.2,0.3\n"), "%s", p);
  free(p);
  char *c = read_out(&s, "confusion.csv");
  cr_assert_str_eq(c, "true\\predicted,http,\"a<b,c\",dns\n"
                      "http,1,1,0\n"
                      "\"a<b,c\",0,2,0\n"
                      "dns,1,0,1\n");
  free(c);
  done(&s);
}

Test(report, confusion_svg_is_a_labelled_grid) {
  setup_t s;
  make(&s);
  char *svg = read_out(&s, "confusion.svg");
  cr_assert(!strncmp(svg, "<svg ", 5));
  cr_assert(strstr(svg, "</svg>\n"));
  cr_assert_eq(count_of(svg, "<rect "), 1 + 9, "background + K*K cells");
  cr_assert(strstr(svg, ">predicted label<"));
  cr_assert(strstr(svg, ">true label<"));
  cr_assert(strstr(svg, "a&lt;b,c"));
  cr_assert(!strstr(svg, "a<b"), "names escaped");
  cr_assert_eq(count_of(svg, "<text"), count_of(svg, "</text>"));
  free(svg);
  done(&s);
}

Test(report, table_sets_model_beside_shortcut) {
  setup_t s;
  make(&s);
  char *buf = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&buf, &len);
  tl_report_print(&s.r, f);
  fclose(f);
  cr_assert(strstr(buf, "shortcut f1"));
  cr_assert(strstr(buf, "macro avg"));
  char want[128];
  snprintf(want, sizeof want, "macro F1: model %.4f, header-only shortcut %.4f",
           (0.5 + 0.8 + 2.0 / 3) / 3, 0.5 / 3);
  cr_assert(strstr(buf, want), "%s", buf);
  free(buf);
  done(&s);
}

Test(report, unwritable_folder_names_the_file) {
  setup_t s;
  make(&s);
  cr_assert_eq(tl_report_write(&s.r, "/nonexistent/dir"), TL_ERR);
  cr_assert(strstr(tl_last_error(), "/nonexistent/dir/eval.json"), "%s", tl_last_error());
  done(&s);
}
