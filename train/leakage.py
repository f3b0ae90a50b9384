"""Near-duplicate check between splits: does validation (or test) hold near-copies of training images?

Neighbouring MRI slices of one patient, or patches of one slide, look almost alike; when a split
puts them on both sides, validation scores measure memory, not generalisation. Each image gets a
64-bit perceptual hash (pHash: greyscale, 32x32, 2-D DCT, the 8x8 lowest frequencies after the
DC row and column, thresholded at their median), and every val/test image is compared with every
training image by Hamming distance. numpy and scipy only; no image-hash library needed.

Defaults, measured with `python -m bench.leakage` on the 2,451 figshare brain MRI slices, 20% of
each class to validation (table in docs-splits.md). Distances are (almost always) even: a hash has 32 ones.
- Pixel-value edits of a slice (JPEG re-save q75, brightness +10%, contrast +20%, blur r=2):
  distance 0-4 for 200 of 200 images each (pHash does not survive crops or rotations).
- Nearest image of another class (another patient for sure, so a chance match): 0.3% of images
  at <= 4, 1.6% at <= 6, 5.8% at <= 8.
- Validation images with a near-copy in train at <= 4: random split 15.9-18.2% (seeds 0-2),
  ordered split (last 20% of file numbers per class) 0.2%, the one slice next to the last training
  slice of its patient. At <= 6: 35-38% vs 2.9%, most of the ordered ones chance matches.
So MAX_DISTANCE = 4 covers every pixel-value edit while chance matches stay at 0.3%, and
WARN_SHARE = 0.05 sits over 15x above the chance rate and 3x below what a random split of this set shows.
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image
from scipy.fft import dctn

from hub.images import load_image

MAX_DISTANCE = 4
WARN_SHARE = 0.05
EXAMPLES = 5
_HASH_SIDE, _BLOCK = 32, 8
_PAIRS_PER_CHUNK = 4_000_000  # bounds each (other, train) distance matrix: 4 MB of uint8


def _pixels(path: Path) -> np.ndarray:
    """The image as 32x32 float greyscale (antialiased resize)."""
    grey = load_image(path).convert("L").resize((_HASH_SIDE, _HASH_SIDE), Image.Resampling.LANCZOS)
    return np.asarray(grey, dtype=np.float64)


def phash(pixels: np.ndarray) -> np.ndarray:
    """64-bit pHash of each 32x32 greyscale array in an (N, 32, 32) stack, as uint64."""
    freq = dctn(pixels, type=2, axes=(1, 2), norm="ortho")[:, 1:_BLOCK + 1, 1:_BLOCK + 1].reshape(len(pixels), -1)
    bits = freq > np.median(freq, axis=1, keepdims=True)
    return np.packbits(bits, axis=1).view(">u8")[:, 0].astype(np.uint64)


def image_hashes(paths: Sequence[Path], workers: int = 4) -> np.ndarray:
    """pHash of every image file (any format `load_image` reads), as a uint64 array."""
    if not paths:
        return np.zeros(0, dtype=np.uint64)
    # Decoding and resizing release the GIL, so threads give real parallelism here.
    with ThreadPoolExecutor(max_workers=max(1, min(workers, os.cpu_count() or 1))) as pool:
        stack = np.stack(list(pool.map(_pixels, paths)))
    return phash(stack)


def hamming(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise Hamming distances (len(a), len(b)) between two arrays of uint64 hashes."""
    return np.bitwise_count(np.asarray(a, np.uint64)[:, None] ^ np.asarray(b, np.uint64)[None, :])


def near_duplicates(train_hashes: np.ndarray, other_hashes: np.ndarray,
                    max_distance: int = MAX_DISTANCE) -> tuple[np.ndarray, np.ndarray]:
    """Per other image: index of its nearest train image (-1 if farther than max_distance), and that distance."""
    if len(train_hashes) == 0:
        raise ValueError("no training hashes to compare with")
    index = np.empty(len(other_hashes), dtype=np.int64)
    distance = np.empty(len(other_hashes), dtype=np.int64)
    step = max(1, _PAIRS_PER_CHUNK // len(train_hashes))
    for start in range(0, len(other_hashes), step):
        d = hamming(other_hashes[start:start + step], train_hashes)
        index[start:start + step] = d.argmin(axis=1)
        distance[start:start + step] = d.min(axis=1)
    index[distance > max_distance] = -1
    return index, distance


def leakage_report(splits: dict[str, Sequence[Path]], max_distance: int = MAX_DISTANCE,
                   warn_share: float = WARN_SHARE) -> dict:
    """Near-copies in 'train' of each other split's images: counts, share, examples, a warning above warn_share."""
    absolute = {name: [Path(os.path.abspath(p)) for p in ps] for name, ps in splits.items()}
    every = [p.parent for ps in absolute.values() for p in ps]
    root = os.path.commonpath(every) if every else "/"  # examples show paths relative to this, nothing else
    train = absolute["train"]
    train_hashes = image_hashes(train)
    report: dict = {"hash": "phash-64", "max_distance": max_distance, "warn_share": warn_share}
    for name, others in absolute.items():
        if name == "train" or not others:
            continue
        index, distance = near_duplicates(train_hashes, image_hashes(others), max_distance)
        found = np.flatnonzero(index >= 0)
        found = found[np.argsort(distance[found], kind="stable")]  # closest pairs first
        share = len(found) / len(others)
        examples = [{name: others[i].relative_to(root).as_posix(),
                     "train": train[index[i]].relative_to(root).as_posix(), "distance": int(distance[i])}
                    for i in found[:EXAMPLES]]
        warning = None
        if share > warn_share:
            warning = (f"{len(found)} of {len(others)} {name} images ({share:.0%}) have a near-copy in train "
                       f"(pHash distance <= {max_distance}), e.g. {examples[0][name]} ~ {examples[0]['train']}: "
                       f"images of one patient are probably on both sides, so {name} scores are optimistic; "
                       "split by patient (groups) or by contiguous file numbers instead")
        report[name] = {"n": len(others), "near_duplicates": len(found), "share": share,
                        "examples": examples, "warning": warning}
    return report
