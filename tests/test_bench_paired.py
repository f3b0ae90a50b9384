"""python -m bench.paired: two models on the same held-out images, the interval of their difference."""
from __future__ import annotations

import json

import numpy as np
import pytest
from app_fixtures import random_model_folder

from bench.paired import main
from train.synthetic import make_dataset


@pytest.fixture(scope="module")
def setting(tmp_path_factory):
    root = tmp_path_factory.mktemp("paired")
    data = make_dataset(root / "data", classes=3, per_class=8, size=32, seed=4)
    a, b = (random_model_folder(root / name, size=32, seed=seed, arch="resnet18") for name, seed in (("a", 0),
                                                                                                     ("b", 1)))
    return data, a, b, root


def _run(capsys, *argv) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as stop:
        main([str(v) for v in argv])
    out, err = capsys.readouterr()
    return stop.value.code, out, err


def test_a_model_against_itself_differs_by_nothing_and_against_another_by_what_each_scores(setting, capsys):
    from hub import from_pretrained

    data, a, b, root = setting
    code, out, _ = _run(capsys, a, a, "--data", data, "--n-boot", 200, "--json", root / "same.json")
    assert code == 0 and "24 images" in out and "flip TTA" in out
    same = json.loads((root / "same.json").read_text())
    assert same["accuracy"]["difference"] == same["accuracy"]["low"] == same["accuracy"]["high"] == 0.0
    code, out, _ = _run(capsys, a, b, "--data", data, "--no-tta", "--n-boot", 200, "--group-pattern", r"^([^/]+)/",
                        "--json", root / "ab.json")
    r = json.loads((root / "ab.json").read_text())
    assert code == 0 and "one view" in out and (r["resampled"], r["units"], r["cases"]) == ("groups", 3, 24)
    # each model's accuracy is what the model itself answers on those images, through the public API
    for key, folder in (("a", a), ("b", b)):
        clf = from_pretrained(folder, device="cpu")
        paths = sorted(data.rglob("*.png"))
        truth = np.array([clf.labels.index(p.parent.name) for p in paths])
        expected = float((clf.probabilities(paths).argmax(1).numpy() == truth).mean())
        assert r["accuracy"][key] == pytest.approx(expected)
    assert r["accuracy"]["difference"] == pytest.approx(r["accuracy"]["b"] - r["accuracy"]["a"])
    assert f"{r['accuracy']['difference']:+.4f}" in out
    csv = root / "groups.csv"  # the same grouping from a file: the same draws, the same figures
    csv.write_text("path,group\n" + "".join(f"{p.relative_to(data).as_posix()},{p.parent.name}\n"
                                               for p in sorted(data.rglob("*.png"))))
    code, _, _ = _run(capsys, a, b, "--data", data, "--no-tta", "--n-boot", 200, "--groups", csv,
                      "--json", root / "csv.json")
    assert code == 0 and json.loads((root / "csv.json").read_text()) == r


def test_refusals_are_one_line(setting, tmp_path, capsys):
    data, a, _, _ = setting
    other = random_model_folder(tmp_path / "other", size=32, labels=["x", "y", "z"], arch="resnet18")
    for argv, message in (((a, other, "--data", data), "the models answer different classes"),
                          ((a, a, "--data", tmp_path / "nowhere"), "no such folder"),
                          ((a, a, "--data", data, "--group-pattern", "(unclosed"), "not a valid regular expression"),
                          ((a, a, "--data", data, "--groups", tmp_path / "none.csv"), "no such file"),
                          ((a, tmp_path / "no-model", "--data", data), "no-model")):
        code, out, err = _run(capsys, *argv)
        assert code == 2 and err.startswith("error: ") and message in err and len(err.strip().splitlines()) == 1, err
        assert out == ""
