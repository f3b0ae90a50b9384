"""train.metrics against values computed by hand."""
from __future__ import annotations

import math

import numpy as np
import pytest

from train import metrics
from train.metrics import _bootstrap_metrics, bootstrap_intervals, evaluate, expected_calibration_error

LABELS = ["a", "b", "c"]
# 6 samples: true a,a,b,b,c,c ; predicted a,b,b,b,c,a
Y = np.array([0, 0, 1, 1, 2, 2])
P = np.array([
    [0.7, 0.2, 0.1],
    [0.3, 0.6, 0.1],
    [0.1, 0.8, 0.1],
    [0.2, 0.5, 0.3],
    [0.1, 0.1, 0.8],
    [0.5, 0.1, 0.4],
])


def test_confusion_precision_recall_f1():
    m = evaluate(Y, P, LABELS)
    assert m["confusion_matrix"] == [[1, 1, 0], [0, 2, 0], [1, 0, 1]]
    assert m["accuracy"] == pytest.approx(4 / 6)
    # a: tp 1, predicted 2, actual 2 -> P .5 R .5 F1 .5
    # b: tp 2, predicted 3, actual 2 -> P 2/3 R 1 F1 .8
    # c: tp 1, predicted 1, actual 2 -> P 1 R .5 F1 2/3
    pc = m["per_class"]
    assert (pc["a"]["precision"], pc["a"]["recall"], pc["a"]["f1"]) == pytest.approx((0.5, 0.5, 0.5))
    assert (pc["b"]["precision"], pc["b"]["recall"], pc["b"]["f1"]) == pytest.approx((2 / 3, 1.0, 0.8))
    assert (pc["c"]["precision"], pc["c"]["recall"], pc["c"]["f1"]) == pytest.approx((1.0, 0.5, 2 / 3))
    assert m["f1_macro"] == pytest.approx((0.5 + 0.8 + 2 / 3) / 3)
    assert m["precision_macro"] == pytest.approx((0.5 + 2 / 3 + 1.0) / 3)
    assert m["f1_weighted"] == pytest.approx((0.5 + 0.8 + 2 / 3) / 3)  # equal supports
    assert [pc[k]["support"] for k in LABELS] == [2, 2, 2]


def test_auc_one_vs_rest_by_hand():
    m = evaluate(Y, P, LABELS)
    # class a scores: positives {0.7, 0.3}, negatives {0.1, 0.2, 0.1, 0.5}
    # pairs won: 0.7 beats all 4; 0.3 beats 0.1,0.2,0.1 -> 7 of 8
    assert m["per_class"]["a"]["auc"] == pytest.approx(7 / 8)
    # class b: positives {0.8, 0.5}, negatives {0.2, 0.6, 0.1, 0.1}: 0.8 wins 4, 0.5 wins 3 -> 7/8
    assert m["per_class"]["b"]["auc"] == pytest.approx(7 / 8)
    # class c: positives {0.8, 0.4}, negatives {0.1, 0.1, 0.1, 0.3}: 8/8
    assert m["per_class"]["c"]["auc"] == pytest.approx(1.0)
    assert m["auc_macro"] == pytest.approx((7 / 8 + 7 / 8 + 1) / 3)


def test_log_loss_and_ece_by_hand():
    expected = -np.mean(np.log([0.7, 0.3, 0.8, 0.5, 0.8, 0.4]))  # probability of the true class
    assert evaluate(Y, P, LABELS)["log_loss"] == pytest.approx(expected)
    # top-1 confidences .7 .6 .8 .5 .8 .5, correct 1 0 1 1 1 0; 10 right-closed bins of width .1:
    # (.4,.5]: {.5 ok, .5 wrong} -> |.5-.5| = 0 ; (.5,.6]: {.6 wrong} -> .6 * 1/6
    # (.6,.7]: {.7 ok} -> .3 * 1/6 ; (.7,.8]: {.8 ok, .8 ok} -> .2 * 2/6
    ece = 0.6 / 6 + 0.3 / 6 + 0.2 * 2 / 6
    assert expected_calibration_error(Y, P, bins=10) == pytest.approx(ece)


def test_binary_and_missing_class():
    y = np.array([0, 0, 1, 1])
    p = np.array([[0.9, 0.1], [0.4, 0.6], [0.35, 0.65], [0.2, 0.8]])
    m = evaluate(y, p, ["neg", "pos"])
    # one-vs-rest on two classes: both AUCs are the same number (3 of 4 pairs ordered... by hand: pos
    # scores {.65,.8} vs neg {.1,.6}: all 4 pairs won -> 1.0)
    assert m["per_class"]["pos"]["auc"] == pytest.approx(1.0)
    assert m["per_class"]["neg"]["auc"] == pytest.approx(1.0)
    # a class absent from the split has no AUC, and the macro AUC skips it
    y3 = np.array([0, 1, 0, 1])
    p3 = np.array([[0.8, 0.1, 0.1], [0.2, 0.7, 0.1], [0.6, 0.3, 0.1], [0.3, 0.4, 0.3]])
    m3 = evaluate(y3, p3, LABELS)
    assert m3["per_class"]["c"]["auc"] is None
    assert m3["auc_macro"] == pytest.approx(1.0)
    assert not any(isinstance(v, float) and math.isnan(v) for v in m3.values())


def test_shape_errors():
    with pytest.raises(ValueError, match="shape"):
        evaluate(Y, P[:, :2], LABELS)
    with pytest.raises(ValueError, match="empty"):
        evaluate([], np.zeros((0, 3)), LABELS)


# ----------------------------------------------------------------------------- bootstrap intervals

def _cases(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """n cases of 3 classes, probabilities leaning to the true class, scores rounded so ties occur."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    p = rng.dirichlet([1, 1, 1], n)
    p[np.arange(n), y] += 0.4
    return y, np.round(p / p.sum(axis=1, keepdims=True), 1)


def test_bootstrap_metrics_of_a_resample_equal_evaluate_on_it():
    y, p = _cases(40, seed=0)
    weights = np.random.default_rng(1).integers(0, 3, size=(5, 40)).astype(np.float64)  # zeros: dropped cases
    accuracy, f1, auc = _bootstrap_metrics(weights, y, p)
    for row, a, f, u in zip(weights, accuracy, f1, auc, strict=True):
        drawn = np.repeat(np.arange(40), row.astype(int))
        m = evaluate(y[drawn], p[drawn], LABELS)
        assert (a, f, u) == pytest.approx((m["accuracy"], m["f1_macro"], m["auc_macro"]))


def test_bootstrap_intervals_shape_and_determinism():
    y, p = _cases(300, seed=2)
    r = bootstrap_intervals(y, p, n_boot=500, seed=3)
    m = evaluate(y, p, LABELS)
    for name in ("accuracy", "f1_macro", "auc_macro"):
        assert r[name]["estimate"] == pytest.approx(m[name])
        assert r[name]["low"] < r[name]["estimate"] < r[name]["high"]
    assert (r["level"], r["n_boot"], r["resampled"], r["units"], r["auc_resamples"]) == (0.95, 500, "cases", 300, 500)
    assert r == bootstrap_intervals(y, p, n_boot=500, seed=3)
    assert r != bootstrap_intervals(y, p, n_boot=500, seed=4)
    narrow = bootstrap_intervals(y, p, n_boot=500, seed=3, level=0.5)["accuracy"]
    assert r["accuracy"]["low"] < narrow["low"] < narrow["high"] < r["accuracy"]["high"]


def test_bootstrap_accuracy_interval_matches_the_binomial_width():
    y = np.zeros(400, dtype=np.int64)
    p = np.tile([0.9, 0.1], (400, 1))
    p[::5] = [0.1, 0.9]  # 80% correct
    r = bootstrap_intervals(y, p, n_boot=2000, seed=0)["accuracy"]
    expected = 2 * 1.96 * math.sqrt(0.8 * 0.2 / 400)  # normal approximation: 0.078
    assert r["high"] - r["low"] == pytest.approx(expected, rel=0.15)
    assert bootstrap_intervals(y, p, n_boot=50)["auc_macro"] is None  # one class only: no AUC at all


def test_cluster_bootstrap_resamples_whole_groups(monkeypatch):
    # 40 patients of 10 slices, each patient all right or all wrong: 40 independent units, not 400
    y = np.zeros(400, dtype=np.int64)
    groups = np.repeat([f"p{i}" for i in range(40)], 10)
    right = np.repeat(np.arange(40) % 2 == 0, 10)
    p = np.where(right[:, None], [0.9, 0.1], [0.1, 0.9])
    cases = bootstrap_intervals(y, p, n_boot=1000)["accuracy"]
    clustered = bootstrap_intervals(y, p, n_boot=1000, groups=groups)
    assert (clustered["resampled"], clustered["units"]) == ("groups", 40)
    assert clustered["accuracy"]["high"] - clustered["accuracy"]["low"] > 2.5 * (cases["high"] - cases["low"])
    # one group per case is the case bootstrap; chunked resampling draws the same numbers
    y3, p3 = _cases(60, seed=5)
    plain = bootstrap_intervals(y3, p3, n_boot=200, seed=1)
    monkeypatch.setattr(metrics, "_BOOT_CELLS", 100)
    singletons = bootstrap_intervals(y3, p3, n_boot=200, seed=1, groups=list(range(60)))
    assert {**singletons, "resampled": "cases"} == plain


def test_bootstrap_skips_resamples_without_a_positive_for_auc():
    y = np.array([0, 0, 0, 0, 0, 1, 1, 2])  # class 2 has one case: many resamples miss it
    p = np.eye(3)[y] * 0.5 + 0.5 / 3
    r = bootstrap_intervals(y, p, n_boot=400, seed=0)
    assert 0 < r["auc_resamples"] < 400
    # P(one given case is never drawn in 8 draws) = (7/8)^8 = 0.34
    assert r["auc_resamples"] / 400 == pytest.approx(1 - (7 / 8) ** 8, abs=0.08)
    assert r["auc_macro"]["low"] == r["auc_macro"]["high"] == 1.0


@pytest.mark.parametrize("kwargs,message", [
    ({"y_prob": np.zeros((3, 2))}, r"y_prob must have shape \(4, n_classes\)"),
    ({"y_true": [], "y_prob": np.zeros((0, 2))}, "at least one case"),
    ({"level": 95}, r"need 0 < level < 1 and n_boot >= 1, got level=95"),
    ({"n_boot": 0}, "n_boot=0"),
    ({"groups": ["a", "b"]}, "groups has 2 entries for 4 cases"),
])
def test_bootstrap_bad_inputs(kwargs, message):
    args = {"y_true": [0, 1, 0, 1], "y_prob": np.tile([0.6, 0.4], (4, 1)), **kwargs}
    with pytest.raises(ValueError, match=message):
        bootstrap_intervals(**args)


def test_paired_bootstrap_reads_the_difference_not_the_two_intervals():
    """B corrects 12 of A's 300 answers and breaks none: its own interval overlaps A's almost whole, yet every
    paired resample has B higher, and the interval of B - A lies above zero."""
    from train.metrics import paired_bootstrap

    y, a = _cases(300, seed=7)
    wrong = np.flatnonzero(a.argmax(1) != y)[:12]
    b = a.copy()
    b[wrong] = np.eye(3)[y[wrong]] * 0.8 + 0.2 / 3
    r = paired_bootstrap(y, a, b, n_boot=1000, seed=0)
    acc = r["accuracy"]
    assert acc["difference"] == pytest.approx(12 / 300)
    assert acc["a"] == pytest.approx(evaluate(y, a, LABELS)["accuracy"])
    assert 0 < acc["low"] <= acc["difference"] <= acc["high"] and acc["b_higher"] == 1.0
    own_a, own_b = (bootstrap_intervals(y, p, n_boot=1000, seed=0)["accuracy"] for p in (a, b))
    assert own_b["low"] < own_a["high"]  # side by side, the two intervals overlap
    assert acc["high"] - acc["low"] < 0.5 * (own_a["high"] - own_a["low"])
    assert r["auc_macro"]["b"] > r["auc_macro"]["a"] and r["auc_macro"]["b_higher"] > 0.95
    same = paired_bootstrap(y, a, a, n_boot=200)
    assert all(same[m]["difference"] == same[m]["low"] == same[m]["high"] == 0.0 for m in ("accuracy", "auc_macro"))
    assert same["accuracy"]["b_higher"] == 0.0
    swapped = paired_bootstrap(y, b, a, n_boot=1000, seed=0)["accuracy"]
    assert (swapped["low"], swapped["high"]) == pytest.approx((-acc["high"], -acc["low"]))


def test_paired_bootstrap_draws_whole_groups_for_both_models():
    from train.metrics import paired_bootstrap

    # 30 patients of 10 slices; B is right on 3 more patients than A: 3 units of evidence, not 30 slices
    y = np.zeros(300, dtype=np.int64)
    groups = np.repeat(np.arange(30), 10)
    right_a = np.repeat(np.arange(30) % 3 == 0, 10)
    right_b = right_a | np.repeat(np.isin(np.arange(30), [1, 2, 4]), 10)
    a, b = (np.where(r[:, None], [0.9, 0.1], [0.1, 0.9]) for r in (right_a, right_b))
    cases = paired_bootstrap(y, a, b, n_boot=1000)["accuracy"]
    clustered = paired_bootstrap(y, a, b, n_boot=1000, groups=groups)
    assert (clustered["resampled"], clustered["units"], clustered["cases"]) == ("groups", 30, 300)
    width = clustered["accuracy"]["high"] - clustered["accuracy"]["low"]
    assert width > 2.5 * (cases["high"] - cases["low"])
    assert clustered["auc_macro"] is None  # one class only: no AUC to compare
    with pytest.raises(ValueError, match=r"both models need probabilities of shape \(300, n_classes\)"):
        paired_bootstrap(y, a, b[:10])
    with pytest.raises(ValueError, match="groups has 2 entries for 300 cases"):
        paired_bootstrap(y, a, b, groups=["x", "y"])
