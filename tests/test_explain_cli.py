"""`python -m hub explain`: overlays and CSV for a batch, faithfulness into metrics.json and the card."""
from __future__ import annotations

import csv
import json
import shutil

import pytest
from PIL import Image

from hub.__main__ import main
from hub.explain.batch import CSV_NAME, LOCALISATION_CSV, LOCALISATION_NAME, SUMMARY_NAME, collect_images
from hub.explain.cam import SCORECAM_FILL
from train.synthetic import load_evidence

LABELS = ["ring", "cross", "checker"]


@pytest.fixture()
def model_copy(trained_synthetic, tmp_path):
    """A private copy of the shared trained model folder (the command writes into it)."""
    return shutil.copytree(trained_synthetic.model_dir, tmp_path / "model",
                           ignore=shutil.ignore_patterns("checkpoints"))


@pytest.fixture()
def images(trained_synthetic, tmp_path):
    """Two held-out images per class in label-named folders, plus one corrupt file."""
    root = tmp_path / "images"
    for label in LABELS:
        (root / label).mkdir(parents=True)
        for src in sorted((trained_synthetic.data_dir / "test" / label).glob("*.png"))[:2]:
            shutil.copy(src, root / label / src.name)
    (root / "ring" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    return root


@pytest.fixture()
def boxes(trained_synthetic, images, tmp_path):
    """YOLO box files of `images` (their evidence boxes), except for the second cross image."""
    evidence = load_evidence(trained_synthetic.data_dir / "test")
    root = tmp_path / "boxes"
    for label in LABELS:
        for i, png in enumerate(sorted((images / label).glob(f"{label}_*.png"))):
            if label == "cross" and i == 1:
                continue
            x0, y0, x1, y1 = (v / 128 for v in evidence[f"{label}/{png.name}"])
            (root / label).mkdir(parents=True, exist_ok=True)
            (root / label / png.with_suffix(".txt").name).write_text(
                f"0 {(x0 + x1) / 2} {(y0 + y1) / 2} {x1 - x0} {y1 - y0}\n")
    return root


def read_rows(out):
    with open(out / CSV_NAME, newline="") as fh:
        return list(csv.DictReader(fh))


def test_batch_with_faithfulness_updates_metrics_and_card(model_copy, images, tmp_path, capsys):
    before = json.loads((model_copy / "metrics.json").read_text())
    out = tmp_path / "out"
    assert main(["explain", str(model_copy), str(images), "--out", str(out), "--faithfulness",
                 "--max-channels", "8", "--sanity-images", "2", "--steps", "5"]) == 0
    printed = capsys.readouterr()
    assert "explained 6 of 7 images" in printed.out and "broken.png" in printed.err
    assert "gradcam   sanity check passed over 2 images" in printed.out

    rows = read_rows(out)
    assert len(rows) == 14 and {r["method"] for r in rows} == {"gradcam", "scorecam"}
    broken = [r for r in rows if r["image"].endswith("broken.png")]
    assert len(broken) == 2 and all("broken.png" in r["error"] and not r["overlay"] for r in broken)
    good = [r for r in rows if not r["error"]]
    for r in good:
        assert r["target"] == r["true_label"]                  # --faithfulness explains the true class
        assert {r["predicted"], r["target"]} <= set(LABELS) and -1 <= float(r["keep_remove"]) <= 1
        assert 0 <= float(r["deletion"]) <= 1 and 0 <= float(r["insertion"]) <= 1 and r["beats_random"] in "01"
        overlay = Image.open(out / r["overlay"])
        assert overlay.size == Image.open(r["image"]).size
    assert {r["mode"] for r in good if r["method"] == "scorecam"} == {"fast"}
    assert {int(r["masked_passes"]) for r in good if r["method"] == "scorecam"} <= set(range(1, 9))
    # The model classifies these well, so each true-class map points at the evidence.
    assert sum(r["predicted"] == r["true_label"] for r in good) >= 10
    assert all(float(r["insertion"]) > float(r["deletion"]) for r in good if r["method"] == "gradcam")

    summary = json.loads((out / SUMMARY_NAME).read_text())
    metrics = json.loads((model_copy / "metrics.json").read_text())
    assert metrics["faithfulness"] == summary and set(summary) == {"gradcam", "scorecam"}
    for s in summary.values():
        assert s["images"] == 6 and s["steps"] == 5 and s["keep_remove"]["mean"] > 0.0, summary
        assert s["insertion"]["low"] > s["deletion"]["high"] and s["beats"]["both"] >= 0.5, summary
        assert s["sanity"]["images"] == 2 and len(s["sanity"]["steps"]) == 3
        assert s["split"] == images.name  # the figures name their split: the IMAGES folder (or --split-name)
    assert summary["gradcam"]["sanity"]["passed"]
    assert json.loads((out / "sanity.json").read_text())["gradcam"]["passed"]
    assert {k: v for k, v in metrics.items() if k != "faithfulness"} == before   # nothing else changed
    card = (model_copy / "README.md").read_text()
    assert "Explanation faithfulness" in card and "| Grad-CAM |" in card and "| Score-CAM | fast (k=" in card
    assert f"| 6 ({images.name}) |" in card
    d = summary["gradcam"]["deletion"]
    assert f"{d['mean']:.3f} [{d['low']:.3f}, {d['high']:.3f}]" in card and "+ layer4" in card
    assert "](plots/explanations.png)" in card
    figure = Image.open(model_copy / "plots" / "explanations.png")
    assert figure.width == 3 * 160 and figure.height > 3 * 160           # image + 2 methods, one row per class


def test_annotations_score_the_maps_into_a_csv_a_report_metrics_and_the_card(model_copy, images, boxes, tmp_path,
                                                                              capsys, trained_synthetic):
    before = json.loads((model_copy / "metrics.json").read_text())
    out = tmp_path / "out"
    train = trained_synthetic.data_dir / "train"   # a YOLO file beside each training image
    for bad, why in ((["--reference-data", str(train)], "--reference-data and --reference-annotations go together"),
                     (["--reference-data", str(train), "--reference-annotations", str(train)],
                      "--reference-data gives the shortcut check's place floor: add --annotations DIR")):
        assert main(["explain", str(model_copy), str(images), "--out", str(out), *bad]) == 2
        assert why in capsys.readouterr().err and not out.exists()
    fill = next(f for f in ("blur", "linear") if f != SCORECAM_FILL)   # not the default: the option must travel
    assert main(["explain", str(model_copy), str(images), "--out", str(out), "--annotations", str(boxes),
                 "--max-channels", "4", "--steps", "2", "--split-name", "held-out", "--scorecam-fill", fill,
                 "--reference-data", str(train), "--reference-annotations", str(train)]) == 0
    printed = capsys.readouterr().out
    assert f"(Score-CAM fast, k=4, {fill} fill)" in printed
    assert "held-out: 5 annotated image(s) (2 without an annotation, skipped)" in printed   # broken.png, 1 cross
    assert len(read_rows(out)) == 14                              # the usual CSV and overlays, as without
    with open(out / LOCALISATION_CSV, newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 5 and {r["true_label"] for r in rows} == set(LABELS) and not any(r["error"] for r in rows)
    report = json.loads((out / LOCALISATION_NAME).read_text())
    assert (report["images"], report["skipped"], report["tolerance"]) == (5, 2, 15.0)
    for method in ("gradcam", "scorecam"):
        hits = [int(r[f"{method}_hit"]) for r in rows]
        assert report["methods"][method]["pointing_game"]["mean"] == pytest.approx(sum(hits) / 5)
        assert sum(hits) >= 4, rows   # the model reads the evidence box: its true-class maps land there
    assert report["methods"]["scorecam"]["masked_passes"] == 4 and report["methods"]["scorecam"]["fill"] == fill
    assert all(float(r["flat_ratio"]) == pytest.approx(1.0) for r in rows)
    metrics = json.loads((model_copy / "metrics.json").read_text())
    assert metrics["localisation"] == {"held-out": report}
    assert {k: v for k, v in metrics.items() if k != "localisation"} == before   # nothing else changed
    card = (model_copy / "README.md").read_text()
    g = report["methods"]["gradcam"]["pointing_game"]
    assert "### Does the model look at the lesion?" in card and "#### held-out split" in card
    assert f"| Grad-CAM | {g['mean']:.3f} [{g['low']:.3f}, {g['high']:.3f}] |" in card
    assert f"| Score-CAM (fast, k=4), {fill} fill |" in card and "| random (baseline) |" in card
    assert "| held-out: input | accuracy |" in card and "| lesion hidden |" in card
    # the place floor: the evidence sits anywhere in these images, so its place alone says little of the class
    place = report["shortcut"]["place_only"]
    assert (place["k"], place["reference_images"]) == (15, 180) and place["accuracy"]["mean"] <= 0.8
    assert "place and size alone (15 nearest of 180 training regions)" in printed
    assert "| the lesion's place and size alone (15 nearest of 180 training regions; no image) |" in card


def test_predicted_class_batch_and_target(model_copy, images, tmp_path):
    out = tmp_path / "out"
    single = next((images / "cross").glob("*.png"))
    assert main(["explain", str(model_copy), str(single), str(images / "cross"), "--out", str(out),
                 "--method", "gradcam", "--target", "checker"]) == 0
    rows = read_rows(out)
    assert len(rows) == 2                                        # the same file given twice runs once
    assert {r["target"] for r in rows} == {"checker"} and {r["method"] for r in rows} == {"gradcam"}
    assert not (out / SUMMARY_NAME).exists()
    assert main(["explain", str(model_copy), str(single), "--out", str(out), "--method", "gradcam",
                 "--target", "cross vs ring", "--sanity", "--steps", "3"]) == 0
    (row,) = read_rows(out)
    assert (row["target"], row["rival"]) == ("cross", "ring") and json.loads((out / "sanity.json").read_text())
    assert not (out / SUMMARY_NAME).exists()
    assert "faithfulness" not in json.loads((model_copy / "metrics.json").read_text())


@pytest.mark.parametrize("args, message", [
    (["{images}/nowhere"], "no such file or folder"),
    (["{images}", "--max-channels", "0"], "--max-channels must be at least 1"),
    (["{images}", "--max-channels", "many"], "--max-channels must be 'auto', 'exact' or a whole number >= 1"),
    (["{images}", "--target", "tumour"], "unknown target label 'tumour'"),
    (["{images}", "--target", "ring vs ring"], "needs two different classes, got 'ring' twice"),
    (["{images}", "--target", "ring vs tumour"], "unknown target label 'tumour'"),
    (["{images}", "--steps", "1"], "--steps must be a whole number of at least 2"),
    (["{images}", "--sanity-images", "0"], "--sanity-images must be at least 1"),
    (["{images}", "--faithfulness", "--target", "ring"], "leave out --target"),
    (["{images}", "--opacity", "2"], "--opacity must be between 0 and 1"),
    (["{loose}", "--faithfulness"], "not in a folder named after one of the model's labels"),
    (["{empty}"], "no image files in this folder"),
])
def test_bad_arguments_give_one_line(model_copy, images, tmp_path, capsys, args, message):
    loose = tmp_path / "loose"
    loose.mkdir()
    shutil.copy(next((images / "ring").glob("*.png")), loose / "scan.png")
    (tmp_path / "empty").mkdir()
    fill = {"images": images, "loose": loose / "scan.png", "empty": tmp_path / "empty"}
    argv = ["explain", str(model_copy), *[a.format(**fill) for a in args], "--out", str(tmp_path / "out")]
    before = {p: p.read_bytes() for p in model_copy.rglob("*") if p.is_file()}
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()                       # nothing partial written
    assert {p: p.read_bytes() for p in model_copy.rglob("*") if p.is_file()} == before


def test_unknown_model_is_a_plain_error(images, tmp_path, capsys):
    assert main(["explain", str(tmp_path / "no-model"), str(images), "--out", str(tmp_path / "out")]) == 2
    assert "no such folder" in capsys.readouterr().err


def test_collect_images_skips_hidden_and_marks_truth(images):
    (images / ".cache").mkdir()
    Image.new("RGB", (8, 8)).save(images / ".cache" / "x.png")
    items = collect_images([images], LABELS)
    assert len(items) == 7 and not any(".cache" in str(i.path) for i in items)
    assert {LABELS[i.truth] for i in items} == set(LABELS)


def test_write_atomic_replaces_whole_and_leaves_no_temp(tmp_path):
    from hub.files import write_atomic

    target = tmp_path / "metrics.json"
    write_atomic(target, "old")
    write_atomic(target, b"new")
    assert target.read_text() == "new" and [p.name for p in tmp_path.iterdir()] == ["metrics.json"]
    with pytest.raises(TypeError):
        write_atomic(target, 3)  # neither text nor bytes: the old file stays, no temp is left
    assert target.read_text() == "new" and [p.name for p in tmp_path.iterdir()] == ["metrics.json"]


def test_card_rows_read_old_keep_remove_only_summaries():
    from hub.card import faithfulness_rows

    (old,) = faithfulness_rows({"gradcam": {"mean": 0.23, "std": 0.1, "images": 6, "mode": "gradient",
                                            "masked_passes": 0, "seconds": 0.1}})
    assert (old["name"], old["keep_remove"], old["deletion"], old["sanity"]) == ("Grad-CAM", "+0.230", "n/a", "not run")
    assert faithfulness_rows(None) == []


def test_batch_rows_hold_numbers_and_only_the_csv_formats_them():
    """A batch row holds numbers; `csv_row` writes them as explanations.csv always had them (6 decimals, seconds 4,
    beats 0/1, '' for what a row lacks); `summarise` averages the numbers, never text read back."""
    from pathlib import Path

    from hub.explain.batch import COLUMNS, Row, Scores, csv_row, summarise

    def scores(deletion: float, insertion: float) -> Scores:
        return Scores(deletion, insertion, 0.25, {"random": {"deletion": 0.5, "insertion": 0.5},
                                                  "centre": {"deletion": 0.4, "insertion": 0.6}},
                      {"random": True, "centre": insertion - deletion > 0.2})

    rows = [Row(Path("d/ring/x.png"), "gradcam", "ring", "ring", 0.9, "gradient", 0, "ring", "", 0.9,
                scores(0.1, 0.8), {"rank_correlation": 0.5, "top_overlap": 0.25}, 0.5, "overlays/00000_x.gradcam.png"),
            Row(Path("d/ring/y.png"), "gradcam", "ring", "cross", 0.6, "gradient", 0, "ring", "", 0.3,
                scores(0.3, 0.4), None, 0.25, "overlays/00001_y.gradcam.png"),
            Row(Path("d/ring/z.png"), "gradcam", "ring", error="d/ring/z.png: not an image file")]
    text = csv_row(rows[0])
    assert list(text) == list(COLUMNS)
    assert [text[k] for k in ("predicted_probability", "deletion", "centre_insertion", "beats_centre", "seconds",
                              "masked_passes", "agreement_top_overlap", "rival")] == \
        ["0.900000", "0.100000", "0.600000", "1", "0.5000", "0", "0.250000", ""]
    assert csv_row(rows[1])["beats_centre"] == "0" and csv_row(rows[1])["agreement_rank_correlation"] == ""
    assert {k for k, v in csv_row(rows[2]).items() if v} == {"image", "true_label", "method", "error"}
    s = summarise(rows, steps=5)["gradcam"]
    assert (s["images"], s["steps"], s["seconds"], s["masked_passes"]) == (2, 5, 0.375, 0)
    assert s["deletion"]["mean"] == pytest.approx(0.2) and s["keep_remove"] == {"mean": 0.25, "std": 0.0}
    assert s["beats"] == {"random": 1.0, "centre": 0.5, "both": 0.5}
    assert s["agreement"] == {"rank_correlation": 0.5, "top_overlap": 0.25}
    assert summarise(rows[2:]) == {}   # nothing explained: no figures
