"""python -m bench.area: does a model's confidence follow the size of the annotated region?"""
from __future__ import annotations

import json

import numpy as np
import pytest
from app_fixtures import random_model_folder

from bench.area import area_figures, main
from train.synthetic import make_dataset

LABELS = ["a", "b"]


def test_confidence_that_grows_with_the_area_is_found_and_confidence_that_does_not_is_not():
    rng = np.random.default_rng(0)
    areas = rng.uniform(0.01, 0.1, 60)
    truth = np.arange(60) % 2
    # the diluted model: its true class's probability rises with the area, from a coin flip to certainty
    p_true = 0.5 + 0.5 * (areas - areas.min()) / np.ptp(areas)
    probs = np.stack([np.where(truth == 0, p_true, 1 - p_true), np.where(truth == 1, p_true, 1 - p_true)], axis=1)
    diluted = area_figures(truth, probs, areas, LABELS)
    assert diluted["spearman_area_p_true"] == pytest.approx(1.0)
    assert all(diluted["per_class"][lab]["spearman_area_p_true"] == pytest.approx(1.0) for lab in LABELS)
    parts = diluted["parts"]
    assert [p["images"] for p in parts] == [20, 20, 20]
    assert parts[0]["mean_p_true"] < parts[1]["mean_p_true"] < parts[2]["mean_p_true"]
    assert parts[0]["area"][1] <= parts[1]["area"][0] and parts[1]["area"][1] <= parts[2]["area"][0]
    # a model as confident on small regions as on large ones: no rank order to find
    steady = rng.uniform(0.7, 0.9, 60)
    probs = np.stack([np.where(truth == 0, steady, 1 - steady), np.where(truth == 1, steady, 1 - steady)], axis=1)
    assert abs(area_figures(truth, probs, areas, LABELS)["spearman_area_p_true"]) < 0.3


def test_the_thirds_count_answers_and_margins():
    truth = [0, 1, 0, 1, 0, 1]
    probs = np.array([[0.6, 0.4], [0.6, 0.4], [0.9, 0.1], [0.2, 0.8], [1.0, 0.0], [0.0, 1.0]])
    f = area_figures(truth, probs, [0.01, 0.02, 0.03, 0.04, 0.05, 0.06], LABELS, edges=[0.025, 0.045])
    assert [p["accuracy"] for p in f["parts"]] == [0.5, 1.0, 1.0]
    assert [round(p["mean_margin"], 6) for p in f["parts"]] == [0.2, 0.7, 1.0]
    assert f["accuracy"] == pytest.approx(5 / 6)
    with pytest.raises(ValueError, match="as many truths"):
        area_figures(truth, probs[:5], [0.1] * 6, LABELS)


def test_the_command_scores_each_model_on_the_annotated_images(tmp_path, capsys):
    from hub import from_pretrained

    data = make_dataset(tmp_path / "data", classes=3, per_class=6, size=32, seed=2)
    a, b = (random_model_folder(tmp_path / n, size=32, seed=s, arch="resnet18") for n, s in (("a", 0), ("b", 1)))
    (data / "ring" / "ring_0000.txt").unlink()          # an image without a region is skipped, and counted
    with pytest.raises(SystemExit) as stop:
        main([str(a), str(b), "--data", str(data), "--annotations", str(data), "--no-tta", "--json",
              str(tmp_path / "area.json")])
    out = capsys.readouterr().out
    assert stop.value.code == 0 and "17 annotated images" in out and "1 without a region" in out
    r = json.loads((tmp_path / "area.json").read_text())
    clf = from_pretrained(b, device="cpu")
    paths = sorted(p for p in data.rglob("*.png") if p.name != "ring_0000.png")
    truth = np.array([clf.labels.index(p.parent.name) for p in paths])
    assert r["models"][str(b)]["accuracy"] == pytest.approx(float((clf.probabilities(paths).argmax(1).numpy()
                                                                   == truth).mean()))
    assert sum(p["images"] for p in r["models"][str(a)]["parts"]) == 17


def test_annotations_that_match_nothing_end_in_one_line(tmp_path, capsys):
    data = make_dataset(tmp_path / "data", classes=3, per_class=2, size=32, seed=3)
    a = random_model_folder(tmp_path / "a", size=32, arch="resnet18")
    (tmp_path / "boxes").mkdir()
    (tmp_path / "boxes" / "elsewhere.txt").write_text("0 0.5 0.5 0.2 0.2\n")
    with pytest.raises(SystemExit) as stop:
        main([str(a), "--data", str(data), "--annotations", str(tmp_path / "boxes")])
    err = capsys.readouterr().err
    assert stop.value.code != 0 and "Traceback" not in err and "boxes" in err
