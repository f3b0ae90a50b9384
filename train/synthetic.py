"""The built-in dataset: class-per-folder images whose only class evidence sits in a known box.

Each image is a smooth random texture (no class information) with one small pattern pasted at a
random position; the pattern's shape and tint decide the class. The box of every pattern is
written to `evidence.json`, so tests can check that an explanation points at it, and beside each image
as a YOLO box file (`ring/ring_0000.txt` for `ring/ring_0000.png`), so examples copied from here carry
their expert box into a model's `examples/` (the app draws it; `make demo` copies both).

    python -m train.synthetic OUT --classes 3 --per-class 60 --size 128
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from PIL import Image

EVIDENCE_FILE = "evidence.json"

# name -> RGB tint of the pattern. Tints differ so a model trained from scratch on a CPU learns
# the classes in a few epochs; the shapes differ so the evidence is also visible in greyscale.
PATTERNS = {
    "ring": (1.0, 0.55, 0.45),
    "cross": (0.45, 1.0, 0.55),
    "checker": (0.5, 0.6, 1.0),
    "stripes": (1.0, 1.0, 0.4),
    "disc": (1.0, 0.45, 1.0),
    "triangle": (0.4, 1.0, 1.0),
}


def _texture(rng: np.random.Generator, size: int) -> np.ndarray:
    """Low-frequency grey blobs plus grain, in [0, 1]: looks like tissue, says nothing about the class."""
    coarse = rng.random((max(2, size // 16), max(2, size // 16)))
    smooth = np.asarray(Image.fromarray((coarse * 255).astype(np.uint8)).resize((size, size), Image.BICUBIC),
                        dtype=np.float32) / 255.0
    return np.clip(0.25 + 0.3 * smooth + 0.05 * rng.standard_normal((size, size)), 0.0, 1.0)


def _mask(name: str, n: int) -> np.ndarray:
    """A binary n x n mask of the pattern."""
    yy, xx = np.mgrid[0:n, 0:n].astype(np.float32)
    c, r = (n - 1) / 2.0, np.hypot(*np.mgrid[0:n, 0:n] - (n - 1) / 2.0)
    w = max(1, n // 6)
    if name == "ring":
        return (r <= n / 2.0) & (r >= n / 2.0 - w)
    if name == "cross":
        return (abs(yy - c) <= w / 2.0) | (abs(xx - c) <= w / 2.0)
    if name == "checker":
        k = max(1, n // 4)
        return ((yy // k + xx // k) % 2) == 0
    if name == "stripes":
        return ((xx + yy) // max(1, n // 5)) % 2 == 0
    if name == "disc":
        return r <= n / 2.0
    if name == "triangle":
        return (yy >= abs(xx - c) * 2 - 0.5) & (yy <= n - 1)
    raise ValueError(f"unknown pattern {name!r}; choose from {sorted(PATTERNS)}")


def make_image(name: str, size: int, rng: np.random.Generator) -> tuple[Image.Image, list[int]]:
    """One RGB image of class `name` and its evidence box [x0, y0, x1, y1] (x1, y1 exclusive)."""
    n = max(6, size // 4)
    x0, y0 = (int(v) for v in rng.integers(0, size - n + 1, size=2))
    base = _texture(rng, size)
    rgb = np.repeat(base[:, :, None], 3, axis=2)
    mask = _mask(name, n)
    patch = rgb[y0:y0 + n, x0:x0 + n]
    patch[mask] = 0.9 * np.asarray(PATTERNS[name], np.float32)
    img = Image.fromarray((rgb * 255 + 0.5).astype(np.uint8))
    return img, [x0, y0, x0 + n, y0 + n]


def yolo_line(box: list[int], size: int, class_id: int) -> str:
    """`box` [x0, y0, x1, y1] (pixels, x1 and y1 exclusive) of a `size` px image as a YOLO line `id cx cy w h`."""
    x0, y0, x1, y1 = (v / size for v in box)
    return f"{class_id} {(x0 + x1) / 2:.6f} {(y0 + y1) / 2:.6f} {x1 - x0:.6f} {y1 - y0:.6f}\n"


def make_dataset(out: str | Path, classes: int = 3, per_class: int = 60, size: int = 128,
                 seed: int = 0) -> Path:
    """Write `classes` folders of `per_class` PNGs, each with its YOLO box file, under `out` plus
    `evidence.json`; return `out`."""
    if not 2 <= classes <= len(PATTERNS):
        raise ValueError(f"--classes must be between 2 and {len(PATTERNS)}, got {classes}")
    if per_class < 1:
        raise ValueError(f"--per-class must be at least 1, got {per_class}")
    if size < 24:
        raise ValueError(f"--size must be at least 24 pixels, got {size}")
    out = Path(out)
    rng = np.random.default_rng(seed)
    boxes: dict[str, list[int]] = {}
    for class_id, name in enumerate(list(PATTERNS)[:classes]):
        (out / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            img, box = make_image(name, size, rng)
            rel = f"{name}/{name}_{i:04d}.png"
            img.save(out / rel)
            (out / rel).with_suffix(".txt").write_text(yolo_line(box, size, class_id))
            boxes[rel] = box
    (out / EVIDENCE_FILE).write_text(json.dumps(boxes, indent=0, sort_keys=True))
    return out


def load_evidence(root: str | Path) -> dict[str, list[int]]:
    """The evidence boxes written by `make_dataset`, keyed by path relative to `root`."""
    return json.loads((Path(root) / EVIDENCE_FILE).read_text())


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m train.synthetic", description=__doc__.splitlines()[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("out", help="folder to write the class folders (images and their YOLO box files) and "
                               "evidence.json into")
    p.add_argument("--classes", type=int, default=3, help=f"number of classes (2-{len(PATTERNS)})")
    p.add_argument("--per-class", type=int, default=60, help="images per class")
    p.add_argument("--size", type=int, default=128, help="image side in pixels")
    p.add_argument("--seed", type=int, default=0, help="random seed")
    a = p.parse_args(argv)
    try:
        out = make_dataset(a.out, a.classes, a.per_class, a.size, a.seed)
    except ValueError as exc:
        p.error(str(exc))
    print(f"wrote {a.classes} x {a.per_class} images of {a.size}px to {out} (boxes in {out / EVIDENCE_FILE} "
          "and beside each image as YOLO .txt)")


if __name__ == "__main__":
    main()
