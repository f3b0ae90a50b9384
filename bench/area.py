"""Does a model's confidence follow the size of the annotated region? One table per model, the same images.

    python -m bench.area runs/mri-swap-val runs/mri-max-val --data runs/mri-data/val \\
        --annotations runs/mri-data/val-annotations

Why: with average pooling a logit is the mean of the last stage's cell logits, and the grounding loss
(train/grounding.py) makes every cell off the region class-neutral, so the margin left is scaled by the region's
share of the map. A small lesion then gets a small margin whatever the model saw in it (docs/lesion.md,
`--global-pool`). This prints, per model, over the images under --data that have a region:
- Spearman's rank correlation of each image's region area share (ungrown, hub.annotations) with the probability
  of its true class, over all images and per class: near 0 when confidence does not follow the area;
- accuracy, the mean probability of the true class and the mean top-1 margin (in probability) in each third of
  the images by area (the same thirds for every model).
Probabilities are raw (no temperature) and, as training evaluates, the mean over the image and its mirror
(--no-tta: the image alone), as `python -m bench.paired` scores them. --json FILE also writes the figures.
"""
from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

PARTS = 3   # thirds by area: enough images per part on a 300-image validation block


def area_figures(truth: Sequence[int], probs: np.ndarray, areas: Sequence[float], labels: Sequence[str],
                 edges: Sequence[float] | None = None) -> dict:
    """The figures of one model (module docstring): `probs` (N, classes), `areas` in (0, 1]; `edges`, the
    area thirds' inner edges, default the areas' own 1/3 and 2/3 quantiles."""
    from hub.explain.stats import rank_correlation

    truth, probs, areas = np.asarray(truth), np.asarray(probs, dtype=np.float64), np.asarray(areas, np.float64)
    if not len(truth) == len(probs) == len(areas) or len(truth) < PARTS:
        raise ValueError(f"need as many truths, probability rows and areas, at least {PARTS}; got "
                         f"{len(truth)}, {len(probs)}, {len(areas)}")
    p_true = probs[np.arange(len(truth)), truth]
    top2 = np.sort(probs, axis=1)[:, -2:]
    margin, correct = top2[:, 1] - top2[:, 0], probs.argmax(axis=1) == truth
    edges = list(np.quantile(areas, [k / PARTS for k in range(1, PARTS)])) if edges is None else list(edges)
    part = np.searchsorted(edges, areas, side="right")

    def rho(mask: np.ndarray) -> float | None:
        # a constant column has no rank order: no correlation to report
        if mask.sum() < 3 or np.ptp(areas[mask]) == 0 or np.ptp(p_true[mask]) == 0:
            return None
        return rank_correlation(areas[mask], p_true[mask])

    def third(mask: np.ndarray) -> dict:
        if not mask.any():
            return {"images": 0, "area": None, "accuracy": None, "mean_p_true": None, "mean_margin": None}
        return {"images": int(mask.sum()), "area": [float(areas[mask].min()), float(areas[mask].max())],
                "accuracy": float(correct[mask].mean()), "mean_p_true": float(p_true[mask].mean()),
                "mean_margin": float(margin[mask].mean())}

    everything = np.ones(len(truth), bool)
    return {
        "images": int(len(truth)), "accuracy": float(correct.mean()), "mean_p_true": float(p_true.mean()),
        "spearman_area_p_true": rho(everything),
        "per_class": {lab: {"images": int((truth == c).sum()), "median_area": float(np.median(areas[truth == c]))
                            if (truth == c).any() else None, "spearman_area_p_true": rho(truth == c)}
                      for c, lab in enumerate(labels)},
        "edges": [float(e) for e in edges],
        "parts": [third(part == k) for k in range(PARTS)],
    }


def report(name: str, f: dict, labels: Sequence[str]) -> str:
    """The printed table of one model's figures."""
    def num(v: float | None) -> str:
        return "   -  " if v is None else f"{v:+.3f}"

    lines = [f"{name}: {f['images']} images, accuracy {f['accuracy']:.3f}, mean p(true) {f['mean_p_true']:.3f}, "
             f"Spearman(area, p(true)) {num(f['spearman_area_p_true'])}; per class: " +
             ", ".join(f"{lab} {num(f['per_class'][lab]['spearman_area_p_true'])}" for lab in labels),
             f"  {'area third':>10} {'area share':>17} {'images':>6} {'accuracy':>8} {'p(true)':>7} {'margin':>6}"]
    for k, p in enumerate(f["parts"]):
        if p["images"]:
            lines.append(f"  {k + 1:>10} {p['area'][0]:8.4f}-{p['area'][1]:.4f} {p['images']:6d} "
                         f"{p['accuracy']:8.3f} {p['mean_p_true']:7.3f} {p['mean_margin']:6.3f}")
    return "\n".join(lines)


def run(models: Sequence[str], data: str, annotations: str, tta: bool = True, amp: bool = False,
        out: str | None = None) -> dict:
    """Score every model on the annotated images under `data`; print and return the figures."""
    from bench.paired import held_out_images, probabilities
    from hub import from_pretrained
    from hub.annotations import image_size, read_annotations
    from hub.errors import DataError

    clfs = [from_pretrained(m, device="auto") for m in models]
    labels = clfs[0].labels
    for m, clf in zip(models, clfs):
        if clf.labels != labels:
            raise DataError(f"{m} answers {', '.join(clf.labels)}, {models[0]} {', '.join(labels)}: compare "
                            "models of the same classes, in the same order")
    root, items = held_out_images(data, labels)
    regions = read_annotations(annotations, [i.path for i in items], root)
    kept = [i for i in items if regions.get(i.path) is not None]
    areas = [regions.get(i.path).area_share(image_size(i.path)) for i in kept]
    truth = [i.truth for i in kept]
    print(f"{len(kept)} annotated images of {root} ({len(regions.missing)} without a region, skipped), "
          f"{'flip TTA' if tta else 'one view'}, raw probabilities")
    edges = list(np.quantile(areas, [k / PARTS for k in range(1, PARTS)]))
    figures = {}
    for m, clf in zip(models, clfs):
        figures[str(m)] = area_figures(truth, probabilities(clf, [i.path for i in kept], tta, amp), areas, labels,
                                       edges)
        print(report(str(m), figures[str(m)], labels))
    result = {"data": str(root), "annotations": str(annotations), "tta": tta, "models": figures}
    if out:
        Path(out).write_text(json.dumps(result, indent=2) + "\n")
    return result


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m bench.area", description=__doc__.splitlines()[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("models", nargs="+", metavar="MODEL", help="model folders or REPO_ID[@REV], the same classes")
    p.add_argument("--data", required=True, help="held-out class-per-folder images (the class is the folder's name)")
    p.add_argument("--annotations", required=True, help="their regions: YOLO/COCO boxes or masks (hub.annotations)")
    p.add_argument("--tta", action=argparse.BooleanOptionalAction, default=True,
                   help="mean of the image's and its mirror's probabilities, as training evaluates")
    p.add_argument("--amp", action=argparse.BooleanOptionalAction, default=False,
                   help="bf16/fp16 autocast, as training evaluates with --amp; off: float32")
    p.add_argument("--json", metavar="FILE", help="also write the figures to FILE")
    a = p.parse_args(argv)
    from hub.cli import run_command

    def command() -> None:  # the figures are printed; run_command takes a return value for the exit code
        run(a.models, a.data, a.annotations, a.tta, a.amp, a.json)

    sys.exit(run_command(command))


if __name__ == "__main__":
    main()
