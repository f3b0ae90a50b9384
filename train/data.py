"""Class-per-folder datasets: scan, validate every image up front, split, and load.

All problems with the data are found here, before the first training step: a missing folder,
no or one class, an empty class, class names that differ between splits, and unreadable images
(listed once in a warning and skipped), so training never dies mid-epoch on one bad file.
"""
from __future__ import annotations

import hashlib
import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from hub.errors import DataError
from hub.images import ImageError, find_images, load_image
from train.splits import (
    check_split,
    describe_split,
    group_split,
    groups_from_csv,
    groups_from_dicom,
    groups_from_pattern,
    ordered_split,
    random_split,
)


@dataclass(frozen=True)
class Split:
    """Image paths and integer labels of one split."""

    paths: tuple[Path, ...]
    labels: tuple[int, ...]

    def __len__(self) -> int:
        return len(self.paths)

    def counts(self, n_classes: int) -> list[int]:
        """Number of images per class index."""
        return np.bincount(np.asarray(self.labels, dtype=np.int64), minlength=n_classes).tolist()


@dataclass(frozen=True)
class Splits:
    """Train/val/(test) splits over one label set, and what was skipped."""

    classes: tuple[str, ...]
    train: Split
    val: Split
    test: Split | None
    skipped: tuple[tuple[str, str], ...]  # (path, reason) of unreadable images
    info: dict = field(default_factory=dict)        # how the split was made: train.splits.describe_split
    groups: dict[Path, str] | None = field(default=None, repr=False)  # patient/slide of each file, if grouped

    def fingerprint(self) -> dict:
        """Class names, counts per split, and a hash of the sorted file lists: identifies the data."""
        h = hashlib.sha256()
        for name, split in self.named():
            for p, y in sorted(zip(map(str, split.paths), split.labels)):
                h.update(f"{name}\t{y}\t{p}\n".encode())
        return {
            "classes": list(self.classes),
            "counts": {name: dict(zip(self.classes, s.counts(len(self.classes)))) for name, s in self.named()},
            "files_sha256": h.hexdigest(),
            "skipped": len(self.skipped),
        }

    def named(self):
        """(name, split) pairs: train, val and, when there is one, test."""
        yield "train", self.train
        yield "val", self.val
        if self.test is not None:
            yield "test", self.test


def _visible(p: Path) -> bool:
    return not p.name.startswith(".")


# Class names become labels in config.json, the model card (Markdown) and the app (HTML).
_UNSAFE_IN_LABEL = set('<>\\"`') | {chr(c) for c in range(32)} | {chr(127)}


def check_class_name(name: str, role: str, root: Path) -> None:
    """Refuse folder names that would be markup or escapes once they are labels."""
    bad = sorted(set(name) & _UNSAFE_IN_LABEL)
    if bad:
        raise DataError(f"{role} {root}: class folder name {name!r} contains {''.join(bad)!r}; class names become "
                        "the model's labels (config.json, model card, app), so rename the folder without "
                        "< > \\ \" ` or control characters")
    if name != name.strip():
        raise DataError(f"{role} {root}: class folder name {name!r} starts or ends with white space; rename it")


def scan_folder(root: str | Path, role: str = "--data") -> dict[str, list[Path]]:
    """Class name -> sorted image files (by extension) of a class-per-folder directory."""
    root = Path(root)
    if not root.exists():
        raise DataError(f"{role} {root}: no such directory")
    if not root.is_dir():
        raise DataError(f"{role} {root}: is a file; expected a folder with one sub-folder of images per class")
    classes = sorted(d for d in root.iterdir() if d.is_dir() and _visible(d))
    if not classes:
        raise DataError(f"{role} {root}: no class folders found; expected {root}/<class name>/<images>")
    found = {}
    for d in classes:
        check_class_name(d.name, role, root)
        files = find_images(d)  # sub-folders too: DATA/<class>/any/depth/x.png is a <class> image
        if not files:
            raise DataError(f"{role} {root}: class folder '{d.name}' has no images "
                            "(looked for .bmp, .jpeg, .jpg, .png, .tif, .tiff, .webp, ...)")
        found[d.name] = files
    if len(found) < 2:
        raise DataError(f"{role} {root}: found only one class folder ('{classes[0].name}'); "
                        "a classifier needs at least two classes")
    return found


def _check(path: Path) -> str | None:
    try:
        load_image(path)
    except ImageError as exc:
        return str(exc).removeprefix(f"{path}: ")
    return None


def validate_images(files: dict[str, list[Path]], role: str,
                    workers: int = 4) -> tuple[dict[str, list[Path]], list[tuple[str, str]]]:
    """Decode every image once; return the readable ones per class and the (path, reason) of the rest."""
    every = [p for ps in files.values() for p in ps]
    # Decoding is mostly C code that releases the GIL, so threads give real parallelism here.
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        reasons = dict(zip(every, pool.map(_check, every)))
    bad = [(str(p), r) for p, r in reasons.items() if r is not None]
    good = {c: [p for p in ps if reasons[p] is None] for c, ps in files.items()}
    empty = [c for c, ps in good.items() if not ps]
    if empty:
        raise DataError(f"{role}: class folder(s) {', '.join(repr(c) for c in empty)} contain no readable "
                        f"image ({len(bad)} unreadable file(s), e.g. {bad[0][0]}: {bad[0][1]})")
    return good, bad


def _as_split(files: dict[str, list[Path]], classes: Sequence[str]) -> Split:
    pairs = [(p, i) for i, c in enumerate(classes) for p in files[c]]
    return Split(tuple(p for p, _ in pairs), tuple(y for _, y in pairs))


def build_splits(data: str | Path, val_data: str | Path | None = None, test_data: str | Path | None = None,
                 val_split: float = 0.15, seed: int = 0, split: str = "random", group_pattern: str | None = None,
                 group_csv: str | Path | None = None) -> Splits:
    """Scan, check and split the dataset(s) of a run; raise DataError before any training."""
    scans = {"--data": scan_folder(data, "--data")}
    if val_data is not None:
        scans["--val-data"] = scan_folder(val_data, "--val-data")
    if test_data is not None:
        scans["--test-data"] = scan_folder(test_data, "--test-data")
    classes = tuple(scans["--data"])
    for role, found in scans.items():
        if tuple(found) != classes:
            missing, extra = sorted(set(classes) - set(found)), sorted(set(found) - set(classes))
            raise DataError(f"class folders of {role} differ from --data: "
                            f"missing {missing or 'none'}, extra {extra or 'none'} "
                            f"(--data has {list(classes)})")
    # Groups come from the scanned files, before unreadable ones are dropped: a groups CSV lists them all.
    method = "explicit" if val_data is not None else "none" if val_split == 0 else split
    groups = find_groups(scans["--data"], Path(data), group_pattern, group_csv) if method == "group" else None
    skipped: list[tuple[str, str]] = []
    checked = {}
    for role, found in scans.items():
        checked[role], bad = validate_images(found, role)
        skipped += bad
    if skipped:
        lines = "\n".join(f"  {p}: {r}" for p, r in skipped)
        warnings.warn(f"skipping {len(skipped)} unreadable image(s):\n{lines}", stacklevel=2)
    train, val = divide(checked["--data"], classes, method, val_split, seed, groups)
    if val_data is not None:
        val = checked["--val-data"]
    named = {"train": train, "val": val}
    if test_data is not None:
        named["test"] = checked["--test-data"]
    return Splits(classes, _as_split(train, classes), _as_split(val, classes),
                  _as_split(named["test"], classes) if test_data is not None else None, tuple(skipped),
                  describe_split(method, named, groups), groups)


def find_groups(files: dict[str, list[Path]], root: Path, pattern: str | None,
                csv_path: str | Path | None) -> dict[Path, str]:
    """The patient/slide group of every file: from --group-pattern, --groups CSV, or DICOM PatientID."""
    paths = [p for ps in files.values() for p in ps]
    if pattern is not None:
        return groups_from_pattern(paths, root, pattern)
    if csv_path is not None:
        return groups_from_csv(Path(csv_path), paths, root)
    return groups_from_dicom(paths)


def divide(files: dict[str, list[Path]], classes: Sequence[str], method: str, fraction: float, seed: int,
           groups: dict[Path, str] | None) -> tuple[dict[str, list[Path]], dict[str, list[Path]]]:
    """Train and validation files per class by `method` (random, ordered, group; explicit and none keep all
    for training)."""
    if method in ("explicit", "none"):
        return dict(files), {c: [] for c in classes}
    if method == "random":
        train, val = random_split(files, classes, fraction, seed)
    elif method == "ordered":
        train, val = ordered_split(files, classes, fraction)
    else:
        train, val = group_split(files, classes, groups, fraction, seed)
    check_split(train, val, classes, method, groups)
    return train, val


class ImageDataset(Dataset):
    """(transformed image tensor, label) pairs; a file that breaks after validation is replaced, not fatal."""

    def __init__(self, split: Split, transform: Callable):
        self.split, self.transform = split, transform

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        # Files were validated before training; if one vanishes or changes since, warn and use the
        # next image instead of killing a long run (deterministic, so resume stays exact).
        for offset in range(len(self.split)):
            i = (index + offset) % len(self.split)
            try:
                return self.transform(load_image(self.split.paths[i])), self.split.labels[i]
            except ImageError as exc:
                warnings.warn(f"skipping image that became unreadable during training: {exc}", stacklevel=2)
        raise DataError("every image of the split became unreadable during training")


def eval_data_config(model: torch.nn.Module, img_size: int | None, mean: Sequence[float] | None = None,
                     std: Sequence[float] | None = None, interpolation: str | None = None) -> dict:
    """The model's own preprocessing (input size, mean, std, interpolation) with the run's overrides, no crop.

    An override left as None keeps the model's value: a retrain starts from its parent's
    preprocessing (train.parent.start_from put it on the model). 'squash' resizes the full image to
    the input size: nothing at the border is cropped away (evidence can sit anywhere in a patch or
    slice), and a heatmap maps back by a plain resize.
    """
    from timm.data import resolve_model_data_config

    base = resolve_model_data_config(model)
    given = {"mean": tuple(mean) if mean else None, "std": tuple(std) if std else None, "interpolation": interpolation,
             "input_size": (3, img_size, img_size) if img_size else None}
    return {**base, **{k: v for k, v in given.items() if v is not None}, "crop_pct": 1.0, "crop_mode": "squash"}


# What a trained model's pretrained_cfg keeps from its starting point: how to feed and read it.
# Source fields of the ImageNet weights (url, tag, license, paper ids, test sizes) would describe
# weights that are no longer there.
_KEEP = ("architecture", "first_conv", "classifier", "fixed_input_size")


def trained_pretrained_cfg(model: torch.nn.Module, data_config: dict) -> dict:
    """pretrained_cfg describing the fine-tuned weights: architecture, preprocessing, pool size."""
    old = model.pretrained_cfg
    stride = model.feature_info[-1]["reduction"] if getattr(model, "feature_info", None) else None
    size = data_config["input_size"]
    return {**{k: old[k] for k in _KEEP if k in old}, **data_config,
            "pool_size": (size[1] // stride, size[2] // stride) if stride else None,
            "num_classes": model.num_classes}


def train_transform(data_config: dict, hflip: bool, rotation: float, color_jitter: float,
                    scale_min: float = 1.0, intensity: float = 0.0) -> Callable:
    """Resize like evaluation (or, with scale_min < 1, timm's random-resized-crop), then the recipe's
    augmentations (random gain and gamma, `intensity` > 0, on the [0, 1] tensor), then the model's
    normalisation."""
    from torchvision import transforms as T

    if scale_min < 1.0:
        return _timm_train_transform(data_config, hflip, rotation, color_jitter, scale_min, intensity)
    ops = [T.Resize(tuple(data_config["input_size"][1:]),
                    interpolation=T.InterpolationMode(data_config.get("interpolation", "bilinear")))]
    if hflip:
        ops.append(T.RandomHorizontalFlip())
    if rotation:
        ops.append(T.RandomRotation(rotation))
    if color_jitter:
        ops.append(T.ColorJitter(brightness=color_jitter, contrast=color_jitter, saturation=color_jitter))
    ops += [T.ToTensor(), *intensity_ops(intensity), T.Normalize(data_config["mean"], data_config["std"])]
    return T.Compose(ops)


def intensity_ops(strength: float) -> list:
    """[RandomIntensity(strength)] when strength > 0, else []: the step between ToTensor and Normalize."""
    from train.intensity import RandomIntensity

    return [RandomIntensity(strength)] if strength else []


def _timm_train_transform(data_config: dict, hflip: bool, rotation: float, color_jitter: float,
                          scale_min: float, intensity: float = 0.0) -> Callable:
    """timm's training pipeline (random-resized-crop over (scale_min, 1), flip, colour jitter, the model's
    normalisation), with the recipe's rotation between its crop and its colour stages."""
    from timm.data import create_transform
    from torchvision import transforms as T

    primary, secondary, final = create_transform(
        data_config["input_size"], is_training=True, scale=(scale_min, 1.0), hflip=0.5 if hflip else 0.0,
        color_jitter=color_jitter or 0.0, interpolation=data_config.get("interpolation", "bilinear"),
        mean=data_config["mean"], std=data_config["std"], separate=True)
    rotate = [T.RandomRotation(rotation)] if rotation else []
    to_tensor, *normalise = final.transforms             # timm: MaybeToTensor, Normalize
    return T.Compose([*primary.transforms, *rotate, *secondary.transforms, to_tensor, *intensity_ops(intensity),
                      *normalise])
