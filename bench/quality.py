"""What each recipe change buys on real data: an ablation table on a patient-safe test set.

The test set is the last 20% of each class in natural file order (one patient's slices stay on one
side on the figshare MRI set), linked (not copied) into a scratch folder; no choice is tuned on it.
Every run trains from scratch on the rest with an ordered validation split, then reports on the
test set: accuracy and macro AUC with 95% bootstrap intervals, per-class recall, and wall time.
The last row retrains the full recipe with a *random* validation split: the gap between its
validation accuracy and its test accuracy is what a leaky split overstates.

    python -m bench.quality --data ../shared/data/brain-mri-figshare/train --img-size 128 --epochs 30
    python -m bench.quality --data DIR --runs baseline full --epochs 2 --img-size 64   # a quick look

Each step adds one change to the one before (the order of the table), so a row's difference to
the row above is what that change bought.
"""
from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

from train.config import build_config
from train.data import scan_folder
from train.run import fit
from train.splits import ordered_split

# Each step: (name, overrides added on top of every step before it).
STEPS = [
    ("baseline", dict(recipe="mri")),                      # today's mri recipe, from scratch
    ("+crop", dict(scale_min=0.6)),                         # timm random-resized-crop
    ("+smoothing", dict(label_smoothing=0.1)),
    ("+warmup", dict(warmup_epochs=3)),
    ("+mixup", dict(mixup=0.2, cutmix=0.0)),
    ("+ema", dict(ema_decay=0.998)),
    ("+tta", dict(tta=True)),
    ("+amp", dict(amp=True)),                               # bf16 + channels_last where the CPU has it
]


def link_split(data: Path, out: Path, fraction: float) -> tuple[Path, Path]:
    """Symlink the first (1 - fraction) of each class into out/tune and the rest into out/test."""
    files = scan_folder(data)
    tune, test = ordered_split(files, list(files), fraction)
    for name, split in (("tune", tune), ("test", test)):
        for cls, paths in split.items():
            (out / name / cls).mkdir(parents=True, exist_ok=True)
            for p in paths:
                (out / name / cls / p.name).symlink_to(p.resolve())
    return out / "tune", out / "test"


def run(name: str, overrides: dict, tune: Path, test: Path, out: Path, a) -> dict:
    """Train one configuration; its test figures, validation accuracy and wall time."""
    recipe = overrides.pop("recipe", "mri")
    if "warmup_epochs" in overrides:  # a short look (--epochs 1 or 2) keeps at least one cosine epoch
        overrides["warmup_epochs"] = min(overrides["warmup_epochs"], a.epochs - 1)
    cfg = build_config(recipe, data=str(tune), test_data=str(test), out=str(out / name), pretrained=False,
                       epochs=a.epochs, img_size=a.img_size, batch_size=a.batch_size, patience=0, **overrides)
    start = time.perf_counter()
    fit(cfg, log=lambda line: None, progress=False)
    metrics = json.loads((out / name / "metrics.json").read_text())
    shutil.rmtree(out / name)  # ~0.4 GB of weights and checkpoints a run: only the figures are kept
    t, v = metrics["test"], metrics["validation"]
    return {"name": name, "seconds": time.perf_counter() - start, "val_accuracy": v["accuracy"],
            "accuracy": t["accuracy"], "auc": t["auc_macro"], "ci": t["intervals"],
            "recall": {c: m["recall"] for c, m in t["per_class"].items()}}


def row(r: dict) -> str:
    """One Markdown table row."""
    ci = r["ci"]
    recall = " ".join(f"{c} {v:.2f}" for c, v in r["recall"].items())
    return (f"| {r['name']} | {r['accuracy']:.3f} ({ci['accuracy']['low']:.3f}-{ci['accuracy']['high']:.3f}) | "
            f"{r['auc']:.3f} ({ci['auc_macro']['low']:.3f}-{ci['auc_macro']['high']:.3f}) | {recall} | "
            f"{r['val_accuracy']:.3f} | {r['seconds'] / 60:.1f} |")


def main(argv: list[str] | None = None) -> None:
    """Run the chosen steps cumulatively and print the table."""
    p = argparse.ArgumentParser(prog="python -m bench.quality", description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True, help="class folders (e.g. the shared MRI set)")
    p.add_argument("--test-fraction", type=float, default=0.2)
    p.add_argument("--img-size", type=int, default=128)
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--runs", nargs="+", default=[name for name, _ in STEPS] + ["leaky"],
                   help="steps to report (each includes every step before it), 'full' = all, 'leaky'")
    a = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-quality-") as tmp:
        table(a, Path(tmp))


def table(a: argparse.Namespace, scratch: Path) -> None:
    """Link the split into scratch, train each chosen step there and print its row as it finishes."""
    tune, test = link_split(Path(a.data), scratch / "data", a.test_fraction)
    print("| recipe | test accuracy (95% CI) | test macro AUC (95% CI) | test recall per class | val accuracy | "
          "minutes |\n|---|---|---|---|---|---|", flush=True)
    overrides: dict = {}
    for name, step in STEPS:
        overrides.update(step)
        if name in a.runs or ("full" in a.runs and name == STEPS[-1][0]):
            print(row(run(name, dict(overrides), tune, test, scratch / "runs", a)), flush=True)
    if "leaky" in a.runs:  # the full recipe again, validated on a random split
        print(row(run("leaky", {**overrides, "split": "random"}, tune, test, scratch / "runs", a)), flush=True)


if __name__ == "__main__":
    main()
