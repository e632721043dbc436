// metrics.c: accuracy, per-class precision/recall/F1, their macro and weighted
// averages, and the confusion matrix, with scikit-learn's zero-division rules.
#include "train/metrics.h"

#include <string.h>

// a / b, or 0 when b is 0 (scikit-learn's zero_division default, silenced).
static double safe_div(double a, double b) { return b > 0 ? a / b : 0.0; }

// Counts the confusion matrix; fails on the first label outside [0, K).
static tl_status count_confusion(const int32_t *y_true, const int32_t *y_pred, int64_t n,
                                 int K, int64_t *confusion) {
  for (int64_t i = 0; i < n; i++) {
    int32_t t = y_true[i], p = y_pred[i];
    if (t < 0 || t >= K || p < 0 || p >= K) {
      tl_set_error("metrics: row %lld has labels (true %d, predicted %d); expected 0..%d",
                   (long long)i, t, p, K - 1);
      return TL_ERR;
    }
    confusion[(int64_t)t * K + p]++;
  }
  return TL_OK;
}

// Per-class scores from the confusion matrix: tp on the diagonal, fp the rest of
// the column, fn the rest of the row.
static void score_classes(tl_metrics *m) {
  int K = m->n_classes;
  for (int c = 0; c < K; c++) {
    int64_t tp = m->confusion[(int64_t)c * K + c], support = 0, predicted = 0;
    for (int j = 0; j < K; j++) {
      support += m->confusion[(int64_t)c * K + j];
      predicted += m->confusion[(int64_t)j * K + c];
    }
    tl_class_metrics *pc = &m->per_class[c];
    pc->support = support;
    pc->predicted = predicted;
    pc->precision = safe_div((double)tp, (double)predicted);
    pc->recall = safe_div((double)tp, (double)support);
    // The tp/fp/fn form rather than the harmonic mean, so 0/0 needs one rule only.
    pc->f1 = safe_div(2.0 * tp, (double)(2 * tp + (predicted - tp) + (support - tp)));
  }
}

// Accuracy and the two averages over all K classes.
static void average_classes(tl_metrics *m) {
  int K = m->n_classes;
  double correct = 0, total_support = 0;
  double sp = 0, sr = 0, sf = 0, wp = 0, wr = 0, wf = 0;
  for (int c = 0; c < K; c++) {
    const tl_class_metrics *pc = &m->per_class[c];
    correct += (double)m->confusion[(int64_t)c * K + c];
    total_support += (double)pc->support;
    sp += pc->precision, sr += pc->recall, sf += pc->f1;
    wp += pc->precision * pc->support;
    wr += pc->recall * pc->support;
    wf += pc->f1 * pc->support;
  }
  m->accuracy = safe_div(correct, (double)m->n);
  m->macro_precision = sp / K, m->macro_recall = sr / K, m->macro_f1 = sf / K;
  m->weighted_precision = safe_div(wp, total_support);
  m->weighted_recall = safe_div(wr, total_support);
  m->weighted_f1 = safe_div(wf, total_support);
}

tl_status tl_metrics_compute(const int32_t *y_true, const int32_t *y_pred, int64_t n, int K,
                             tl_metrics *m) {
  memset(m, 0, sizeof *m);
  if (K < 1) {
    tl_set_error("metrics: %d classes; expected at least 1", K);
    return TL_ERR;
  }
  m->n_classes = K;
  m->n = n;
  m->per_class = tl_xcalloc((size_t)K, sizeof *m->per_class);
  m->confusion = tl_xcalloc((size_t)K * (size_t)K, sizeof *m->confusion);
  if (count_confusion(y_true, y_pred, n, K, m->confusion) != TL_OK) {
    tl_metrics_free(m);
    return TL_ERR;
  }
  score_classes(m);
  average_classes(m);
  return TL_OK;
}

void tl_metrics_free(tl_metrics *m) {
  if (!m) return;
  free(m->per_class);
  free(m->confusion);
  memset(m, 0, sizeof *m);
}
