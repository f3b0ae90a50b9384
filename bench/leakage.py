"""Measure near-duplicate leakage of a random vs an ordered validation split, and calibrate the pHash check.

    python -m bench.leakage --data /work/shared/data/brain-mri-figshare/train

Prints, for `--val-split` of each class to validation: (1) the time to hash every image; (2) per
split method, how many validation images have a near-copy in train at --max-distance, and the
histogram of each validation image's nearest-train Hamming distance (0..20); (3) two references
that choose the threshold: the distance of true near-copies (edits of a sample of images: JPEG
re-save, brightness, contrast, blur, and for the record a small crop and rotation; made in memory,
never written) and the nearest distance of each image to any image of another class (another
patient for sure: a chance match).
Nothing is written to disk.
"""
from __future__ import annotations

import argparse
import io
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance, ImageFilter

from hub.images import load_image
from train.data import scan_folder
from train.leakage import MAX_DISTANCE, WARN_SHARE, hamming, image_hashes, near_duplicates, phash
from train.splits import ordered_split, random_split

BINS = 21  # histogram of distances 0..20


def _jpeg(img: Image.Image, quality: int) -> Image.Image:
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=quality)
    return load_image(buf.getvalue())


# Edits of one image, made in memory: pixel-value edits (the first four) must stay within the
# threshold; pHash is not made to survive geometric ones (the last two), shown for the record.
VARIANTS: dict[str, Callable[[Image.Image], Image.Image]] = {
    "JPEG re-save q75": lambda im: _jpeg(im, 75),
    "brightness +10%": lambda im: ImageEnhance.Brightness(im).enhance(1.1),
    "contrast +20%": lambda im: ImageEnhance.Contrast(im).enhance(1.2),
    "Gaussian blur r=2": lambda im: im.filter(ImageFilter.GaussianBlur(2)),
    "crop 2% per side": lambda im: im.crop((im.width // 50, im.height // 50, im.width - im.width // 50,
                                            im.height - im.height // 50)),
    "rotate 3 degrees": lambda im: im.rotate(3),
}


def _variant_distances(paths: list[Path]) -> dict[str, np.ndarray]:
    """Hamming distance between each image's pHash and that of each of its VARIANTS."""
    images = [load_image(p) for p in paths]
    original = phash(np.stack([_grey32(im) for im in images]))
    return {name: hamming(original, phash(np.stack([_grey32(edit(im)) for im in images]))).diagonal()
            for name, edit in VARIANTS.items()}


def _grey32(img: Image.Image) -> np.ndarray:
    return np.asarray(img.convert("L").resize((32, 32), Image.Resampling.LANCZOS), np.float64)


def _histogram(distance: np.ndarray) -> str:
    counts = np.bincount(np.minimum(distance, BINS), minlength=BINS + 1)
    return " ".join(f"{c:4d}" for c in counts[:BINS]) + f" | >20: {counts[BINS]}"


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m bench.leakage", description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True, help="class-per-folder dataset (read only)")
    p.add_argument("--val-split", type=float, default=0.2, help="share of each class for validation")
    p.add_argument("--seed", type=int, default=0, help="first seed of the random splits and of the edit sample")
    p.add_argument("--seeds", type=int, default=3, help="random splits to measure (seeds --seed, --seed + 1, ...)")
    p.add_argument("--max-distance", type=int, default=MAX_DISTANCE, help="pHash distance counted as a near-copy")
    p.add_argument("--sample", type=int, default=200, help="images edited for the near-copy reference")
    a = p.parse_args(argv)

    files = scan_folder(a.data)
    classes = list(files)
    every = [f for c in classes for f in files[c]]
    start = time.perf_counter()
    hashes = dict(zip(every, image_hashes(every), strict=True))
    seconds = time.perf_counter() - start
    print(f"hashed {len(every)} images of {a.data} in {seconds:.2f} s ({1000 * seconds / len(every):.2f} ms/image)")

    def flat(per_class: dict[str, list[Path]]) -> list[Path]:
        return [f for c in classes for f in per_class[c]]

    splits = {}
    for seed in range(a.seed, a.seed + a.seeds):
        rtrain, rval = random_split(files, classes, a.val_split, seed)
        splits[f"random s{seed}"] = (flat(rtrain), flat(rval))
    otrain, oval = ordered_split(files, classes, a.val_split)
    splits["ordered"] = (flat(otrain), flat(oval))
    values, count = np.unique(np.array(list(hashes.values())), return_counts=True)
    shared = [[f.relative_to(a.data).as_posix() for f in every if hashes[f] == v] for v in values[count > 1]]
    print(f"{len(shared)} hash(es) shared by two or more images of the set (distance 0)"
          + (f", e.g. {' = '.join(shared[0])}" if shared else ""))
    print(f"\nvalidation = {a.val_split:.0%} of each class; near-copy = pHash distance <= {a.max_distance}; "
          f"warning above {WARN_SHARE:.0%}")
    print(f"{'split':10} {'val':>5} {'near-copies':>11} {'share':>6}   nearest-train distance histogram 0..20")
    for name, (train, val) in splits.items():
        index, distance = near_duplicates(np.array([hashes[f] for f in train]), np.array([hashes[f] for f in val]),
                                          a.max_distance)
        found = int((index >= 0).sum())
        print(f"{name:10} {len(val):5d} {found:11d} {found / len(val):6.1%}   {_histogram(distance)}")

    # Reference 1: true near-copies. Reference 2: chance matches between patients (other classes).
    rng = np.random.default_rng(a.seed)
    sample = [every[i] for i in sorted(rng.choice(len(every), size=min(a.sample, len(every)), replace=False))]
    labels = np.array([k for k, c in enumerate(classes) for _ in files[c]])
    all_hashes = np.array([hashes[f] for f in every])
    cross = np.concatenate([hamming(all_hashes[labels == k], all_hashes[labels != k]).min(axis=1)
                            for k in range(len(classes))])
    print(f"\nreferences: edits of {len(sample)} sampled images; nearest image of another class for all {len(every)}")
    print(f"{'reference':22}{'<=d':>6}   distance histogram 0..20")
    for name, d in {**_variant_distances(sample), "nearest other class": cross}.items():
        print(f"{name:22}{(d <= a.max_distance).mean():6.1%}   {_histogram(d.astype(np.int64))}")


if __name__ == "__main__":
    main()
