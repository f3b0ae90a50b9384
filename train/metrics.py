"""Pure metric functions over (y_true, y_prob, labels): no torch, no files, no plotting.

`evaluate` returns a JSON-ready dict; ROC curves are returned separately for the plots.
AUC is one-vs-rest per class (a binary problem is the same thing for both classes); a class
with no positives or no negatives in the split has no AUC (None), and the macro AUC averages
the classes that have one.
"""
from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import numpy as np
from sklearn import metrics as skm

from hub.calibration import expected_calibration_error


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


# ----------------------------------------------------------------------------- bootstrap intervals
# Every resample is a row of case weights (how often each case was drawn), so the case bootstrap and
# the cluster bootstrap (whole groups drawn, each case weighted by its group's draws) share one
# vectorised computation: metrics of all resamples at once as weighted sums, no Python loop over them.
_BOOT_CELLS = 4_000_000  # resamples x cases per chunk: about 32 MB per weight matrix


def _weighted_auc(weights: np.ndarray, positive: np.ndarray, score: np.ndarray) -> np.ndarray:
    """One-vs-rest AUC per row of case weights (ties count one half); nan where a side has no weight."""
    order = np.argsort(score, kind="stable")
    s, w, pos = score[order], weights[:, order], positive[order]
    neg_cum = np.cumsum(w * ~pos, axis=1)
    neg_cum = np.concatenate([np.zeros((len(w), 1)), neg_cum], axis=1)  # neg_cum[:, i]: weight of the first i
    first = np.searchsorted(s, s, side="left")  # tie block of each sorted case: [first, last)
    last = np.searchsorted(s, s, side="right")
    below, tied = neg_cum[:, first], neg_cum[:, last] - neg_cum[:, first]
    w_pos = (w * pos).sum(axis=1)
    w_neg = neg_cum[:, -1]
    won = ((w * pos) * (below + 0.5 * tied)).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where((w_pos > 0) & (w_neg > 0), won / (w_pos * w_neg), np.nan)


def _bootstrap_metrics(weights: np.ndarray, y_true: np.ndarray,
                       y_prob: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Accuracy, macro F1 and macro AUC of each row of case weights, as `evaluate` defines them."""
    n_classes = y_prob.shape[1]
    y_pred = y_prob.argmax(axis=1)
    accuracy = weights @ (y_pred == y_true) / weights.sum(axis=1)
    cell = np.zeros((len(y_true), n_classes * n_classes))
    cell[np.arange(len(y_true)), y_true * n_classes + y_pred] = 1.0
    cm = (weights @ cell).reshape(-1, n_classes, n_classes)
    tp, predicted, actual = np.diagonal(cm, axis1=1, axis2=2), cm.sum(axis=1), cm.sum(axis=2)
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.where(predicted > 0, tp / predicted, 0.0)
        recall = np.where(actual > 0, tp / actual, 0.0)
        f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
    # Macro AUC over the classes that have one in the full data (as `evaluate`). A resample in which
    # one of them has no positives (or no negatives) has no comparable macro AUC: it is nan here and
    # left out of the AUC interval, and the number of resamples used is reported.
    defined = [k for k in range(n_classes) if 0 < (y_true == k).sum() < len(y_true)]
    aucs = [_weighted_auc(weights, y_true == k, y_prob[:, k]) for k in defined]
    auc = np.mean(aucs, axis=0) if aucs else np.full(len(weights), np.nan)
    return accuracy, f1.mean(axis=1), auc


def _units(n: int, groups: Sequence | None) -> tuple[np.ndarray, int]:
    """(the resampling unit of each case, the number of units): cases, or whole groups when given."""
    if groups is None:
        return np.arange(n), n
    if len(groups) != n:
        raise ValueError(f"groups has {len(groups)} entries for {n} cases")
    unit = np.unique(np.asarray(groups), return_inverse=True)[1].ravel()
    return unit, int(unit.max()) + 1


def _resample_weights(n: int, groups: Sequence | None, n_boot: int, seed: int) -> Iterator[np.ndarray]:
    """Chunks of bootstrap case weights, (resamples, n) each, n_boot rows in all: how often each case was drawn.

    Slices of one patient are not independent: with `groups`, whole patients are drawn, each case of a drawn
    patient counted as often as its patient was drawn (cluster bootstrap). The same seed gives the same draws,
    which is what makes a paired comparison paired."""
    unit, n_units = _units(n, groups)
    rng = np.random.default_rng(seed)
    rows = max(1, _BOOT_CELLS // n)  # resamples per chunk: bounds the (rows, n) weight matrices
    for start in range(0, n_boot, rows):
        b = min(rows, n_boot - start)
        draws = rng.integers(0, n_units, size=(b, n_units))
        counts = np.bincount((np.arange(b)[:, None] * n_units + draws).ravel(), minlength=b * n_units)
        yield counts.reshape(b, n_units)[:, unit].astype(np.float64)


def bootstrap_intervals(y_true: Sequence[int], y_prob: np.ndarray, n_boot: int = 1000, seed: int = 0,
                        level: float = 0.95, groups: Sequence | None = None) -> dict:
    """Percentile bootstrap intervals of accuracy, macro F1 and macro AUC; whole groups resampled if given."""
    y_true = np.asarray(y_true, dtype=np.int64)
    y_prob = np.asarray(y_prob, dtype=np.float64)
    if y_prob.ndim != 2 or len(y_prob) != len(y_true) or len(y_true) == 0:
        raise ValueError(f"y_prob must have shape ({len(y_true)}, n_classes) with at least one case, "
                         f"got {y_prob.shape}")
    if not 0 < level < 1 or n_boot < 1:
        raise ValueError(f"need 0 < level < 1 and n_boot >= 1, got level={level}, n_boot={n_boot}")
    boot = [_bootstrap_metrics(w, y_true, y_prob) for w in _resample_weights(len(y_true), groups, n_boot, seed)]
    accuracy, f1, auc = (np.concatenate(parts) for parts in zip(*boot, strict=True))
    estimate = _bootstrap_metrics(np.ones((1, len(y_true))), y_true, y_prob)
    tails = 100 * (1 - level) / 2, 100 * (1 + level) / 2
    out: dict = {"level": level, "n_boot": n_boot, "resampled": "cases" if groups is None else "groups",
                 "units": _units(len(y_true), groups)[1]}
    for name, point, values in zip(("accuracy", "f1_macro", "auc_macro"), estimate, (accuracy, f1, auc),
                                   strict=True):
        kept = values[~np.isnan(values)]
        out[name] = None if np.isnan(point[0]) or not len(kept) else {
            "estimate": float(point[0]), "low": float(np.percentile(kept, tails[0])),
            "high": float(np.percentile(kept, tails[1]))}
    out["auc_resamples"] = int((~np.isnan(auc)).sum())
    return out


PAIRED = ("accuracy", "auc_macro")


def paired_bootstrap(y_true: Sequence[int], prob_a: np.ndarray, prob_b: np.ndarray, n_boot: int = 2000,
                     seed: int = 0, level: float = 0.95, groups: Sequence | None = None) -> dict:
    """Model B against model A on the same cases: each one's accuracy and macro AUC, and B - A with a paired
    percentile bootstrap interval and the share of resamples in which B scores higher.

    Both models are scored on the same resampled cases (or whole groups) each time, so what one patient does to
    both cancels out of the difference: its interval is much narrower than the two models' own intervals side
    by side, and it is the one to read before calling one model better."""
    y_true = np.asarray(y_true, dtype=np.int64)
    probs = [np.asarray(p, dtype=np.float64) for p in (prob_a, prob_b)]
    if any(p.ndim != 2 or len(p) != len(y_true) for p in probs) or probs[0].shape != probs[1].shape or not len(y_true):
        raise ValueError(f"both models need probabilities of shape ({len(y_true)}, n_classes), got "
                         f"{probs[0].shape} and {probs[1].shape}")
    if not 0 < level < 1 or n_boot < 1:
        raise ValueError(f"need 0 < level < 1 and n_boot >= 1, got level={level}, n_boot={n_boot}")
    drawn: dict[str, list] = {name: [] for name in PAIRED}
    for weights in _resample_weights(len(y_true), groups, n_boot, seed):
        a, b = (_bootstrap_metrics(weights, y_true, p) for p in probs)
        drawn["accuracy"].append(np.stack([a[0], b[0]], axis=1))
        drawn["auc_macro"].append(np.stack([a[2], b[2]], axis=1))
    points = [_bootstrap_metrics(np.ones((1, len(y_true))), y_true, p) for p in probs]
    tails = 100 * (1 - level) / 2, 100 * (1 + level) / 2
    out: dict = {"level": level, "n_boot": n_boot, "resampled": "cases" if groups is None else "groups",
                 "units": _units(len(y_true), groups)[1], "cases": len(y_true)}
    for name, index in zip(PAIRED, (0, 2), strict=True):
        pairs = np.concatenate(drawn[name])
        pairs = pairs[~np.isnan(pairs).any(axis=1)]  # a resample without a class's positives has no macro AUC
        diff = pairs[:, 1] - pairs[:, 0]
        a, b = float(points[0][index][0]), float(points[1][index][0])
        if not len(diff) or math.isnan(a) or math.isnan(b):  # e.g. one class only: no AUC to compare
            out[name] = None
            continue
        out[name] = {"a": a, "b": b, "difference": b - a, "low": float(np.percentile(diff, tails[0])),
                     "high": float(np.percentile(diff, tails[1])), "b_higher": float((diff > 0).mean()),
                     "resamples": len(diff)}
    return out
