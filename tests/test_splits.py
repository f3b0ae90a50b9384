"""train.splits: natural order, ordered and group splits, group sources and their errors, the split record."""
from __future__ import annotations

from pathlib import Path

import pytest

from hub.errors import DataError
from train.splits import (
    check_split,
    describe_split,
    group_split,
    groups_from_csv,
    groups_from_pattern,
    natural_key,
    ordered_split,
    random_split,
)


def _files(root: Path, spec: dict[str, list[str]]) -> dict[str, list[Path]]:
    """Class -> paths under root (the files need not exist for these functions)."""
    return {c: [root / c / name for name in names] for c, names in spec.items()}


def test_natural_key_compares_numbers_as_numbers():
    # 'a1b' vs 'a1b2': one key's parts are a prefix of the other's, which must not compare str with int
    names = ["img10.png", "img2.png", "IMG3.png", "img1.png", "a1b2", "a1b", "img01.png"]
    assert sorted(names, key=natural_key) == ["a1b", "a1b2", "img01.png", "img1.png", "img2.png",
                                              "IMG3.png", "img10.png"]
    assert natural_key(Path("x/img2.png")) < natural_key("x/img10.png")


def test_ordered_split_takes_the_last_files_in_natural_order(tmp_path):
    files = _files(tmp_path, {"a": [f"{i}.jpg" for i in (3, 10, 1, 9, 2, 4, 5, 6, 7, 8)],
                              "b": ["x1.png", "x2.png"], "c": ["s1.png", "s2.png", "s3.png"]})
    train, val = ordered_split(files, ["a", "b", "c"], 0.2)
    assert [p.name for p in val["a"]] == ["9.jpg", "10.jpg"]  # not '8.jpg', '9.jpg' of a text sort
    assert [p.name for p in train["a"]] == [f"{i}.jpg" for i in range(1, 9)]
    assert [p.name for p in val["b"]] == ["x2.png"]  # at least one when a class has two
    assert len(val["c"]) == 1 and len(train["c"]) == 2
    _, val_big = ordered_split(files, ["c"], 0.99)
    assert len(val_big["c"]) == 2  # never all of a class
    check_split(train, val, ["a", "b", "c"], "ordered")


def test_a_class_without_validation_images_is_an_error(tmp_path):
    files = _files(tmp_path, {"a": ["1.png", "2.png"], "rare": ["1.png"]})
    train, val = ordered_split(files, ["a", "rare"], 0.2)
    with pytest.raises(DataError, match=r"class 'rare' has no validation image after the ordered split "
                                        r"\(1 image\(s\)\); raise --val-split.*or pass --val-data"):
        check_split(train, val, ["a", "rare"], "ordered")
    with pytest.raises(DataError, match=r"class 'a' has no training image after the group split "
                                        r"\(2 image\(s\) in 1 group\(s\)\); lower --val-split"):
        check_split({"a": []}, {"a": files["a"]}, ["a"], "group", groups={p: "g" for p in files["a"]})


def _patients(root: Path, sizes: dict[str, list[int]]) -> tuple[dict[str, list[Path]], dict[Path, str]]:
    """Class -> files of patients with the given numbers of images, and each file's patient."""
    files: dict[str, list[Path]] = {}
    groups: dict[Path, str] = {}
    for c, per_patient in sizes.items():
        files[c] = []
        for i, n in enumerate(per_patient):
            for j in range(n):
                p = root / c / f"{c}{i}_{j}.png"
                files[c].append(p)
                groups[p] = f"{c}{i}"
    return files, groups


def _share(train: dict, val: dict, c: str) -> float:
    return len(val[c]) / (len(val[c]) + len(train[c]))


def test_group_split_keeps_groups_whole_and_stratifies(tmp_path):
    sizes = {"a": [1, 2, 3, 4, 5] * 8, "b": [3, 1, 4, 1, 5] * 6, "c": [2, 6] * 10}
    files, groups = _patients(tmp_path, sizes)
    classes = list(sizes)
    train, val = group_split(files, classes, groups, 0.2, seed=0)
    in_train = {groups[p] for c in classes for p in train[c]}
    in_val = {groups[p] for c in classes for p in val[c]}
    assert in_train and in_val and not in_train & in_val
    assert sorted(p for c in classes for p in train[c] + val[c]) == sorted(p for c in classes for p in files[c])
    for c in classes:
        assert abs(_share(train, val, c) - 0.2) <= 0.02, c  # whole groups, yet within 2 points of 20%
    assert (train, val) == group_split(files, classes, groups, 0.2, seed=0)
    assert val != group_split(files, classes, groups, 0.2, seed=1)[1]
    info = describe_split("group", {"train": train, "val": val}, groups)
    assert info["groups"] == {"train": len(in_train), "val": len(in_val)}
    assert info["images"]["val"] == {c: len(val[c]) for c in classes}


def test_group_split_prefers_small_groups_that_fit_over_one_that_overshoots(tmp_path):
    files, groups = _patients(tmp_path, {"a": [38, 10, 10]})
    for seed in range(5):  # target 20 of 58: the two groups of 10, whatever the order
        _, val = group_split(files, ["a"], groups, 20 / 58, seed)
        assert len(val["a"]) == 20 and {groups[p] for p in val["a"]} == {"a1", "a2"}


def test_group_spanning_classes_lands_in_one_split(tmp_path):
    files, groups = _patients(tmp_path, {"a": [2] * 10, "b": [2] * 10})
    shared = [tmp_path / "b" / "twice_0.png", tmp_path / "b" / "twice_1.png"]
    files["b"] += shared
    for p in shared:
        groups[p] = "a0"  # patient a0 also has images filed under b
    for seed in range(6):
        train, val = group_split(files, ["a", "b"], groups, 0.3, seed)
        sides = {"val" if p in val[c] else "train" for c in ("a", "b") for p in files[c] if groups[p] == "a0"}
        assert len(sides) == 1


def test_group_split_gives_a_class_with_two_groups_one(tmp_path):
    files, groups = _patients(tmp_path, {"a": [1] * 20, "big": [50, 50], "single": [3]})
    train, val = group_split(files, ["a", "big", "single"], groups, 0.2, seed=0)
    assert len(val["big"]) == 50 and len(train["big"]) == 50  # no group of 50 fits 20, one is taken anyway
    with pytest.raises(DataError, match=r"class 'single' has no validation image after the group split "
                                        r"\(3 image\(s\) in 1 group\(s\)\)"):
        check_split(train, val, ["a", "big", "single"], "group", groups)


def test_group_split_needs_a_group_for_every_file(tmp_path):
    files, groups = _patients(tmp_path, {"a": [2, 2], "b": [2, 2]})
    del groups[files["b"][0]]
    with pytest.raises(DataError, match=r"1 image\(s\) have no group \(e\.g\. .*b0_0\.png\)"):
        group_split(files, ["a", "b"], groups, 0.2, 0)


@pytest.fixture
def patient_files(tmp_path) -> tuple[Path, list[Path]]:
    root = tmp_path / "data"
    return root, [root / rel for rel in ("a/p1_1.png", "a/p1_2.png", "a/p2_1.png", "b/p3_1.png")]


def test_groups_from_pattern(patient_files):
    root, paths = patient_files
    assert groups_from_pattern(paths, root, r"/(p\d+)_") == dict(zip(paths, ["p1", "p1", "p2", "p3"], strict=True))
    assert groups_from_pattern(paths, root, r"p\d+") == dict(zip(paths, ["p1", "p1", "p2", "p3"], strict=True))


@pytest.mark.parametrize("regex,extra,message", [
    ("(p", None, r"--group-pattern '\(p' is not a valid regular expression \(missing \), unterminated subpattern"),
    (r"patient-\d+", None, r"--group-pattern 'patient-\\\\d\+' matches none of the 4 files \(e\.g\. 'a/p1_1\.png'\)"),
    (r"(p\d+)_", "b/scan.png", r"does not match 1 of 5 files \(e\.g\. 'b/scan\.png'\); every image needs a group"),
    (r"(png)$", None, r"--group-pattern '\(png\)\$': puts all 4 files in one group \('png'\)"),
])
def test_groups_from_pattern_errors(patient_files, regex, extra, message):
    root, paths = patient_files
    with pytest.raises(DataError, match=message):
        groups_from_pattern(paths + ([root / extra] if extra else []), root, regex)


def test_groups_from_csv(patient_files, tmp_path):
    root, paths = patient_files
    csv = tmp_path / "groups.csv"
    # a BOM (Excel), './' prefixes, blank lines and spaces are tolerated
    csv.write_text("\ufeffpath,group\n./a/p1_1.png,P1\na/p1_2.png, P1\n\na/p2_1.png,P2\nb/p3_1.png,P3\n",
                   encoding="utf-8")
    assert groups_from_csv(csv, paths, root) == dict(zip(paths, ["P1", "P1", "P2", "P3"], strict=True))


GOOD_ROWS = "a/p1_1.png,P1\na/p1_2.png,P1\na/p2_1.png,P2\nb/p3_1.png,P3\n"


@pytest.mark.parametrize("content,message", [
    (None, r"--groups .*groups\.csv: no such file"),
    (b"path,group\n\xff\xfe,x\n", r"--groups .*: cannot read it \(.*codec.*\); pass a UTF-8 CSV file"),
    ("", r"the first row must be the header 'path,group', got 'an empty file'"),
    ("file,patient\n" + GOOD_ROWS, r"the first row must be the header 'path,group', got 'file,patient'"),
    ("path,group\n" + GOOD_ROWS + "b/x.png,P4,extra\n", r"line 6 has 3 field\(s\), expected 2 \(path,group\)"),
    ("path,group\na/p1_1.png,\n", r"line 2 \('a/p1_1\.png'\) has an empty group"),
    ("path,group\n" + GOOD_ROWS + "a/p1_1.png,P9\n", r"line 6 lists 'a/p1_1\.png' again \(first on line 2\)"),
    ("path,group\n" + GOOD_ROWS.replace("b/p3_1.png,P3\n", ""),
     r"1 image\(s\) of --data are not listed \(e\.g\. 'b/p3_1\.png'\); add a 'path,group' row for each"),
    ("path,group\n" + GOOD_ROWS + "c/gone.png,P4\n",
     r"1 row\(s\) name files that are not in --data \(e\.g\. 'c/gone\.png' on line 6\); paths must be relative"),
    ("path,group\n" + "".join(f"{r.split(',')[0]},same\n" for r in GOOD_ROWS.split()),
     r"puts all 4 files in one group \('same'\)"),
])
def test_groups_from_csv_errors(patient_files, tmp_path, content, message):
    root, paths = patient_files
    csv = tmp_path / "groups.csv"
    if isinstance(content, bytes):
        csv.write_bytes(content)
    elif content is not None:
        csv.write_text(content)
    with pytest.raises(DataError, match=message):
        groups_from_csv(csv, paths, root)


def test_groups_from_csv_that_is_a_folder(patient_files, tmp_path):
    root, paths = patient_files
    with pytest.raises(DataError, match=r"--groups .*: cannot read it"):
        groups_from_csv(tmp_path, paths, root)


def test_describe_split_records_method_and_counts(tmp_path):
    files = _files(tmp_path, {"a": [f"{i}.png" for i in range(5)], "b": [f"{i}.png" for i in range(3)]})
    train, val = ordered_split(files, ["a", "b"], 0.4)
    assert describe_split("ordered", {"train": train, "val": val}) == {
        "method": "ordered", "images": {"train": {"a": 3, "b": 2}, "val": {"a": 2, "b": 1}}}
    with pytest.raises(ValueError, match="unknown split method 'shuffled'"):
        describe_split("shuffled", {"train": train})


@pytest.mark.parametrize("split", ["random", "ordered"])
def test_a_large_validation_share_still_leaves_each_class_a_training_image(tmp_path, split):
    files = _files(tmp_path, {"a": ["1.png", "2.png"], "b": ["1.png", "2.png", "3.png"]})
    train, val = (random_split(files, ["a", "b"], 0.9, seed=0) if split == "random"
                  else ordered_split(files, ["a", "b"], 0.9))
    assert {c: len(ps) for c, ps in train.items()} == {"a": 1, "b": 1}
    assert {c: len(ps) for c, ps in val.items()} == {"a": 1, "b": 2}
