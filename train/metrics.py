"""Pure metric functions over (y_true, y_prob, labels): no torch, no files, no plotting.

`evaluate` returns a JSON-ready dict; ROC curves are returned separately for the plots.
AUC is one-vs-rest per class (a binary problem is the same thing for both classes); a class
with no positives or no negatives in the split has no AUC (None), and the macro AUC averages
the classes that have one.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sklearn import metrics as skm


def expected_calibration_error(y_true: np.ndarray, y_prob: np.ndarray, bins: int = 15) -> float:
    """ECE of the top-1 confidence over equal-width bins (the usual definition, Guo et al. 2017)."""
    conf, pred = y_prob.max(axis=1), y_prob.argmax(axis=1)
    correct = (pred == y_true).astype(np.float64)
    edges = np.linspace(0.0, 1.0, bins + 1)
    # right-closed bins so a confidence of exactly 1.0 lands in the last one
    idx = np.clip(np.searchsorted(edges, conf, side="left") - 1, 0, bins - 1)
    ece = 0.0
    for b in range(bins):
        sel = idx == b
        if sel.any():
            ece += sel.mean() * abs(correct[sel].mean() - conf[sel].mean())
    return float(ece)


def _one_vs_rest(y_true: np.ndarray, y_prob: np.ndarray, score) -> list:
    """score(is_class_k, prob_k) per class; None where the class has no positives or no negatives."""
    out = []
    for k in range(y_prob.shape[1]):
        positives = y_true == k
        out.append(None if positives.all() or not positives.any() else score(positives, y_prob[:, k]))
    return out


def per_class_auc(y_true: np.ndarray, y_prob: np.ndarray) -> list[float | None]:
    """One-vs-rest ROC AUC per class; None where the class has no positives or no negatives."""
    return _one_vs_rest(y_true, y_prob, lambda pos, p: float(skm.roc_auc_score(pos, p)))


def roc_curves(y_true: np.ndarray, y_prob: np.ndarray) -> list[tuple[np.ndarray, np.ndarray] | None]:
    """(fpr, tpr) per class, one-vs-rest; None where undefined."""
    return _one_vs_rest(y_true, y_prob, lambda pos, p: tuple(skm.roc_curve(pos, p)[:2]))


def evaluate(y_true: Sequence[int], y_prob: np.ndarray, labels: Sequence[str]) -> dict:
    """Every reported metric of one split as a JSON-ready dict."""
    y_true = np.asarray(y_true, dtype=np.int64)
    y_prob = np.asarray(y_prob, dtype=np.float64)
    n = len(labels)
    if y_prob.ndim != 2 or y_prob.shape != (len(y_true), n):
        raise ValueError(f"y_prob must have shape ({len(y_true)}, {n}), got {y_prob.shape}")
    if len(y_true) == 0:
        raise ValueError("cannot evaluate an empty split")
    y_pred = y_prob.argmax(axis=1)
    classes = np.arange(n)
    cm = skm.confusion_matrix(y_true, y_pred, labels=classes)
    # zero_division=0: a class never predicted (or absent) has precision (recall) 0, not a warning.
    precision, recall, f1, support = skm.precision_recall_fscore_support(y_true, y_pred, labels=classes,
                                                                         zero_division=0)
    weights = support / support.sum()
    aucs = per_class_auc(y_true, y_prob)
    defined = [a for a in aucs if a is not None]
    return {
        "n": int(len(y_true)),
        "accuracy": float((y_pred == y_true).mean()),
        "precision_macro": float(precision.mean()),
        "recall_macro": float(recall.mean()),
        "f1_macro": float(f1.mean()),
        "precision_weighted": float((precision * weights).sum()),
        "recall_weighted": float((recall * weights).sum()),
        "f1_weighted": float((f1 * weights).sum()),
        "auc_macro": float(np.mean(defined)) if defined else None,
        # float32 softmax rows sum to 1 only within ~1e-7, which scikit-learn warns about: renormalise.
        "log_loss": float(skm.log_loss(y_true, y_prob / y_prob.sum(axis=1, keepdims=True), labels=classes)),
        "ece": expected_calibration_error(y_true, y_prob),
        "per_class": {
            label: {"precision": float(precision[k]), "recall": float(recall[k]), "f1": float(f1[k]),
                    "auc": aucs[k], "support": int(support[k])}
            for k, label in enumerate(labels)
        },
        "confusion_matrix": cm.tolist(),
        "labels": list(labels),
    }
