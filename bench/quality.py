"""What each recipe change buys on real data: an ablation table on a patient-safe test set.

The test set is 20% of each class in natural file order (one patient's slices stay on one side on the
figshare MRI set): the last files (`--test-position last`, the README's set) or the first ones (`first`,
a second set of other patients). It is linked (not copied) into a scratch folder; no choice is tuned on it.
Every run trains from scratch on the rest with an ordered validation split, then reports on the
test set: accuracy and macro AUC with 95% bootstrap intervals, per-class recall, and wall time.

Rows: the old `mri` recipe (SGD, no timm extras), then one change per row, each on top of the rows
above, ending at today's `mri` recipe; then three variants of that recipe: `mixup` (not adopted),
`leaky` (validated on a *random* split: the gap between its validation and test accuracy is what a
leaky split overstates) and `final` (`--val-split 0`: every tuning image trained on, for the
recipe's epoch count; it has no validation figure).

    python -m bench.quality --data ../shared/data/brain-mri-figshare/train                 # every row
    python -m bench.quality --data DIR --runs mri final --test-position first              # two rows
    python -m bench.quality --data DIR --runs baseline mri --epochs 2 --img-size 64        # a quick look
    python -m bench.quality --data DIR --split-to runs/mri-data     # only the tune/test links, to train yourself
    python -m bench.quality --data runs/mri-data/tune --test-fraction 0.15 --runs mri final
        # the nested check: does the final fit pay? decided inside the tune set (its validation block as the test)
"""
from __future__ import annotations

import argparse
import glob
import json
import shutil
import tempfile
import time
from pathlib import Path

from hub.annotations import MASK_SUFFIX
from train.config import RECIPES, build_config
from train.data import scan_folder
from train.run import fit
from train.splits import natural_key, ordered_split

# Each step: (name, overrides added on top of every step before it); the last one is the mri recipe.
STEPS = [
    ("baseline", dict(optimizer="sgd", lr=1e-2, weight_decay=1e-4, scale_min=1.0, label_smoothing=0.0,
                      warmup_epochs=0, ema_decay=0.0, tta=False, amp=False)),  # the mri recipe before this ablation
    ("+crop", dict(scale_min=0.6)),                         # timm random-resized-crop
    ("+smoothing", dict(label_smoothing=0.1)),
    ("+warmup", dict(warmup_epochs=2)),
    ("+ema", dict(ema_decay=0.995)),
    ("+tta", dict(tta=True)),
    ("+amp", dict(amp=True)),                               # bf16 + channels_last where the CPU has it
    ("mri", dict(optimizer="adamw", lr=1e-3, weight_decay=0.05)),  # + AdamW = today's recipe
]
# Variants of the full recipe, each one change away from it.
VARIANTS = {"mixup": dict(mixup=0.2), "leaky": dict(split="random"), "final": dict(val_split=0.0)}


def link_split(data: Path, out: Path, fraction: float, position: str = "last",
               annotations: Path | None = None) -> tuple[Path, Path]:
    """Symlink 20% of each class in natural order (the last or the first files) into out/test, the rest
    into out/tune; with `annotations`, each block's annotation files (same relative stem) into
    out/tune-annotations and out/test-annotations, so a block's regions are read with its images only."""
    files = scan_folder(data)
    tune, test = ordered_split(files, list(files), fraction)
    if position == "first":  # the same number of files per class, from the other end
        ordered = {c: sorted(ps, key=natural_key) for c, ps in files.items()}
        test = {c: ps[:len(test[c])] for c, ps in ordered.items()}
        tune = {c: ps[len(test[c]):] for c, ps in ordered.items()}
    for name, split in (("tune", tune), ("test", test)):
        for cls, paths in split.items():
            (out / name / cls).mkdir(parents=True, exist_ok=True)
            for p in paths:
                (out / name / cls / p.name).symlink_to(p.resolve())
                if annotations is not None:
                    _link_annotations(annotations / cls, p.stem, out / f"{name}-annotations" / cls)
    return out / "tune", out / "test"


def _link_annotations(folder: Path, stem: str, dest: Path) -> None:
    """Symlink the annotation files of image `stem` (stem.txt, stem.png, stem_mask.png, ...) into dest."""
    for f in sorted(folder.glob(f"{glob.escape(stem)}*")):
        if f.stem in (stem, f"{stem}{MASK_SUFFIX}"):
            dest.mkdir(parents=True, exist_ok=True)
            (dest / f.name).symlink_to(f.resolve())


def run(name: str, overrides: dict, tune: Path, test: Path, out: Path, a) -> dict:
    """Train one configuration; its test figures, validation accuracy and wall time."""
    # a short look (--epochs 1 or 2) keeps at least one cosine epoch
    warmup = min({**RECIPES["mri"], **overrides}["warmup_epochs"], a.epochs - 1)
    cfg = build_config("mri", data=str(tune), test_data=str(test), out=str(out / name), pretrained=False,
                       epochs=a.epochs, img_size=a.img_size, batch_size=a.batch_size, patience=0, workers=a.workers,
                       **{**overrides, "warmup_epochs": warmup})
    start = time.perf_counter()
    fit(cfg, log=lambda line: None, progress=False)
    metrics = json.loads((out / name / "metrics.json").read_text())
    shutil.rmtree(out / name)  # ~0.4 GB of weights and checkpoints a run: only the figures are kept
    t, v = metrics["test"], metrics.get("validation")  # a final fit has no validation
    return {"name": name, "seconds": time.perf_counter() - start, "val_accuracy": v["accuracy"] if v else None,
            "accuracy": t["accuracy"], "auc": t["auc_macro"], "ci": t["intervals"],
            "recall": {c: m["recall"] for c, m in t["per_class"].items()}}


def row(r: dict) -> str:
    """One Markdown table row."""
    ci = r["ci"]
    recall = " ".join(f"{c} {v:.2f}" for c, v in r["recall"].items())
    return (f"| {r['name']} | {r['accuracy']:.3f} ({ci['accuracy']['low']:.3f}-{ci['accuracy']['high']:.3f}) | "
            f"{r['auc']:.3f} ({ci['auc_macro']['low']:.3f}-{ci['auc_macro']['high']:.3f}) | {recall} | "
            f"{'-' if r['val_accuracy'] is None else format(r['val_accuracy'], '.3f')} | {r['seconds'] / 60:.1f} |")


def main(argv: list[str] | None = None) -> None:
    """Run the chosen steps cumulatively and print the table."""
    p = argparse.ArgumentParser(prog="python -m bench.quality", description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True, help="class folders (e.g. the shared MRI set)")
    p.add_argument("--test-fraction", type=float, default=0.2)
    p.add_argument("--test-position", choices=("last", "first"), default="last",
                   help="which end of each class (natural file order) is the test set")
    p.add_argument("--img-size", type=int, default=RECIPES["mri"]["img_size"])
    p.add_argument("--epochs", type=int, default=RECIPES["mri"]["epochs"])
    p.add_argument("--batch-size", type=int, default=RECIPES["mri"]["batch_size"])
    p.add_argument("--workers", type=int, default=1, help="loader processes per run (1 on 2 cores: decode beside "
                                                          "the training step)")
    p.add_argument("--runs", nargs="+", default=[name for name, _ in STEPS] + list(VARIANTS),
                   choices=[name for name, _ in STEPS] + list(VARIANTS),
                   help="rows to train (each step includes every step before it; variants change the mri recipe)")
    p.add_argument("--annotations", metavar="DIR", type=Path,
                   help="with --split-to: also link each block's annotation files (e.g. the MRI set's boxes/)")
    p.add_argument("--split-to", metavar="DIR", type=Path,
                   help="only link the tune / test folders into DIR (to train on them yourself) and exit")
    a = p.parse_args(argv)
    if a.split_to is not None:
        if a.split_to.exists():
            p.error(f"--split-to {a.split_to}: already exists; name a new folder")
        tune, test = link_split(Path(a.data), a.split_to, a.test_fraction, a.test_position, a.annotations)
        print(f"tune: {tune}\ntest: {test}")
        return
    with tempfile.TemporaryDirectory(prefix="bench-quality-") as tmp:
        table(a, Path(tmp))


def table(a: argparse.Namespace, scratch: Path) -> None:
    """Link the split into scratch, train each chosen step there and print its row as it finishes."""
    tune, test = link_split(Path(a.data), scratch / "data", a.test_fraction, a.test_position)
    print("| recipe | test accuracy (95% CI) | test macro AUC (95% CI) | test recall per class | val accuracy | "
          "minutes |\n|---|---|---|---|---|---|", flush=True)
    overrides: dict = {}
    for name, step in STEPS:
        overrides.update(step)
        if name in a.runs:
            print(row(run(name, dict(overrides), tune, test, scratch / "runs", a)), flush=True)
    for name, change in VARIANTS.items():
        if name in a.runs:
            print(row(run(name, dict(change), tune, test, scratch / "runs", a)), flush=True)

if __name__ == "__main__":
    main()
