"""Temperature scaling (Guo et al. 2017): one number T that makes a model's probabilities mean what they say.

The published probabilities are softmax(logits / T). T is fitted by the log loss of held-out images (the
validation block; never the training images, where a model is surer than on new ones) and travels in
config.json as the top-level key `temperature`, beside `label_names`. T > 0 leaves every prediction's class, and
so accuracy and the confusion matrix, as they are; it moves the confidence, the ECE and the log loss, and can
move a one-vs-rest AUC (a class's probability is ranked across images, and T changes that ranking a little).

Only the reported probabilities are scaled. The network is unchanged: the CAMs and the faithfulness curves
read its own logits and softmax, so a temperature changes no heatmap (Score-CAM's weights are a softmax of
logits over channels: folding T into the head would sharpen it and change the maps).

Why it is needed: the annotation-guided MRI models are underconfident. Their grounding loss pulls the
cells outside the lesion box toward "no class", and the head averages them with the few cells inside it; the
context-swap final fit gave its true class a mean probability of 0.51 at 0.90 accuracy (test ECE 0.38).
A temperature of 0.17 fitted on its validation run's validation block gave 0.04 on that test block
(docs/lesion-mri.md#calibration).
"""
from __future__ import annotations

import math

import numpy as np

# Fewest held-out images a temperature is fitted on: below it the ECE of 15 bins is noise, and one or two
# images decide T (Guo et al. fitted on thousands; the MRI validation block has 294).
MIN_IMAGES = 50
# The search range of a fitted T: far outside what a trained classifier needs (0.17 for the guided MRI model),
# and bounded so that a separable validation set (its log loss falls for ever as T -> 0) gives a finite T.
T_MIN, T_MAX = 0.01, 100.0


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


def check_temperature(value: object, where: str = "temperature") -> float:
    """`value` as a positive finite float, or a ValueError that names `where` and what to give."""
    try:
        t = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        t = math.nan
    if isinstance(value, bool) or not math.isfinite(t) or t <= 0:
        raise ValueError(f"{where} must be a positive number (probabilities are softmax(logits / T); "
                         f"1 leaves them as they are), got {value!r}")
    return t


def log_probs(y_prob: np.ndarray) -> np.ndarray:
    """The log of probability rows; softmax(log p / T) is softmax(logits / T) for a model's own softmax, and
    the same rule applied to the mean of flip-TTA probabilities."""
    return np.log(np.clip(np.asarray(y_prob, dtype=np.float64), 1e-12, None))


def log_softmax(scores: np.ndarray, temperature: float) -> np.ndarray:
    """log softmax(scores / T) by row, shifted by each row's maximum so no exp overflows."""
    z = np.asarray(scores, dtype=np.float64) / temperature
    z = z - z.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def scale(scores: np.ndarray, temperature: float) -> np.ndarray:
    """softmax(scores / T) by row: `scores` are logits or log-probabilities (shifting a row changes nothing)."""
    return np.exp(log_softmax(scores, check_temperature(temperature)))


def nll(scores: np.ndarray, y_true: np.ndarray, temperature: float) -> float:
    """Mean negative log-likelihood of the true classes under softmax(scores / T)."""
    log_p = log_softmax(scores, temperature)
    return float(-log_p[np.arange(len(y_true)), np.asarray(y_true)].mean())


def fit_temperature(scores: np.ndarray, y_true: np.ndarray) -> float:
    """The T that minimises the log loss of (scores, y_true): logits or log-probabilities of held-out images."""
    from scipy.optimize import minimize_scalar

    scores, y_true = np.asarray(scores, dtype=np.float64), np.asarray(y_true, dtype=np.int64)
    if scores.ndim != 2 or len(scores) != len(y_true) or len(y_true) == 0:
        raise ValueError(f"fitting a temperature needs one row of scores per label, got {scores.shape} scores "
                         f"for {len(y_true)} labels")
    if not np.isfinite(scores).all():
        raise ValueError("fitting a temperature needs finite scores; the model gave inf or nan")
    if len(y_true) < MIN_IMAGES:
        raise ValueError(f"fitting a temperature needs at least {MIN_IMAGES} held-out images, got {len(y_true)}; "
                         "fit it on more held-out images, or pass a temperature chosen on them")
    if (scores.argmax(axis=1) == y_true).all():
        # Without a single error the log loss falls for ever as T -> 0: every probability would become 1.
        raise ValueError(f"the {len(y_true)} held-out images are all classified right, so no temperature can be "
                         "fitted on them (it would push every probability to 1); fit it on a larger or harder "
                         "held-out set, or pass one")
    # The log loss is smooth and unimodal in log T, so a bounded scalar search finds its minimum.
    found = minimize_scalar(lambda log_t: nll(scores, y_true, math.exp(log_t)),
                            bounds=(math.log(T_MIN), math.log(T_MAX)), method="bounded",
                            options={"xatol": 1e-4})
    return float(math.exp(found.x))


def figures(y_true: np.ndarray, y_prob: np.ndarray) -> dict:
    """What a temperature changes, for one split's probabilities: ECE, log loss, the mean probability of the true
    class, the macro one-vs-rest AUC (it can move a little), and accuracy (which a temperature never changes)."""
    from sklearn.metrics import roc_auc_score  # training's and the CLI's dependency, not the Space's

    y_true, y_prob = np.asarray(y_true, dtype=np.int64), np.asarray(y_prob, dtype=np.float64)
    true_p = y_prob[np.arange(len(y_true)), y_true]
    aucs = [roc_auc_score(y_true == k, y_prob[:, k]) for k in range(y_prob.shape[1]) if 0 < (y_true == k).sum() <
            len(y_true)]
    return {"ece": expected_calibration_error(y_true, y_prob),
            "log_loss": float(-np.log(np.clip(true_p, 1e-12, None)).mean()),
            "mean_p_true": float(true_p.mean()),
            "accuracy": float((y_prob.argmax(axis=1) == y_true).mean()),
            "auc_macro": float(np.mean(aucs)) if aucs else None}


def compare(y_true: np.ndarray, raw_prob: np.ndarray, temperature: float) -> dict:
    """{"before": figures of the raw probabilities, "after": figures with T applied} for one split."""
    return {"n": int(len(y_true)), "before": figures(y_true, raw_prob),
            "after": figures(y_true, scale(log_probs(raw_prob), temperature))}


def summary_line(name: str, split: dict) -> str:
    """One line of a split's before/after figures, as the CLIs print it and the card shows it."""
    b, a = split["before"], split["after"]
    return (f"{name} ({split['n']} images): ECE {b['ece']:.3f} -> {a['ece']:.3f}, log loss {b['log_loss']:.3f} -> "
            f"{a['log_loss']:.3f}, mean probability of the true class {b['mean_p_true']:.3f} -> "
            f"{a['mean_p_true']:.3f} at accuracy {a['accuracy']:.3f}"
            + (f", macro AUC {b['auc_macro']:.4f} -> {a['auc_macro']:.4f}" if a.get("auc_macro") is not None else ""))
