"""The floor of the shortcut check: how much of the class the region's place and size alone give away.

    predicted = place_predictions(reference, queries, mirror=True)   # class index per query region

Hiding a lesion by inpainting removes what it looks like, not where it was: a smooth patch at the sella still says
"pituitary". So "lesion hidden" cannot fall to chance when the classes sit in different places; it can fall to
what a classifier that knows only the region's place and size gets. This is that classifier: k nearest neighbours
(k = 15) among the training images' regions, on (centre x, centre y, width, height) as fractions of the image,
each standardised on the reference regions. `mirror` folds centre x onto its distance from the middle, for a model
trained with horizontal flips (it cannot tell left from right, so neither should its floor).

Measured on the MRI validation block (294 slices, the 1,667 training slices' boxes as reference): 0.684 accuracy
from the box alone (k = 5, 15, 31: 0.626, 0.684, 0.687; the majority class is 0.466), where the guided 160 px model
scored 0.735 with the lesion hidden (docs/lesion-mri.md).
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from hub.annotations import Annotations, Region

K = 15
GRID = (64, 64)   # a mask region is measured on this grid: its place to 1/64 of the image is plenty


def features(region: Region, mirror: bool) -> np.ndarray:
    """(centre x, centre y, width, height) of the region's bounding extent, as fractions of the image."""
    if region.pixels is None and region.boxes:
        b = np.asarray(region.boxes, np.float64)
        x0, y0, x1, y1 = b[:, 0].min(), b[:, 1].min(), b[:, 2].max(), b[:, 3].max()
    else:
        ys, xs = np.nonzero(region.mask(GRID))
        x0, x1 = xs.min() / GRID[1], (xs.max() + 1) / GRID[1]
        y0, y1 = ys.min() / GRID[0], (ys.max() + 1) / GRID[0]
    cx = (x0 + x1) / 2
    return np.array([abs(cx - 0.5) if mirror else cx, (y0 + y1) / 2, x1 - x0, y1 - y0])


def place_predictions(reference: Sequence[tuple[Region, int]], queries: Sequence[Region], mirror: bool = False,
                      k: int = K) -> np.ndarray:
    """The majority class of each query region's k nearest reference regions (ties: the lower class index)."""
    if not reference:
        raise ValueError("place_predictions needs reference regions (the training images' annotations)")
    ref = np.stack([features(r, mirror) for r, _ in reference])
    labels = np.asarray([c for _, c in reference])
    if not queries:
        return np.zeros(0, dtype=np.int64)
    q = np.stack([features(r, mirror) for r in queries])
    scale = ref.std(axis=0)
    scale[scale == 0] = 1.0   # a feature every reference region shares tells nothing: leave it unscaled
    mu = ref.mean(axis=0)
    d = ((((q - mu) / scale)[:, None, :] - ((ref - mu) / scale)[None]) ** 2).sum(-1)
    nearest = np.argsort(d, axis=1, kind="stable")[:, :min(k, len(ref))]
    n_classes = int(labels.max()) + 1
    return np.asarray([np.bincount(labels[row], minlength=n_classes).argmax() for row in nearest])


def place_by_path(reference: Sequence[tuple[Region, int]], annotations: Annotations, paths: Sequence[Path],
                  mirror: bool = False) -> dict[Path, int]:
    """Image path -> the class its region's place alone predicts, for each of `paths` (all annotated)."""
    return dict(zip(paths, place_predictions(reference, [annotations.get(p) for p in paths], mirror).tolist()))
