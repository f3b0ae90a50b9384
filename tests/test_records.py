"""`hub.records`: what later commands add to a model folder keeps metrics.json, the card and the figure in step.

The folder is three hand-written JSON files (the card renders from them alone), so each test is quick. A card
that cannot be rendered is planted by cutting config.json short.
"""
from __future__ import annotations

import json

import pytest
from PIL import Image
from test_card import card_files, faithfulness  # noqa: F401  (the fixture: config, metrics and train_config)
from test_localisation import hand_rows

from hub.explain.lesion import summarise
from hub.model import EXPLANATIONS
from hub.records import check_model_folder, record_faithfulness, record_localisation, update_metrics


@pytest.fixture
def folder(tmp_path, card_files):  # noqa: F811
    """A model folder's JSON files and the card rendered from them."""
    from hub.card import render_card_from_folder

    for name, data in zip(("config.json", "metrics.json", "train_config.json"), card_files):
        (tmp_path / name).write_text(json.dumps(data, indent=2) + "\n")
    (tmp_path / "README.md").write_text(str(render_card_from_folder(tmp_path)))
    return tmp_path


def snapshot(folder):
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def break_card(folder):
    """config.json cut short, as a hand edit or a full disk leaves it: the card cannot be rendered."""
    text = (folder / "config.json").read_text()
    (folder / "config.json").write_text(text[: len(text) // 2])


def test_a_change_lands_in_metrics_and_in_the_card(folder):
    report = summarise(hand_rows())
    assert "Does the model look at the lesion?" not in (folder / "README.md").read_text()
    record_localisation(folder, "mri-val", report)
    assert json.loads((folder / "metrics.json").read_text())["localisation"] == {"mri-val": report}
    assert "Does the model look at the lesion?" in (folder / "README.md").read_text()
    update_metrics(folder, lambda m: m["test"].update(accuracy=0.5))
    card = (folder / "README.md").read_text()
    assert "accuracy **0.5000**" in card and "accuracy **0.9180**" not in card   # re-rendered from the new figure


def test_a_card_that_fails_leaves_metrics_as_they_were(folder):
    break_card(folder)
    before = snapshot(folder)
    with pytest.raises(json.JSONDecodeError):
        update_metrics(folder, lambda m: m.update(calibration={"temperature": 0.2}))
    assert snapshot(folder) == before


@pytest.mark.parametrize("old_figure", [False, True])
def test_a_failed_faithfulness_record_puts_the_figure_back(folder, old_figure):
    if old_figure:
        (folder / EXPLANATIONS).parent.mkdir(exist_ok=True)
        Image.new("RGB", (4, 4), "red").save(folder / EXPLANATIONS)
    break_card(folder)
    before = snapshot(folder)
    with pytest.raises(json.JSONDecodeError):
        record_faithfulness(folder, {"gradcam": faithfulness(3, "val")}, Image.new("RGB", (8, 8), "blue"))
    assert snapshot(folder) == before   # no new figure beside old metrics; an old figure as it was


def test_faithfulness_and_its_figure_are_written_together(folder):
    summary = {"scorecam": faithfulness(3, "val")}
    record_faithfulness(folder, summary, Image.new("RGB", (8, 8), "blue"))
    assert json.loads((folder / "metrics.json").read_text())["faithfulness"] == summary
    assert "](plots/explanations.png)" in (folder / "README.md").read_text()
    assert Image.open(folder / EXPLANATIONS).size == (8, 8)


def test_a_folder_without_metrics_is_refused_by_name(tmp_path):
    with pytest.raises(ValueError, match=r"no metrics.json \(not a model folder written by `python -m train`\)"):
        check_model_folder(tmp_path)
    with pytest.raises(ValueError, match="no metrics.json"):
        record_localisation(tmp_path, "val", {})
    assert list(tmp_path.iterdir()) == []
