"""Faithfulness measurements that need a trained model: a held-out split to train beside, and imputation leaks.

    # 1. hold out the last 10 slices per class in file order, train on the rest (symlinks, nothing copied)
    python -m bench.faithfulness split --data ../shared/data/brain-mri-figshare/train --out runs/mri-split
    python -m train --data runs/mri-split/train --recipe mri --no-pretrained --img-size 224 --out runs/mri
    # 2. the figures on the held-out slices: deletion/insertion with 95% intervals, baselines, sanity, agreement
    python -m hub explain runs/mri runs/mri-split/held --faithfulness --sanity-images 30 --out runs/mri-faith
    # 3. which imputation leaks (a model trained on the synthetic set: its evidence boxes are known)
    python -m bench.faithfulness leak --model-dir runs/demo/model --data runs/demo/test-data

`leak` measures, per imputation, how much of removed evidence survives (p(true class) once the
pattern's own pixels are removed; chance is 1 / classes) and whether a hole shaped like another
class's pattern, cut where there is no evidence, raises that class's probability.
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np

from hub.images import find_images


def split(data: str, per_class: int, out: str) -> None:
    """`out/held/<class>`: the last `per_class` images of each class in file order; `out/train/<class>`: the rest."""
    from train.splits import natural_key

    # A block, not a random draw: the MRI set's neighbouring file numbers are one patient's slices, so a
    # random draw would leave the held-out slices' neighbours in training (train/splits.py, `ordered`).

    root, out = Path(data), Path(out)
    if out.exists():
        raise SystemExit(f"{out} exists; pick a new --out")
    classes = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    for folder in classes:
        files = sorted(find_images(folder), key=natural_key)
        if len(files) <= per_class:
            raise SystemExit(f"{folder}: {len(files)} images, cannot hold out {per_class}")
        for i, f in enumerate(files):
            target = out / ("held" if i >= len(files) - per_class else "train") / folder.name / f.relative_to(folder)
            target.parent.mkdir(parents=True, exist_ok=True)
            os.symlink(f.resolve(), target)
    print(f"{out}/held: the last {per_class} of each of {len(classes)} classes in file order; {out}/train: the rest")


def pattern_mask(rgb: np.ndarray, box: list[int]) -> np.ndarray:
    """The synthetic pattern's pixels: tinted (the texture is grey) and inside its evidence box."""
    x0, y0, x1, y1 = box
    mask = np.zeros(rgb.shape[:2], bool)
    tint = rgb.max(axis=-1).astype(np.int16) - rgb.min(axis=-1)
    mask[y0:y1, x0:x1] = tint[y0:y1, x0:x1] > 25
    return mask


def leak(model_dir: str, data: str, images: int, seed: int = 0) -> None:
    """Per imputation: p(true | its pattern removed) and the rise of p(B) for a B-shaped hole elsewhere."""
    import timm
    import torch

    from hub.explain.explanation import model_transform
    from hub.explain.faithfulness import target_probability
    from hub.explain.imputation import IMPUTATIONS, impute
    from hub.images import load_image
    from hub.model import labels_of
    from train.synthetic import load_evidence

    model = timm.create_model(f"local-dir:{model_dir}", pretrained=True).eval()
    labels, transform, rng = labels_of(model), model_transform(model), np.random.default_rng(seed)
    boxes = sorted(load_evidence(data).items())
    boxes = [boxes[i] for i in np.linspace(0, len(boxes) - 1, min(images, len(boxes))).round().astype(int)]
    cases = []
    for rel, box in boxes:
        img = load_image(Path(data) / rel)
        if img.size != (model.pretrained_cfg["input_size"][2], model.pretrained_cfg["input_size"][1]):
            raise SystemExit("leak needs images at the model's input size (the boxes are in image pixels)")
        cases.append((transform(img)[None], pattern_mask(np.asarray(img), box), box, labels.index(rel.split("/")[0])))
    shapes = {t: m[b[1]:b[3], b[0]:b[2]] for _, m, b, t in cases}
    print(f"{len(cases)} images from {data}; model {model_dir}; chance {1 / len(labels):.3f}")
    for how in IMPUTATIONS:
        kept, rises = [], []
        for x, mask, box, truth in cases:
            other = (truth + 1 + int(rng.integers(len(labels) - 1))) % len(labels)
            shape, (h, w) = shapes[other], mask.shape
            while True:  # a place for the hole that does not touch this image's own evidence
                r, c = (int(v) for v in rng.integers(0, (h - shape.shape[0], w - shape.shape[1])))
                if r + shape.shape[0] <= box[1] or r >= box[3] or c + shape.shape[1] <= box[0] or c >= box[2]:
                    break
            hole = np.zeros(mask.shape, bool)
            hole[r:r + shape.shape[0], c:c + shape.shape[1]] = shape
            keep = torch.from_numpy(np.stack([~mask, ~hole])[:, None]).float()
            with torch.inference_mode():
                p = target_probability(model(torch.cat([x, impute(x, keep, how)])), truth)
                q = torch.softmax(model(torch.cat([x, impute(x, keep[1:], how)])), -1)[:, other]
            kept.append(float(p[1]))
            rises.append(float(q[1] - q[0]))
        print(f"{how:9s} p(true | its pattern removed) {np.mean(kept):.3f}   p(B) rise for a B-shaped hole "
              f"{np.mean(rises):+.4f} (max {np.max(rises):+.4f})")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m bench.faithfulness", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("split", help="hold out N images per class; the rest to train on (symlinks)")
    s.add_argument("--data", required=True, help="class-per-folder images")
    s.add_argument("--per-class", type=int, default=10)
    s.add_argument("--out", required=True)
    s = sub.add_parser("leak", help="how much each imputation leaks, on a model trained on the synthetic set")
    s.add_argument("--model-dir", required=True)
    s.add_argument("--data", required=True, help="held-out synthetic images with evidence.json")
    s.add_argument("--images", type=int, default=30)
    a = p.parse_args(argv)
    if a.command == "split":
        split(a.data, a.per_class, a.out)
    else:
        leak(a.model_dir, a.data, a.images)


if __name__ == "__main__":
    main()
