"""How faithful a heatmap is to the model: does the model's belief live where the map points?

The score (`keep_remove_score`) is the keep-minus-remove probability gap at 20%:

    p(target | only the top 20% of heatmap pixels kept) - p(target | those pixels removed)

"Removed" pixels are set to 0 in the normalised input, i.e. the normalisation mean colour, the
same baseline Score-CAM's masks use. The score lies in [-1, 1]: near 1 when the marked fifth of
the image carries the class on its own and the rest does not, near 0 for a map that points at
nothing in particular, negative for a map that points away from the evidence. It costs one
batched forward pass of two images. `mean_faithfulness` averages it over a labelled folder.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Iterable, Optional

import numpy as np
import torch
from torch import nn

from hub.images import is_image_file
from hub.model import labels_of

KEEP_FRACTION = 0.2


def keep_remove_score(model: nn.Module, x: torch.Tensor, heatmap: torch.Tensor, target: int,
                      fraction: float = KEEP_FRACTION) -> float:
    """p(target | top `fraction` of `heatmap` kept) - p(target | it removed); 0.0 for a flat map."""
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"fraction must be between 0 and 1, got {fraction}")
    if heatmap.shape != x.shape[-2:]:
        raise ValueError(f"heatmap {tuple(heatmap.shape)} must match the input's size {tuple(x.shape[-2:])}")
    flat = heatmap.flatten().float()
    if not bool(flat.max() > flat.min()):
        return 0.0  # nothing is ranked above anything else
    k = max(1, int(round(fraction * flat.numel())))
    keep = torch.zeros_like(flat)
    keep[flat.topk(k).indices] = 1.0
    keep = keep.view(1, 1, *heatmap.shape).to(x.device, x.dtype)
    with torch.inference_mode():
        probs = torch.softmax(model(torch.cat([x * keep, x * (1 - keep)])).float(), dim=-1)
    return float(probs[0, target] - probs[1, target])


def labelled_images(root: str | Path, labels: list[str]) -> list[tuple[Path, int]]:
    """(path, class index) for every image in `root`'s class folders, which must be labels."""
    root = Path(root)
    if not root.is_dir():
        raise ValueError(f"{root}: not a directory of class folders")
    found = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        files = sorted(f for f in folder.iterdir() if is_image_file(f))
        if not files:
            continue
        if folder.name not in labels:
            raise ValueError(f"{folder}: folder name is not one of the model's labels {labels}")
        found += [(f, labels.index(folder.name)) for f in files]
    if not found:
        raise ValueError(f"{root}: no images in class folders")
    return found


def mean_faithfulness(model: nn.Module, root: str | Path, methods: Iterable[str] = ("gradcam", "scorecam"),
                      max_images: Optional[int] = None, max_channels: Optional[int] = None,
                      labels: Optional[list[str]] = None, **options) -> dict[str, dict]:
    """Per method: mean/std of `keep_remove_score` over a class-per-folder directory (true class as target)."""
    from hub.explain import explain  # hub.explain imports this module: import at call time

    labels = list(labels) if labels is not None else labels_of(model)
    items = labelled_images(root, labels)
    if max_images is not None and max_images < len(items):
        # Evenly spaced over the class-sorted list: deterministic and spread over every class.
        items = [items[i] for i in np.linspace(0, len(items) - 1, max_images).round().astype(int)]
    out = {}
    for method in methods:
        runs = [explain(model, path, method=method, target=label, max_channels=max_channels,
                        labels=labels, **options) for path, label in items]
        scores = np.array([r.faithfulness for r in runs], np.float64)
        out[method] = {"mean": float(scores.mean()), "std": float(scores.std()), "images": len(runs),
                       "mode": runs[0].mode, "channels": max(r.channels for r in runs),
                       "seconds": float(np.mean([r.seconds for r in runs]))}
    if any(math.isnan(v["mean"]) for v in out.values()):
        raise ValueError("faithfulness was switched off (faithfulness=False); nothing to average")
    return out
