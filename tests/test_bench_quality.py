"""bench.quality: the ablation table's command runs end to end and its test set is patient-safe."""
from __future__ import annotations

import pytest

from bench import quality
from train.splits import natural_key
from train.synthetic import make_dataset


def test_test_set_is_one_end_of_each_class_in_natural_order(tmp_path):
    data = make_dataset(tmp_path / "data", classes=2, per_class=10, size=32, seed=0)
    for position in ("last", "first"):
        tune, test = quality.link_split(data, tmp_path / position, 0.2, position)
        for cls in ("ring", "cross"):
            every = sorted((p.name for p in (data / cls).iterdir() if p.suffix == ".png"), key=natural_key)
            held = sorted((p.name for p in (test / cls).iterdir()), key=natural_key)
            assert held == (every[-2:] if position == "last" else every[:2])
            assert sorted(p.name for p in (tune / cls).iterdir()) == sorted(set(every) - set(held))
            assert all(p.is_symlink() for p in (test / cls).iterdir())  # linked, never copied


def test_ablation_rows_print_with_their_figures(tmp_path, capsys):
    """A cumulative step and the final-fit variant, one epoch each: two table rows; the final fit has no
    validation figure."""
    data = make_dataset(tmp_path / "data", classes=3, per_class=15, size=48, seed=0)
    quality.main(["--data", str(data), "--runs", "+amp", "final", "--epochs", "1", "--img-size", "32",
                  "--batch-size", "8", "--test-position", "first"])
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| ")][1:]
    assert [r.split(" | ")[0] for r in rows] == ["| +amp", "| final"]
    cells = [r.strip("| ").split(" | ") for r in rows]
    assert all(0.0 <= float(c[1].split()[0]) <= 1.0 for c in cells)     # test accuracy
    assert cells[0][4] != "-" and cells[1][4] == "-"                       # val accuracy: none for the final fit


def test_split_to_links_the_folders_and_refuses_an_existing_one(tmp_path, capsys):
    data = make_dataset(tmp_path / "data", classes=2, per_class=10, size=32, seed=0)
    quality.main(["--data", str(data), "--split-to", str(tmp_path / "split")])
    assert len(list((tmp_path / "split" / "test" / "ring").iterdir())) == 2
    assert len(list((tmp_path / "split" / "tune" / "ring").iterdir())) == 8
    with pytest.raises(SystemExit):
        quality.main(["--data", str(data), "--split-to", str(tmp_path / "split")])
    assert "already exists" in capsys.readouterr().err
