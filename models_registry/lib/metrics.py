"""Classification metrics in numpy (scikit-learn is not a dependency)."""

from __future__ import annotations

import numpy as np


def accuracy_score(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    return float(np.mean(np.asarray(y_true) == np.asarray(y_pred))) if len(y_true) else 0.0


def f1_per_class(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> list[float]:
    scores = []
    for k in range(n_classes):
        tp = float(np.sum((y_pred == k) & (y_true == k)))
        fp = float(np.sum((y_pred == k) & (y_true != k)))
        fn = float(np.sum((y_pred != k) & (y_true == k)))
        denom = 2 * tp + fp + fn
        scores.append(2 * tp / denom if denom else 0.0)
    return scores


def log_loss(y_true: np.ndarray, proba: np.ndarray, eps: float = 1e-15) -> float:
    p = np.clip(proba[np.arange(len(y_true)), y_true], eps, 1.0)
    return float(-np.mean(np.log(p)))


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> list[list[int]]:
    """counts[true][predicted]."""
    counts = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(counts, (np.asarray(y_true, dtype=int), np.asarray(y_pred, dtype=int)), 1)
    return counts.tolist()
