// report.h: what an evaluation leaves in its run folder, and the table it prints.
//
//   eval.json        accuracy, macro/weighted precision, recall and F1, per-class
//                    scores, the confusion matrix, the split and split policy, the
//                    shard set and checkpoint used, and the same figures for the
//                    shortcut audit (shortcut.h) and the majority-class baseline
//   predictions.csv  row,flow_id,true,predicted,p_<class>... (one row per sample)
//   confusion.csv    true class per row, predicted class per column, counts
//   confusion.svg    the confusion matrix as a heat map (row-normalised colour,
//                    counts written in the cells), labelled axes
// and on stdout a table: per class support, precision, recall, F1 and the
// shortcut baseline's F1 beside it, then accuracy and the two averages.
#pragma once
#include <stdint.h>
#include <stdio.h>

#include "core/log.h"
#include "train/metrics.h"

typedef struct tl_report {
  int n_classes;                  // K
  const char *const *class_names; // [K]; NULL: "class0", "class1", ...
  int64_t n;                      // samples scored
  const int32_t *y_true;          // [n]
  const int32_t *y_pred;          // [n]
  const int64_t *row;             // [n] row index in the shard set; NULL: 0..n-1
  const uint64_t *flow_id;        // [n] or NULL (column left empty)
  const float *probs;             // [n, K] class probabilities, or NULL (no columns)
  const tl_metrics *model;        // required
  const tl_metrics *shortcut;     // header-only baseline, or NULL when not run
  const char *shortcut_desc;      // what the baseline sees, one line (or NULL)
  const char *shortcut_root;      // feature of the baseline tree's root split, or NULL
  const tl_metrics *majority;     // majority-class baseline, or NULL
  const char *task;               // "packet" | "flow" (or NULL)
  const char *split;              // split scored, e.g. "test"
  const char *split_policy;       // "flow" | "file" | "packet" (warned about) | NULL
  const char *data_dir;           // shard set
  const char *checkpoint;         // checkpoint scored (or NULL)
} tl_report;

// Writes eval.json, predictions.csv, confusion.csv and confusion.svg into dir
// (which must exist). Returns TL_ERR with tl_last_error() naming the file that
// could not be written.
tl_status tl_report_write(const tl_report *r, const char *dir);

// The single files, each to a path.
tl_status tl_report_write_json(const tl_report *r, const char *path);
tl_status tl_report_write_predictions(const tl_report *r, const char *path);
tl_status tl_report_write_confusion_csv(const tl_report *r, const char *path);
tl_status tl_report_write_confusion_svg(const tl_report *r, const char *path);

// Prints the readable table to out.
void tl_report_print(const tl_report *r, FILE *out);

// The metrics of always answering the most frequent class of train_labels[n_train]
// on the rows y_true[n] (K classes), into m (free with tl_metrics_free).
tl_status tl_report_majority(const int32_t *train_labels, int64_t n_train,
                             const int32_t *y_true, int64_t n, int K, tl_metrics *m);
