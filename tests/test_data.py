"""train.data: scanning, validation and splitting of class-per-folder datasets."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
from PIL import Image

from hub.errors import DataError
from train.data import build_splits, scan_folder
from train.splits import random_split
from train.synthetic import load_evidence, make_dataset


def _img(path, color=(120, 30, 30), size=(16, 16)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, color).save(path)
    return path


@pytest.fixture
def tiny(tmp_path):
    """Two classes of four PNGs each."""
    for c in ("benign", "malignant"):
        for i in range(4):
            _img(tmp_path / "data" / c / f"{i}.png")
    return tmp_path / "data"


def test_scan_ignores_hidden_and_non_image_files(tiny):
    (tiny / "benign" / ".DS_Store").write_bytes(b"junk")
    (tiny / "benign" / "notes.txt").write_text("not an image")
    _img(tiny / "benign" / ".hidden.png")
    (tiny / ".git").mkdir()
    _img(tiny / ".git" / "x.png")
    (tiny / "README.md").write_text("root files are not classes")
    found = scan_folder(tiny)
    assert list(found) == ["benign", "malignant"]
    assert [p.name for p in found["benign"]] == ["0.png", "1.png", "2.png", "3.png"]


@pytest.mark.parametrize("setup,message", [
    (lambda root: None, "no such directory"),
    (lambda root: root.write_text("x"), "is a file"),
    (lambda root: root.mkdir(), "no class folders"),
    (lambda root: _img(root / "only" / "a.png"), "only one class folder"),
    (lambda root: (_img(root / "a" / "1.png"), (root / "b").mkdir()), "class folder 'b' has no images"),
    (lambda root: (_img(root / "a" / "1.png"), (root / "b").mkdir(), (root / "b" / "x.txt").write_text("t")),
     "class folder 'b' has no images"),
])
def test_scan_errors(tmp_path, setup, message):
    root = tmp_path / "ds"
    setup(root)
    with pytest.raises(DataError, match=message):
        scan_folder(root)


def test_corrupt_images_skipped_with_one_warning(tiny):
    (tiny / "benign" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    (tiny / "malignant" / "text.jpg").write_text("I am text")
    with pytest.warns(UserWarning, match=r"skipping 2 unreadable image\(s\)") as record:
        splits = build_splits(tiny, val_split=0.25)
    assert len([w for w in record if "unreadable" in str(w.message)]) == 1
    assert len(splits.skipped) == 2
    every = [p.name for p in splits.train.paths + splits.val.paths]
    assert "broken.png" not in every and "text.jpg" not in every and len(every) == 8


def test_class_with_only_corrupt_images_is_an_error(tiny):
    bad = tiny / "unknown"
    bad.mkdir()
    (bad / "a.png").write_bytes(b"")
    (bad / "b.png").write_text("nope")
    with pytest.raises(DataError, match="'unknown' contain no readable image"):
        build_splits(tiny)


def test_class_names_must_match_between_splits(tiny, tmp_path):
    _img(tmp_path / "val" / "benign" / "a.png")
    _img(tmp_path / "val" / "cancer" / "a.png")
    with pytest.raises(DataError, match=r"--val-data differ.*missing \['malignant'\].*extra \['cancer'\]"):
        build_splits(tiny, val_data=tmp_path / "val")
    with pytest.raises(DataError, match="--test-data"):
        build_splits(tiny, test_data=tmp_path / "val")


def test_random_split_is_seeded_and_per_class(tmp_path):
    root = make_dataset(tmp_path / "syn", classes=3, per_class=20, size=24, seed=1)
    found = scan_folder(root)
    classes = list(found)
    t1, v1 = random_split(found, classes, 0.25, seed=7)
    t2, v2 = random_split(found, classes, 0.25, seed=7)
    t3, v3 = random_split(found, classes, 0.25, seed=8)
    assert v1 == v2 and t1 == t2 and v1 != v3
    assert [len(v1[c]) for c in classes] == [5, 5, 5] and [len(t1[c]) for c in classes] == [15, 15, 15]
    assert not {p for ps in t1.values() for p in ps} & {p for ps in v1.values() for p in ps}


def test_build_splits_ordered_and_group_record_how(tmp_path):
    root = make_dataset(tmp_path / "syn", classes=2, per_class=10, size=24, seed=1)
    ordered = build_splits(root, val_split=0.2, split="ordered")
    assert {p.stem[-2:] for p in ordered.val.paths} == {"08", "09"}  # the last 20% in natural order
    assert ordered.info == {"method": "ordered", "images": {"train": {"ring": 8, "cross": 8},
                                                            "val": {"ring": 2, "cross": 2}}}
    # group: patient = file number // 5, so each class has two patients; one of each class goes to val
    rows = [f"{c}/{c}_{i:04d}.png,{c}-{i // 5}" for c in ("ring", "cross") for i in range(10)]
    (tmp_path / "groups.csv").write_text("path,group\n" + "\n".join(rows) + "\n")
    grouped = build_splits(root, val_split=0.5, split="group", group_csv=tmp_path / "groups.csv")
    assert grouped.info["method"] == "group" and grouped.info["groups"] == {"train": 2, "val": 2}
    train_groups = {grouped.groups[p] for p in grouped.train.paths}
    assert not train_groups & {grouped.groups[p] for p in grouped.val.paths}
    with pytest.raises(DataError, match="--split group needs a group for every image"):
        build_splits(root, split="group")  # PNGs carry no PatientID: a pattern or a CSV is needed


def test_explicit_val_and_test_and_fingerprint(tiny, tmp_path):
    for split in ("val", "test"):
        for c in ("benign", "malignant"):
            _img(tmp_path / split / c / "x.png")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        splits = build_splits(tiny, val_data=tmp_path / "val", test_data=tmp_path / "test")
    assert (len(splits.train), len(splits.val), len(splits.test)) == (8, 2, 2)
    fp = splits.fingerprint()
    assert fp["classes"] == ["benign", "malignant"]
    assert fp["counts"]["test"] == {"benign": 1, "malignant": 1}
    _img(tiny / "benign" / "extra.png")
    assert build_splits(tiny, val_data=tmp_path / "val").fingerprint()["files_sha256"] != fp["files_sha256"]


def test_synthetic_evidence_boxes_hold_the_pattern(tmp_path):
    root = make_dataset(tmp_path / "syn", classes=2, per_class=3, size=64, seed=0)
    boxes = load_evidence(root)
    assert len(boxes) == 6
    for rel, (x0, y0, x1, y1) in boxes.items():
        img = Image.open(root / rel).convert("RGB")
        arr = np.asarray(img).astype(int)
        saturation = arr.max(axis=2) - arr.min(axis=2)  # the texture is grey, the pattern is tinted
        inside = saturation[y0:y1, x0:x1]
        outside = saturation.copy()
        outside[y0:y1, x0:x1] = 0
        assert inside.max() > 60 and outside.max() < 10, rel
