"""train.metrics against values computed by hand."""
from __future__ import annotations

import math

import numpy as np
import pytest

from train.metrics import evaluate, expected_calibration_error

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
