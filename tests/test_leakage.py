"""train.leakage: pHash, Hamming distances, and the near-duplicate report between splits."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageEnhance

from hub.errors import ImageError
from train import leakage
from train.leakage import MAX_DISTANCE, hamming, image_hashes, leakage_report, near_duplicates, phash
from train.synthetic import make_image


def _save(img: Image.Image, path: Path, **kwargs) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, **kwargs)
    return path


@pytest.fixture
def images(tmp_path) -> dict[str, Path]:
    """Four unrelated synthetic images in train; in val a JPEG re-save (brightened) of one, and another image."""
    rng = np.random.default_rng(3)
    made = [make_image(name, 96, rng)[0] for name in ("ring", "cross", "disc", "checker", "ring", "stripes")]
    train = {f"train/c/{i}.png": _save(img, tmp_path / f"train/c/{i}.png") for i, img in enumerate(made[:4])}
    brighter = ImageEnhance.Brightness(made[1]).enhance(1.1)
    return {**train,
            "copy": _save(brighter, tmp_path / "val/c/copy.jpg", quality=70),
            "other": _save(made[4], tmp_path / "val/c/other.png"),
            "test": _save(made[5], tmp_path / "test/c/t.png")}


def test_phash_properties():
    rng = np.random.default_rng(0)
    stack = rng.random((5, 32, 32))
    h = phash(stack)
    assert h.dtype == np.uint64 and h.shape == (5,)
    assert np.array_equal(h, phash(stack * 2 + 10))  # brightness and contrast do not change the hash
    assert [bin(int(x)).count("1") for x in h] == [32] * 5  # median threshold: half the bits set
    assert phash(np.zeros((1, 32, 32)))[0] == 0  # a blank image has no structure, no bit set


def test_hamming_matches_a_bit_count_by_hand():
    rng = np.random.default_rng(1)
    a = rng.integers(0, 2**64, size=7, dtype=np.uint64)
    b = np.concatenate([rng.integers(0, 2**64, size=4, dtype=np.uint64), [a[0], np.uint64(2**64 - 1)]])
    expected = [[bin(int(x) ^ int(y)).count("1") for y in b] for x in a]
    assert hamming(a, b).tolist() == expected
    assert hamming(a, b)[0, 4] == 0


def test_near_duplicates_nearest_index_and_threshold(monkeypatch):
    rng = np.random.default_rng(2)
    train = rng.integers(0, 2**64, size=50, dtype=np.uint64)
    other = train[[3, 10, 20]] ^ np.array([0, 0b111, 0xFFFF], dtype=np.uint64)  # flip 0, 3 and 16 bits
    monkeypatch.setattr(leakage, "_PAIRS_PER_CHUNK", 60)  # one other image per chunk: the chunking is exercised
    index, distance = near_duplicates(train, other, max_distance=4)
    assert distance.tolist()[:2] == [0, 3] and distance[2] <= 16
    assert index.tolist()[:2] == [3, 10] and index[2] == -1
    with pytest.raises(ValueError, match="no training hashes"):
        near_duplicates(train[:0], other)


def test_image_hashes_find_the_copy_and_not_the_unrelated_image(images):
    train = [images[f"train/c/{i}.png"] for i in range(4)]
    h_train = image_hashes(train)
    index, distance = near_duplicates(h_train, image_hashes([images["copy"], images["other"]]))
    assert index[0] == 1 and distance[0] <= MAX_DISTANCE  # the brightened JPEG of train image 1
    assert index[1] == -1 and distance[1] > 3 * MAX_DISTANCE
    assert image_hashes([]).shape == (0,)


def test_image_hashes_read_every_format_load_image_reads(tmp_path):
    """A 16-bit PNG of a slice hashes like its 8-bit version: both go through hub.images.load_image."""
    grey = np.asarray(make_image("disc", 64, np.random.default_rng(5))[0].convert("L"))
    eight = _save(Image.fromarray(grey), tmp_path / "slice8.png")
    sixteen = _save(Image.fromarray(grey.astype(np.uint16) * 257), tmp_path / "slice16.png")
    assert Image.open(sixteen).mode.startswith("I")
    assert hamming(*(image_hashes([p]) for p in (eight, sixteen)))[0, 0] <= 2
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    with pytest.raises(ImageError, match="broken.png"):
        image_hashes([eight, tmp_path / "broken.png"])


def test_leakage_report(images, tmp_path):
    splits = {"train": [images[f"train/c/{i}.png"] for i in range(4)],
              "val": [images["copy"], images["other"]], "test": [images["test"]]}
    report = leakage_report(splits)
    json.dumps(report)  # goes into metrics.json as it is
    assert (report["max_distance"], report["warn_share"]) == (leakage.MAX_DISTANCE, leakage.WARN_SHARE)
    val = report["val"]
    assert (val["n"], val["near_duplicates"], val["share"]) == (2, 1, 0.5)
    assert val["examples"] == [{"val": "val/c/copy.jpg", "train": "train/c/1.png",
                                "distance": val["examples"][0]["distance"]}]
    assert "1 of 2 val images (50%) have a near-copy in train" in val["warning"]
    assert "val/c/copy.jpg ~ train/c/1.png" in val["warning"]
    assert report["test"] == {"n": 1, "near_duplicates": 0, "share": 0.0, "examples": [], "warning": None}
    assert str(tmp_path) not in json.dumps(report)  # relative paths only
    assert leakage_report(splits, warn_share=0.5)["val"]["warning"] is None  # at the limit: no warning
    assert "test" not in leakage_report({"train": splits["train"], "val": splits["val"], "test": []})
