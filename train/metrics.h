// metrics.h: classification metrics from (true, predicted) label arrays.
//
// Conventions are scikit-learn's defaults (precision_recall_fscore_support with
// labels = 0..K-1 and zero_division = "warn", the warning itself dropped):
//  - every one of the K classes counts in the macro average, also a class that
//    is absent from the truth and never predicted (it scores 0, 0, 0);
//  - precision of a class never predicted is 0; recall of a class absent from
//    the truth is 0;
//  - F1 = 2 tp / (2 tp + fp + fn), and 0 when that denominator is 0;
//  - weighted averages weigh each class by its support (true count); 0 when the
//    total support is 0.
// The confusion matrix has a row per true class and a column per predicted class.
#pragma once
#include <stdint.h>

#include "core/log.h"

typedef struct tl_class_metrics {
  double precision;
  double recall;
  double f1;
  int64_t support;   // rows whose true label is this class
  int64_t predicted; // rows predicted as this class
} tl_class_metrics;

typedef struct tl_metrics {
  int n_classes;            // K
  int64_t n;                // rows scored
  double accuracy;
  double macro_precision, macro_recall, macro_f1;
  double weighted_precision, weighted_recall, weighted_f1;
  tl_class_metrics *per_class; // [K]
  int64_t *confusion;          // [K * K], confusion[t * K + p]
} tl_metrics;

// Scores n rows of labels in [0, K). Fills m (its arrays allocated here; free
// them with tl_metrics_free). Returns TL_ERR with tl_last_error() naming the
// first row whose label is out of range, or when K < 1; m is then left empty
// (safe to free).
tl_status tl_metrics_compute(const int32_t *y_true, const int32_t *y_pred, int64_t n, int K,
                             tl_metrics *m);

// Frees m's arrays and zeroes it; accepts a zeroed or already-freed struct.
void tl_metrics_free(tl_metrics *m);
