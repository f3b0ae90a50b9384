"""Is model B better than model A on the same held-out images? A paired bootstrap of the difference.

    python -m bench.paired runs/mri-swap-val runs/mri-swap25-val --data runs/mri-data/val \\
        --group-pattern '^[^/]+/(\\d*)\\d\\.'

Both models score every image under --data that sits in a folder named after one of their classes (the same
classes, each model with its own preprocessing from its config.json). The probabilities are raw (no temperature)
and, as training evaluates, the mean over the image and its mirror (--no-tta: the image alone). Each bootstrap
resample draws the same images, or whole groups with --group-pattern/--groups, for both models, so the interval
printed is that of B - A itself. Two models' own intervals side by side overlap even when one is better on
nearly every resample; this is the figure to read before choosing one on a validation block. --json FILE also
writes the figures. The MRI comparisons are in docs/lesion-mri.md.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

BATCH = 32


def probabilities(clf, paths: list[Path], tta: bool, amp: bool) -> np.ndarray:
    """(N, classes) raw softmax probabilities of a loaded model, flip-TTA as training's evaluation."""
    import torch

    from train.engine import predict

    batches = ((clf.preprocess(paths[i:i + BATCH]), torch.zeros(len(paths[i:i + BATCH]), dtype=torch.long))
               for i in range(0, len(paths), BATCH))
    return predict(clf.model, batches, clf.device, amp=amp, show=False, tta=tta)[1]


def held_out_images(data: str, labels: list[str]) -> tuple[Path, list]:
    """--data's folder and its images that sit in a folder named after a class (hub.explain.batch items, with
    their truth); one-line errors for a missing folder or one without such images."""
    from hub.errors import DataError
    from hub.explain.batch import collect_images

    root = Path(data)
    if not root.is_dir():
        raise DataError(f"--data {data}: no such folder; give the parent of the class folders ({', '.join(labels)})")
    items = [i for i in collect_images([root], labels) if i.truth is not None]
    if not items:
        raise DataError(f"--data {data}: no image sits in a folder named after one of the classes "
                         f"({', '.join(labels)}): give the class folders' parent")
    return root, items


def groups_of(paths: list[Path], root: Path, pattern: str | None, csv: str | None) -> list[str] | None:
    """The group of each image, or None: both readers refuse an image without a group in one line."""
    from train.splits import groups_from_csv, groups_from_pattern

    if pattern is None and csv is None:
        return None
    found = groups_from_pattern(paths, root, pattern) if pattern else groups_from_csv(Path(csv), paths, root)
    return [found[p] for p in paths]


def run(model_a: str, model_b: str, data: str, tta: bool = True, amp: bool = False, n_boot: int = 2000,
        pattern: str | None = None, csv: str | None = None, out: str | None = None) -> dict:
    """Score both models, print the comparison and return its figures."""
    from hub import from_pretrained
    from hub.errors import DataError
    from train.metrics import paired_bootstrap

    a, b = (from_pretrained(m, device="auto") for m in (model_a, model_b))
    if a.labels != b.labels:
        raise DataError(f"the models answer different classes ({', '.join(a.labels)} against "
                         f"{', '.join(b.labels)}): compare models of the same classes, in the same order")
    root, items = held_out_images(data, a.labels)
    paths = [i.path for i in items]
    groups = groups_of(paths, root, pattern, csv)
    started = time.perf_counter()
    probs = [probabilities(clf, paths, tta, amp) for clf in (a, b)]
    scored = time.perf_counter() - started
    figures = paired_bootstrap([i.truth for i in items], *probs, n_boot=n_boot, groups=groups)
    print(f"A: {model_a}\nB: {model_b}\n{len(paths)} images of {root}, "
          f"{'flip TTA' if tta else 'one view'}, raw probabilities; {figures['n_boot']} paired resamples of "
          f"{figures['units']} {'groups' if groups else 'images'}")
    print(f"{'':10} {'A':>7} {'B':>7} {'B - A':>8}  {int(figures['level'] * 100)}% interval of B - A   "
          f"resamples with B higher")
    for name, title in (("accuracy", "accuracy"), ("auc_macro", "macro AUC")):
        f = figures[name]
        print(f"{title:10} {f['a']:7.4f} {f['b']:7.4f} {f['difference']:+8.4f}  [{f['low']:+.4f}, {f['high']:+.4f}]"
              f"{'':10}{f['b_higher']:.0%}")
    print(f"measured: {len(paths)} images x 2 models in {scored:.0f} s")
    figures.update(a=str(model_a), b=str(model_b), data=str(root), tta=tta)
    if out:
        Path(out).write_text(json.dumps(figures, indent=2) + "\n")
    return figures


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m bench.paired", description=__doc__.splitlines()[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("model_a", metavar="A", help="the model compared against: a model folder or REPO_ID[@REV]")
    p.add_argument("model_b", metavar="B", help="the model that may be better, same classes")
    p.add_argument("--data", required=True, help="held-out class-per-folder images (the class is the folder's name)")
    p.add_argument("--tta", action=argparse.BooleanOptionalAction, default=True,
                   help="mean of the image's and its mirror's probabilities, as training evaluates")
    p.add_argument("--amp", action=argparse.BooleanOptionalAction, default=False,
                   help="bf16/fp16 autocast, as training evaluates with --amp; off: float32")
    p.add_argument("--n-boot", type=int, default=2000, help="paired bootstrap resamples")
    grouping = p.add_mutually_exclusive_group()
    grouping.add_argument("--group-pattern", metavar="REGEX",
                          help="resample whole groups: the regex's first capture group on each path relative to "
                               "--data, e.g. '^[^/]+/(\\d*)\\d\\.' for blocks of 10 neighbouring file numbers")
    grouping.add_argument("--groups", metavar="FILE.csv", help="resample whole groups: a CSV with the header "
                                                               "path,group (paths relative to --data)")
    p.add_argument("--json", metavar="FILE", help="also write the figures to FILE")
    a = p.parse_args(argv)
    if a.n_boot < 100:
        p.error(f"--n-boot must be at least 100 for a 95% interval, got {a.n_boot}")
    from hub.cli import run_command

    def command() -> None:  # the figures are printed; run_command takes a return value for the exit code
        run(a.model_a, a.model_b, a.data, a.tta, a.amp, a.n_boot, a.group_pattern, a.groups, a.json)

    sys.exit(run_command(command))


if __name__ == "__main__":
    main()
