"""Validation splits that keep one patient's images on one side, and the record of how a split was made.

A random per-image split leaks when several images come from one patient (neighbouring MRI
slices, patches of one slide): the model is then validated on near-copies of what it trained on.
Two patient-safe alternatives:
- ordered: per class, the last `fraction` of the files in natural order (img2 < img10) go to
  validation, for datasets whose consecutive file numbers are one patient's slices;
- group: every image has a group (patient, slide), from a regex on its path or a CSV, and each
  group lands in exactly one split, stratified by class as far as the groups allow.
Errors are DataError with one line naming the option or file and what to do.
"""
from __future__ import annotations

import csv
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path, PurePosixPath

import numpy as np

from hub.errors import DataError

# explicit: --val-data was given; none: --val-split 0, a final fit on every image (no validation)
METHODS = ("random", "ordered", "group", "explicit", "none")
_DIGITS = re.compile(r"(\d+)")


def natural_key(path: str | Path) -> tuple:
    """Sort key comparing digit runs as numbers and text case-insensitively: img2 < img10."""
    text = Path(path).as_posix()
    parts = tuple(int(s) if i % 2 else s.casefold() for i, s in enumerate(_DIGITS.split(text)))
    return parts, text  # the text breaks ties (img01 vs img1) so the order is total


def _n_val(n: int, fraction: float) -> int:
    """Validation images of a class of n: round(n * fraction), at least one and at most n - 1 when n >= 2."""
    return 0 if n < 2 else min(n - 1, max(1, int(round(n * fraction))))


def random_split(files: Mapping[str, Sequence[Path]], classes: Sequence[str], fraction: float,
                 seed: int) -> tuple[dict[str, list[Path]], dict[str, list[Path]]]:
    """Seeded per-class random split (leaks when one patient has several images: see the module doc)."""
    rng = np.random.default_rng(seed)
    train, val = {}, {}
    for c in classes:
        ps = list(files[c])
        order = rng.permutation(len(ps))
        n_val = _n_val(len(ps), fraction)  # the same cap as ordered_split: a class keeps a training image
        val[c] = [ps[i] for i in sorted(order[:n_val])]
        train[c] = [ps[i] for i in sorted(order[n_val:])]
    return train, val


def ordered_split(files: Mapping[str, Sequence[Path]], classes: Sequence[str],
                  fraction: float) -> tuple[dict[str, list[Path]], dict[str, list[Path]]]:
    """Per class, the last `fraction` of files in natural order to val (at least one when a class has two)."""
    train, val = {}, {}
    for c in classes:
        ps = sorted(files[c], key=natural_key)
        cut = len(ps) - _n_val(len(ps), fraction)
        train[c], val[c] = ps[:cut], ps[cut:]
    return train, val


def _error(counts: np.ndarray, val: np.ndarray, target: np.ndarray) -> float:
    """How far the validation share of each class is from its target, summed over classes (in class shares)."""
    return float((np.abs(val - target) / np.maximum(counts.sum(axis=0), 1)).sum())


def group_split(files: Mapping[str, Sequence[Path]], classes: Sequence[str], groups: Mapping[Path, str],
                fraction: float, seed: int) -> tuple[dict[str, list[Path]], dict[str, list[Path]]]:
    """Whole groups to val until each class's val share is as close to `fraction` as groups allow; seeded."""
    missing = [p for c in classes for p in files[c] if p not in groups]
    if missing:
        raise DataError(f"{len(missing)} image(s) have no group (e.g. {missing[0]}); every image needs one "
                        "(--group-pattern or --groups)")
    names = sorted({groups[p] for c in classes for p in files[c]}, key=natural_key)
    row = {g: i for i, g in enumerate(names)}
    counts = np.zeros((len(names), len(classes)), dtype=np.int64)  # images of each group in each class
    for k, c in enumerate(classes):
        for p in files[c]:
            counts[row[groups[p]], k] += 1
    target = fraction * counts.sum(axis=0)
    order = np.random.default_rng(seed).permutation(len(names))
    chosen = np.zeros(len(names), dtype=bool)
    val = np.zeros(len(classes), dtype=np.int64)
    # A group may hold images of several classes (one patient, two diagnoses): it still goes to one
    # side as a whole, and each decision weighs its effect on every class it touches (_error).
    # Pass 1, in seeded random order: take a group if no class overshoots its target. Pass 2: top up
    # with any group that brings the shares closer. Pass 3: a class with no val image but two or more
    # groups gets its best group, like the "at least one" rule of the per-image splits.
    for g in order:
        if np.all(val + counts[g] <= target):
            chosen[g], val = True, val + counts[g]
    for g in order:
        if not chosen[g] and _error(counts, val + counts[g], target) < _error(counts, val, target):
            chosen[g], val = True, val + counts[g]
    for k in range(len(classes)):
        candidates = [g for g in order if counts[g, k] and not chosen[g]]
        if val[k] == 0 and len(candidates) >= 2:
            g = min(candidates, key=lambda g: _error(counts, val + counts[g], target))
            chosen[g], val = True, val + counts[g]
    to_val = {names[g] for g in np.flatnonzero(chosen)}
    train = {c: [p for p in files[c] if groups[p] not in to_val] for c in classes}
    return train, {c: [p for p in files[c] if groups[p] in to_val] for c in classes}


def _check_groups(groups: dict[Path, str], source: str) -> dict[Path, str]:
    """Refuse a grouping that leaves nothing to split: every file in one group."""
    names = set(groups.values())
    if len(groups) > 1 and len(names) == 1:
        raise DataError(f"{source}: puts all {len(groups)} files in one group ({next(iter(names))!r}); "
                        "the group must identify the patient or slide, so there are several")
    return groups


def groups_from_pattern(paths: Iterable[Path], root: Path, regex: str) -> dict[Path, str]:
    """Group of each file: the regex's first capture group (or whole match) on its path relative to root."""
    try:
        pattern = re.compile(regex)
    except re.error as exc:
        raise DataError(f"--group-pattern {regex!r} is not a valid regular expression ({exc}); "
                        "fix it, e.g. '^[^/]+/(\\w+?)_' for <class>/<patient>_<n>.png") from None
    paths = list(paths)
    groups: dict[Path, str] = {}
    for p in paths:
        m = pattern.search(Path(p).relative_to(root).as_posix())
        name = (m.group(1) if pattern.groups else m.group(0)) if m else None
        if name:  # an optional capture group that took no part, or an empty match, is no group
            groups[p] = name
    if paths and not groups:
        raise DataError(f"--group-pattern {regex!r} matches none of the {len(paths)} files "
                        f"(e.g. '{Path(paths[0]).relative_to(root).as_posix()}'); it is searched in paths "
                        "relative to --data, like '<class>/<file name>'")
    unmatched = [p for p in paths if p not in groups]
    if unmatched:
        raise DataError(f"--group-pattern {regex!r} does not match {len(unmatched)} of {len(paths)} files "
                        f"(e.g. '{Path(unmatched[0]).relative_to(root).as_posix()}'); every image needs a group: "
                        "widen the pattern or use --groups FILE.csv")
    return _check_groups(groups, f"--group-pattern {regex!r}")


def groups_from_dicom(paths: Sequence[Path]) -> dict[Path, str]:
    """Group of each file from its DICOM PatientID (a one-way hash: the id itself is never kept or shown)."""
    from hub.dicom import patient_group

    paths = list(paths)
    groups = {p: g for p in paths if (g := patient_group(p)) is not None}
    if len(groups) < len(paths):
        missing = [p for p in paths if p not in groups]
        raise DataError(f"--split group needs a group for every image: give --group-pattern REGEX or "
                        f"--groups FILE.csv ({len(missing)} of {len(paths)} images are not DICOM files with a "
                        f"PatientID, e.g. {missing[0]})")
    return _check_groups(groups, "DICOM PatientID")


def groups_from_csv(csv_path: Path, paths: Iterable[Path], root: Path) -> dict[Path, str]:
    """Group of each file from a CSV with header 'path,group' (paths relative to root, '/'-separated)."""
    where = f"--groups {csv_path}"
    try:
        with open(csv_path, newline="", encoding="utf-8-sig") as f:  # -sig: a BOM written by Excel
            rows = list(csv.reader(f))
    except FileNotFoundError:
        raise DataError(f"{where}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{where}: cannot read it ({exc}); pass a UTF-8 CSV file") from None
    if not rows or [h.strip() for h in rows[0]] != ["path", "group"]:
        got = ",".join(rows[0]) if rows else "an empty file"
        raise DataError(f"{where}: the first row must be the header 'path,group', got {got!r}")
    listed: dict[str, tuple[int, str]] = {}  # relative path -> (line, group)
    for line, row in enumerate(rows[1:], start=2):
        if not row:
            continue
        if len(row) != 2:
            raise DataError(f"{where}: line {line} has {len(row)} field(s), expected 2 (path,group)")
        rel, group = PurePosixPath(row[0].strip()).as_posix(), row[1].strip()
        if not group:
            raise DataError(f"{where}: line {line} ('{rel}') has an empty group; give every image its patient "
                            "or slide id")
        if rel in listed:
            raise DataError(f"{where}: line {line} lists '{rel}' again (first on line {listed[rel][0]}); "
                            "list every image once")
        listed[rel] = (line, group)
    by_rel = {Path(p).relative_to(root).as_posix(): p for p in paths}
    absent = [r for r in by_rel if r not in listed]
    if absent:
        raise DataError(f"{where}: {len(absent)} image(s) of --data are not listed (e.g. '{absent[0]}'); "
                        "add a 'path,group' row for each, paths relative to --data")
    extra = [r for r in listed if r not in by_rel]
    if extra:
        raise DataError(f"{where}: {len(extra)} row(s) name files that are not in --data (e.g. '{extra[0]}' "
                        f"on line {listed[extra[0]][0]}); paths must be relative to --data, like "
                        f"'{next(iter(by_rel), '<class>/<file>')}'")
    return _check_groups({p: listed[r][1] for r, p in by_rel.items()}, where)


def check_split(train: Mapping[str, Sequence[Path]], val: Mapping[str, Sequence[Path]], classes: Sequence[str],
                method: str, groups: Mapping[Path, str] | None = None) -> None:
    """Raise DataError naming the first class left with no validation (or no training) image."""
    for c in classes:
        every = [*train[c], *val[c]]
        held = f"{len(every)} image(s)"
        if groups is not None:
            held += f" in {len({groups[p] for p in every})} group(s)"
        if not val[c]:
            raise DataError(f"class '{c}' has no validation image after the {method} split ({held}); raise "
                            "--val-split, use finer groups (one per patient or slide), add images, "
                            "or pass --val-data")
        if not train[c]:
            raise DataError(f"class '{c}' has no training image after the {method} split ({held}); lower "
                            "--val-split, use finer groups (one per patient or slide), or add images")


def describe_split(method: str, splits: Mapping[str, Mapping[str, Sequence[Path]]],
                   groups: Mapping[Path, str] | None = None) -> dict:
    """What metrics.json and the model card record: method, images per class per split, groups per split."""
    if method not in METHODS:
        raise ValueError(f"unknown split method {method!r}; expected one of {METHODS}")
    out: dict = {"method": method,
                 "images": {name: {c: len(ps) for c, ps in split.items()} for name, split in splits.items()}}
    if groups is not None:
        out["groups"] = {name: len({groups[p] for ps in split.values() for p in ps})
                         for name, split in splits.items()}
    return out
