#!/usr/bin/env python3
"""Writes the metrics fixtures under tests/fixtures/metrics/ (run once, commit).

Each case is a prediction file NAME.txt (a line "classes K", then one line
"true predicted" per row) and NAME.expected.json holding what scikit-learn
computes for it with labels=0..K-1 and its default zero_division. The C test
(tests/train/test_metrics.c) reads both and never needs Python.

    /opt/fixvenv/bin/python tests/make_metrics_fixtures.py
"""
import json
import os
import warnings

import numpy as np
import sklearn
from sklearn.metrics import (accuracy_score, confusion_matrix,
                             precision_recall_fscore_support)

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "fixtures", "metrics")


def noisy(rng, y, k, p_wrong):
    """Copies y, replacing a p_wrong share of rows by a random other class."""
    pred = y.copy()
    for i in range(len(y)):
        if k > 1 and rng.random() < p_wrong:
            pred[i] = (y[i] + rng.integers(1, k)) % k
    return pred


def cases():
    rng = np.random.default_rng(20261203)
    out = {}
    # Balanced: 4 classes, 25 rows each, 30% errors.
    y = np.repeat(np.arange(4), 25)
    out["balanced"] = (4, y, noisy(rng, y, 4, 0.3))
    # Imbalanced: 5 classes with supports 200, 50, 20, 7, 3.
    y = np.repeat(np.arange(5), [200, 50, 20, 7, 3])
    out["imbalanced"] = (5, y, noisy(rng, y, 5, 0.2))
    # Class 2 is in the truth but never predicted.
    y = np.repeat(np.arange(3), [10, 8, 6])
    p = noisy(rng, y, 3, 0.2)
    p[p == 2] = 0
    out["never_predicted"] = (3, y, p)
    # Class 3 is predicted but absent from the truth; class 4 appears nowhere.
    y = np.repeat(np.arange(3), [12, 9, 5])
    p = noisy(rng, y, 3, 0.1)
    p[[0, 5, 13, 20]] = 3
    out["absent_from_truth"] = (5, y, p)
    # K = 1: every row is class 0.
    out["k1"] = (1, np.zeros(7, dtype=int), np.zeros(7, dtype=int))
    # Nothing right: every prediction wrong, so every score is 0.
    y = np.array([0, 0, 1, 1, 2])
    out["all_wrong"] = (3, y, (y + 1) % 3)
    # Larger random case with a skewed predictor.
    y = rng.integers(0, 7, size=500)
    p = np.where(rng.random(500) < 0.6, y, rng.integers(0, 3, size=500))
    out["random7"] = (7, y, p)
    return out


def expected(k, y, p):
    labels = list(range(k))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pc = precision_recall_fscore_support(y, p, labels=labels)
        ma = precision_recall_fscore_support(y, p, labels=labels, average="macro")
        wa = precision_recall_fscore_support(y, p, labels=labels, average="weighted")
    return {
        "sklearn": sklearn.__version__,
        "classes": k,
        "accuracy": float(accuracy_score(y, p)),
        "precision": [float(v) for v in pc[0]],
        "recall": [float(v) for v in pc[1]],
        "f1": [float(v) for v in pc[2]],
        "support": [int(v) for v in pc[3]],
        "macro_precision": float(ma[0]),
        "macro_recall": float(ma[1]),
        "macro_f1": float(ma[2]),
        "weighted_precision": float(wa[0]),
        "weighted_recall": float(wa[1]),
        "weighted_f1": float(wa[2]),
        "confusion": confusion_matrix(y, p, labels=labels).tolist(),
    }


def main():
    os.makedirs(OUT, exist_ok=True)
    for name, (k, y, p) in cases().items():
        with open(os.path.join(OUT, name + ".txt"), "w") as f:
            f.write(f"classes {k}\n")
            for t, q in zip(y, p):
                f.write(f"{int(t)} {int(q)}\n")
        with open(os.path.join(OUT, name + ".expected.json"), "w") as f:
            json.dump(expected(k, y, p), f, indent=1)
            f.write("\n")
        print(name, len(y), "rows")


if __name__ == "__main__":
    main()
