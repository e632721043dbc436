// report.c: eval.json, predictions.csv, the confusion matrix as CSV and SVG, and
// the stdout table (report.h).
#include "train/report.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <string.h>

// The name of class c: the caller's, or "class<c>".
static const char *class_name(const tl_report *r, int c) {
  static _Thread_local char buf[32];
  if (r->class_names && r->class_names[c]) return r->class_names[c];
  snprintf(buf, sizeof buf, "class%d", c);
  return buf;
}

static FILE *open_out(const char *path) {
  FILE *f = fopen(path, "w");
  if (!f) tl_set_error("%s: cannot write: %s", path, strerror(errno));
  return f;
}

// Closes f and turns a failed write or close into one error naming the file.
static tl_status close_out(FILE *f, const char *path) {
  int bad = ferror(f);
  if (fclose(f) != 0 || bad) {
    tl_set_error("%s: write failed: %s", path, strerror(errno));
    return TL_ERR;
  }
  return TL_OK;
}

// --- eval.json --------------------------------------------------------------------

// The summary figures and per-class table of one set of metrics.
static cJSON *metrics_json(const tl_report *r, const tl_metrics *m, int with_confusion) {
  cJSON *o = cJSON_CreateObject();
  cJSON_AddNumberToObject(o, "n", (double)m->n);
  cJSON_AddNumberToObject(o, "accuracy", m->accuracy);
  cJSON_AddNumberToObject(o, "macro_precision", m->macro_precision);
  cJSON_AddNumberToObject(o, "macro_recall", m->macro_recall);
  cJSON_AddNumberToObject(o, "macro_f1", m->macro_f1);
  cJSON_AddNumberToObject(o, "weighted_precision", m->weighted_precision);
  cJSON_AddNumberToObject(o, "weighted_recall", m->weighted_recall);
  cJSON_AddNumberToObject(o, "weighted_f1", m->weighted_f1);
  cJSON *pc = cJSON_AddArrayToObject(o, "per_class");
  for (int c = 0; c < m->n_classes; c++) {
    cJSON *e = cJSON_CreateObject();
    cJSON_AddStringToObject(e, "name", class_name(r, c));
    cJSON_AddNumberToObject(e, "precision", m->per_class[c].precision);
    cJSON_AddNumberToObject(e, "recall", m->per_class[c].recall);
    cJSON_AddNumberToObject(e, "f1", m->per_class[c].f1);
    cJSON_AddNumberToObject(e, "support", (double)m->per_class[c].support);
    cJSON_AddItemToArray(pc, e);
  }
  if (with_confusion) {
    cJSON *conf = cJSON_AddArrayToObject(o, "confusion");
    for (int t = 0; t < m->n_classes; t++) {
      cJSON *row = cJSON_CreateArray();
      for (int p = 0; p < m->n_classes; p++)
        cJSON_AddItemToArray(row, cJSON_CreateNumber(
                                      (double)m->confusion[(int64_t)t * m->n_classes + p]));
      cJSON_AddItemToArray(conf, row);
    }
  }
  return o;
}

static void add_string_or_null(cJSON *o, const char *key, const char *s) {
  if (s) cJSON_AddStringToObject(o, key, s);
  else cJSON_AddNullToObject(o, key);
}

tl_status tl_report_write_json(const tl_report *r, const char *path) {
  // The model's figures at the top level, so scripts read eval.json["macro_f1"].
  cJSON *o = metrics_json(r, r->model, 1);
  cJSON *labels = cJSON_AddArrayToObject(o, "labels");
  for (int c = 0; c < r->n_classes; c++)
    cJSON_AddItemToArray(labels, cJSON_CreateString(class_name(r, c)));
  add_string_or_null(o, "task", r->task);
  add_string_or_null(o, "split", r->split);
  add_string_or_null(o, "split_policy", r->split_policy);
  add_string_or_null(o, "data_dir", r->data_dir);
  add_string_or_null(o, "checkpoint", r->checkpoint);
  if (r->split_policy && !strcmp(r->split_policy, "packet"))
    cJSON_AddStringToObject(o, "warning", "split by packet: packets of one flow are in "
                                          "train and test, so these figures are optimistic");

  // The baselines: header-only shortcut and majority class.
  if (r->shortcut) {
    cJSON *s = metrics_json(r, r->shortcut, 1);
    add_string_or_null(s, "sees", r->shortcut_desc);
    add_string_or_null(s, "root_split", r->shortcut_root);
    cJSON_AddItemToObject(o, "shortcut", s);
  } else {
    cJSON_AddNullToObject(o, "shortcut");
  }
  if (r->majority) cJSON_AddItemToObject(o, "majority", metrics_json(r, r->majority, 0));

  char *text = cJSON_Print(o);
  cJSON_Delete(o);
  FILE *f = open_out(path);
  if (!f) {
    cJSON_free(text);
    return TL_ERR;
  }
  fputs(text, f);
  fputc('\n', f);
  cJSON_free(text);
  return close_out(f, path);
}

// --- CSV --------------------------------------------------------------------------

// Writes s as one CSV field, quoted when it holds a comma, quote or line break.
static void csv_field(FILE *f, const char *s) {
  if (!strpbrk(s, ",\"\n\r")) {
    fputs(s, f);
    return;
  }
  fputc('"', f);
  for (; *s; s++) {
    if (*s == '"') fputc('"', f);
    fputc(*s, f);
  }
  fputc('"', f);
}

tl_status tl_report_write_predictions(const tl_report *r, const char *path) {
  FILE *f = open_out(path);
  if (!f) return TL_ERR;
  int K = r->n_classes;
  fputs("row,flow_id,true,predicted", f);
  if (r->probs)
    for (int c = 0; c < K; c++) {
      fputc(',', f);
      char col[256];
      snprintf(col, sizeof col, "p_%s", class_name(r, c));
      csv_field(f, col);
    }
  fputc('\n', f);
  for (int64_t i = 0; i < r->n; i++) {
    fprintf(f, "%lld,", (long long)(r->row ? r->row[i] : i));
    if (r->flow_id) fprintf(f, "%llu", (unsigned long long)r->flow_id[i]);
    fputc(',', f);
    csv_field(f, class_name(r, r->y_true[i]));
    fputc(',', f);
    csv_field(f, class_name(r, r->y_pred[i]));
    if (r->probs)
      for (int c = 0; c < K; c++) fprintf(f, ",%.6g", r->probs[i * K + c]);
    fputc('\n', f);
  }
  return close_out(f, path);
}

tl_status tl_report_write_confusion_csv(const tl_report *r, const char *path) {
  FILE *f = open_out(path);
  if (!f) return TL_ERR;
  int K = r->n_classes;
  fputs("true\\predicted", f);
  for (int c = 0; c < K; c++) fputc(',', f), csv_field(f, class_name(r, c));
  fputc('\n', f);
  for (int t = 0; t < K; t++) {
    csv_field(f, class_name(r, t));
    for (int p = 0; p < K; p++)
      fprintf(f, ",%lld", (long long)r->model->confusion[(int64_t)t * K + p]);
    fputc('\n', f);
  }
  return close_out(f, path);
}

// --- SVG --------------------------------------------------------------------------

static void xml_text(FILE *f, const char *s) {
  for (; *s; s++) {
    if (*s == '<') fputs("&lt;", f);
    else if (*s == '>') fputs("&gt;", f);
    else if (*s == '&') fputs("&amp;", f);
    else if (*s == '"') fputs("&quot;", f);
    else fputc(*s, f);
  }
}

tl_status tl_report_write_confusion_svg(const tl_report *r, const char *path) {
  int K = r->n_classes;
  const int64_t *cm = r->model->confusion;

  // Geometry: cells shrink with many classes; margins fit the longest name.
  int cell = K <= 15 ? 40 : K <= 60 ? 600 / K : 10;
  size_t longest = 4;
  for (int c = 0; c < K; c++)
    if (strlen(class_name(r, c)) > longest) longest = strlen(class_name(r, c));
  int font = cell >= 24 ? 11 : cell >= 12 ? 9 : 7;
  int margin = 30 + (int)longest * font * 6 / 10;
  int left = margin, top = margin + 10, size = K * cell;
  int width = left + size + 20, height = top + size + 20;

  FILE *f = open_out(path);
  if (!f) return TL_ERR;
  fprintf(f, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" "
             "font-family=\"sans-serif\" font-size=\"%d\">\n", width, height, font);
  fprintf(f, "<rect width=\"%d\" height=\"%d\" fill=\"white\"/>\n", width, height);

  // Axis titles: predicted along the top, true down the left.
  fprintf(f, "<text x=\"%d\" y=\"14\" text-anchor=\"middle\" font-size=\"13\">"
             "predicted label</text>\n", left + size / 2);
  fprintf(f, "<text x=\"14\" y=\"%d\" text-anchor=\"middle\" font-size=\"13\" "
             "transform=\"rotate(-90 14 %d)\">true label</text>\n",
          top + size / 2, top + size / 2);

  // Class names: column names rotated above the matrix, row names to its left.
  for (int c = 0; c < K; c++) {
    int x = left + c * cell + cell / 2 + font / 3, y = top - 4;
    fprintf(f, "<text x=\"%d\" y=\"%d\" transform=\"rotate(-90 %d %d)\">", x, y, x, y);
    xml_text(f, class_name(r, c));
    fprintf(f, "</text>\n<text x=\"%d\" y=\"%d\" text-anchor=\"end\">", left - 4,
            top + c * cell + cell / 2 + font / 3);
    xml_text(f, class_name(r, c));
    fputs("</text>\n", f);
  }

  // Cells: colour by the share of the true class's rows (recall-normalised), so a
  // small class is as readable as a big one; the count is written inside.
  for (int t = 0; t < K; t++) {
    int64_t row_total = 0;
    for (int p = 0; p < K; p++) row_total += cm[(int64_t)t * K + p];
    for (int p = 0; p < K; p++) {
      int64_t v = cm[(int64_t)t * K + p];
      double share = row_total ? (double)v / (double)row_total : 0;
      int shade = (int)(255 - 200 * share), x = left + p * cell, y = top + t * cell;
      fprintf(f, "<rect x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" "
                 "fill=\"rgb(%d,%d,255)\" stroke=\"#ccc\"><title>true ",
              x, y, cell, cell, shade, shade);
      xml_text(f, class_name(r, t));
      fputs(", predicted ", f);
      xml_text(f, class_name(r, p));
      fprintf(f, ": %lld</title></rect>\n", (long long)v);
      if (cell >= 20 && v > 0)
        fprintf(f, "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\" fill=\"%s\">%lld</text>\n",
                x + cell / 2, y + cell / 2 + font / 3, share > 0.6 ? "white" : "black",
                (long long)v);
    }
  }
  fputs("</svg>\n", f);
  return close_out(f, path);
}

// --- stdout table -----------------------------------------------------------------

void tl_report_print(const tl_report *r, FILE *out) {
  const tl_metrics *m = r->model, *s = r->shortcut;
  int K = r->n_classes, w = 12;
  for (int c = 0; c < K; c++)
    if ((int)strlen(class_name(r, c)) > w) w = (int)strlen(class_name(r, c));
  if (w > 40) w = 40;

  fprintf(out, "\n%s split of %s (%lld samples, %d classes%s%s)\n",
          r->split ? r->split : "?", r->data_dir ? r->data_dir : "?", (long long)r->n, K,
          r->split_policy ? ", split by " : "", r->split_policy ? r->split_policy : "");
  if (r->split_policy && !strcmp(r->split_policy, "packet"))
    fprintf(out, "WARNING: split by packet; one flow's packets are in train and test\n");
  fprintf(out, "%-*s %9s %9s %9s %9s %12s\n", w, "class", "support", "precision", "recall",
          "f1", "shortcut f1");
  for (int c = 0; c < K; c++) {
    const tl_class_metrics *pc = &m->per_class[c];
    fprintf(out, "%-*.*s %9lld %9.4f %9.4f %9.4f", w, w, class_name(r, c),
            (long long)pc->support, pc->precision, pc->recall, pc->f1);
    if (s) fprintf(out, " %12.4f\n", s->per_class[c].f1);
    else fprintf(out, " %12s\n", "-");
  }
  fprintf(out, "%-*s %9lld %9s %9s %9.4f", w, "accuracy", (long long)m->n, "", "",
          m->accuracy);
  if (s) fprintf(out, " %12.4f\n", s->accuracy);
  else fprintf(out, " %12s\n", "-");
  fprintf(out, "%-*s %9lld %9.4f %9.4f %9.4f", w, "macro avg", (long long)m->n,
          m->macro_precision, m->macro_recall, m->macro_f1);
  if (s) fprintf(out, " %12.4f\n", s->macro_f1);
  else fprintf(out, " %12s\n", "-");
  fprintf(out, "%-*s %9lld %9.4f %9.4f %9.4f", w, "weighted avg", (long long)m->n,
          m->weighted_precision, m->weighted_recall, m->weighted_f1);
  if (s) fprintf(out, " %12.4f\n", s->weighted_f1);
  else fprintf(out, " %12s\n", "-");

  // One line a reader can quote: the model against its baselines.
  fprintf(out, "macro F1: model %.4f", m->macro_f1);
  if (s) fprintf(out, ", header-only shortcut %.4f", s->macro_f1);
  if (r->majority) fprintf(out, ", majority class %.4f", r->majority->macro_f1);
  fputc('\n', out);
  if (s && r->shortcut_root) fprintf(out, "shortcut's first split: %s\n", r->shortcut_root);
}

// --- all of it --------------------------------------------------------------------

tl_status tl_report_write(const tl_report *r, const char *dir) {
  static const char *names[] = {"eval.json", "predictions.csv", "confusion.csv",
                                "confusion.svg"};
  tl_status (*writers[])(const tl_report *, const char *) = {
      tl_report_write_json, tl_report_write_predictions, tl_report_write_confusion_csv,
      tl_report_write_confusion_svg};
  char path[4096];
  for (int i = 0; i < 4; i++) {
    snprintf(path, sizeof path, "%s/%s", dir, names[i]);
    if (writers[i](r, path) != TL_OK) return TL_ERR;
  }
  return TL_OK;
}

tl_status tl_report_majority(const int32_t *train_labels, int64_t n_train,
                             const int32_t *y_true, int64_t n, int K, tl_metrics *m) {
  // The most frequent train class (the lowest index on ties).
  int64_t *count = tl_xcalloc((size_t)(K > 0 ? K : 1), sizeof *count);
  for (int64_t i = 0; i < n_train; i++)
    if (train_labels[i] >= 0 && train_labels[i] < K) count[train_labels[i]]++;
  int best = 0;
  for (int c = 1; c < K; c++)
    if (count[c] > count[best]) best = c;
  free(count);
  int32_t *pred = tl_xmalloc((size_t)(n > 0 ? n : 1) * sizeof *pred);
  for (int64_t i = 0; i < n; i++) pred[i] = best;
  tl_status st = tl_metrics_compute(y_true, pred, n, K, m);
  free(pred);
  return st;
}
