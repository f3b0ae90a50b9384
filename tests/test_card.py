"""The model card names the split of every figure, and describes the training data by the training split alone.

The card is `hub.card.render_card`, a pure function of config.json, metrics.json and train_config.json: these
tests build those by hand, with train / val / test counts that differ everywhere, so a figure from the wrong
split (or a sum over splits) cannot pass for the right one.
"""
from __future__ import annotations

import re

import pytest

from hub.card import data_summary, render_card
from train.config import build_config

LABELS = ["glioma", "meningioma", "pituitary"]
COUNTS = {"train": {"glioma": 913, "meningioma": 453, "pituitary": 595},
          "val": {"glioma": 114, "meningioma": 56, "pituitary": 74},
          "test": {"glioma": 114, "meningioma": 57, "pituitary": 75}}


def split_metrics(n: int, accuracy: float) -> dict:
    """metrics.json's figures of one split of `n` images."""
    per_class = {lab: {"precision": accuracy, "recall": accuracy, "f1": accuracy, "auc": 0.9, "support": n // 3}
                 for lab in LABELS}
    return {"n": n, "accuracy": accuracy, "f1_macro": accuracy - 0.01, "auc_macro": 0.9, "log_loss": 0.3,
            "ece": 0.05, "per_class": per_class}


def faithfulness(images: int, split: str | None) -> dict:
    """A faithfulness summary of one method, as `python -m hub explain --faithfulness` records it."""
    interval = {"mean": 0.2, "low": 0.1, "high": 0.3}
    summary = {"mode": "exact", "images": images, "deletion": interval, "insertion": interval,
               "beats": {"random": 0.8, "centre": 0.7}, "keep_remove": {"mean": 0.1}}
    return {**summary, "split": split} if split else summary


@pytest.fixture
def card_files() -> tuple[dict, dict, dict]:
    """config.json, metrics.json and train_config.json of a model trained on COUNTS."""
    config = {"architecture": "resnet50", "num_classes": 3, "label_names": LABELS,
              "pretrained_cfg": {"input_size": [3, 128, 128], "interpolation": "bicubic",
                                 "mean": [0.5, 0.5, 0.5], "std": [0.2, 0.2, 0.2]}}
    metrics = {"validation": split_metrics(244, 0.8440), "test": split_metrics(246, 0.9180),
               "leakage": {"max_distance": 4, "val": {"near_duplicates": 3, "n": 244, "share": 3 / 244},
                           "test": {"near_duplicates": 5, "n": 246, "share": 5 / 246}},
               "faithfulness": {"gradcam": faithfulness(30, "mri-test")}}
    train_config = {"config": build_config("mri", data="d").to_dict(),
                    "dataset": {"counts": COUNTS, "files_sha256": "0" * 64},
                    "run": {"epochs_run": 40, "best_epoch": 31}}
    return config, metrics, train_config


def line_with(text: str, words: str) -> str:
    """The one line of `text` that holds `words`."""
    [line] = [line for line in text.splitlines() if words in line]
    return line


def test_the_card_names_the_random_intensity_augmentation(card_files):
    config, metrics, train_config = card_files
    assert "random gain and gamma" not in render_card(config, metrics, train_config).text
    train_config = {**train_config, "config": {**train_config["config"], "intensity": 0.25}}
    assert "random gain and gamma exp(U(±0.25))" in render_card(config, metrics, train_config).text


def test_the_card_says_the_model_was_trained_with_expert_regions_and_how(card_files):
    config, metrics, train_config = card_files
    assert "--annotations" not in render_card(config, metrics, train_config).text
    guided = {**train_config["config"], "annotations": "boxes", "guide_weight": 2.0, "output_stride": 16,
              "counterfactual": 0.25, "context_swap": 0.5}
    run = {**train_config["run"], "annotated_training_images": 900}
    text = render_card(config, metrics, {**train_config, "config": guided, "run": run}).text
    line = line_with(text, "--annotations")
    assert "900 of 1961 training images annotated" in line    # COUNTS' training split: 913 + 453 + 595
    assert "plus 2 x a grounding loss" in line and "output stride 16" in line
    assert "25% of the annotated images shown with the region hidden" in line
    assert "50% of them shown with the region pasted into another annotated training image" in line
    assert "pools" not in line
    pooled = {**guided, "global_pool": "max"}
    line = line_with(render_card(config, metrics, {**train_config, "config": pooled}).text, "--annotations")
    assert "the head pools the last stage by `max` (`--global-pool`)" in line
    plain = {**guided, "counterfactual": 0.0, "context_swap": 0.0}
    line = line_with(render_card(config, metrics, {**train_config, "config": plain}).text, "--annotations")
    assert "annotated training images)" in line and "hidden" not in line and "pasted" not in line


def test_the_data_summary_counts_the_training_split_only(card_files):
    text = render_card(*card_files).text
    summary = line_with(text, "images like its training data")
    assert "the training split's 913 `glioma`, 453 `meningioma`, 595 `pituitary` images" in summary
    # Neither the sum over every split (1141 glioma) nor another split's count describes the training data.
    assert not re.search(r"\b(1141|566|744|114|56|74|57|75)\b", summary)
    assert data_summary(COUNTS, LABELS) == "the training split's 913 `glioma`, 453 `meningioma`, 595 `pituitary` images"


def test_every_figure_names_its_split(card_files):
    card = render_card(*card_files, repo_id="org/mri", revision="v2",
                       previous=[{"revision": "v1", "split": "validation", "accuracy": 0.7, "f1_macro": 0.69,
                                  "auc_macro": 0.8, "commit": "a" * 40}])
    text = card.text
    # The training data table: one row per split, each with its own counts.
    for split, counts in COUNTS.items():
        assert f"| {split} | {counts['glioma']} | {counts['meningioma']} | {counts['pituitary']} | " \
               f"{sum(counts.values())} |" in text
    # The results: a section per split, its class table headed by the split, its figures from that split.
    validation, test = text.split("### validation (244 images)")[1], text.split("### test (246 images)")[1]
    assert "accuracy **0.8440**" in validation.split("###")[0] and "| validation: class |" in validation
    assert "accuracy **0.9180**" in test.split("###")[0] and "| test: class |" in test
    assert "Metrics below come from held-out test data" in text
    # The leakage check names the split of each near-copy count.
    assert "val 3 of 244" in text and "test 5 of 246" in text
    # Faithfulness: the images' split in the table; earlier revisions: each row's split.
    assert line_with(text, "| Grad-CAM |").endswith("| 30 (mri-test) |")
    assert line_with(text, "| `v1` |").startswith("| `v1` | validation | 0.7000 |")
    # The Hub's index: every eval result names its dataset split.
    assert {r.dataset_split for r in card.data.eval_results} == {"test"}


def test_figures_of_an_older_record_say_their_split_is_not_recorded(card_files):
    config, metrics, train_config = card_files
    metrics["faithfulness"] = {"gradcam": faithfulness(30, None)}  # written before the split was recorded
    text = render_card(config, metrics, train_config, repo_id="org/mri", revision="v2",
                       previous=[{"revision": "v1", "accuracy": 0.7, "f1_macro": 0.69, "auc_macro": 0.8}]).text
    assert line_with(text, "| Grad-CAM |").endswith("| 30 (split not recorded) |")
    assert line_with(text, "| `v1` |").startswith("| `v1` | test or validation |")
