"""How faithful a heatmap is to the model: does the model's belief live where the map points?

    figures = measure(model, x, heatmap, target)     # heatmap at x's size, in [0, 1]
    figures["deletion"], figures["insertion"], figures["beats_baselines"]

Deletion: remove the pixels in heatmap order, most important first, in `steps` equal steps, and
follow p(target); its area (in [0, 1]) is low when the map found the evidence. Insertion: start
from an image with every pixel removed and reveal them in the same order; its area is high when
the map found the evidence. Removed pixels are imputed (`hub.explain.imputation`), so that the
hole's outline tells the model nothing. The same two curves are measured on the same image for
two maps that know nothing of the model: a random map (smoothed noise, fixed seed) and a centred
Gaussian. A map beats a baseline when its insertion - deletion gap is larger.

With a rival class (a contrastive target "A rather than B") the followed probability is
p(A | A or B) = sigmoid(logit A - logit B), the quantity the contrastive map explains.

`keep_remove_score` (the former headline, still reported): p(target | top 20% kept) -
p(target | it removed), with removed pixels set to the mean colour; the mask's shape leaks there.
"""
from __future__ import annotations

import math
from typing import Any, Optional

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from hub.device import autocast
from hub.explain.imputation import check_imputation, impute
from hub.explain.stats import rank_correlation

KEEP_FRACTION = 0.2
STEPS = 10
# Which fill leaks least, measured two ways:
# - removed evidence that survives (python -m bench.faithfulness leak): ResNet50 trained on the synthetic set
#   (128 px), 30 held-out images, the pattern's own pixels removed: p(true class) 0.99 -> constant 0.333,
#   blur 0.439, linear 0.335 (chance 0.333): the blur keeps the pattern's tint. (A hole shaped like another
#   class's pattern raised that class by <= 0.002 with any fill: this model reads tint, not shape.)
# - the hole's shape alone (tests/test_faithfulness.py): a model reading the fine detail of one region, a flat
#   image, 20% of its pixels removed in a scattered pattern: p(class) 0.0003 -> constant 0.08, blur and
#   linear 0.0003: the constant fill draws the holes' edges.
# Only the linear fill leaks in neither.
IMPUTATION = "linear"
BASELINES = ("random", "centre")
BATCH = 16               # imputed inputs per forward pass: bounds the memory of one chunk
RANDOM_CELL = 32         # random baseline: noise on a grid of this many pixels per cell (ResNet's stride)
CENTRE_SIGMA = 0.25      # centred baseline: Gaussian with this std, as a share of each side
TOP_SHARE = 0.2          # agreement: overlap of the maps' top 20%

Figures = dict[str, Any]  # JSON-ready: floats, lists, bools


def check_steps(steps: int, name: str = "steps") -> int:
    """`steps` as an int >= 2 (a curve needs a point between 'nothing' and 'everything'); errors say `name`."""
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 2:
        raise ValueError(f"{name} must be a whole number of at least 2 (e.g. {STEPS}), got {steps!r}")
    return int(steps)


def target_probability(logits: torch.Tensor, target: int, rival: Optional[int] = None) -> torch.Tensor:
    """p(target) per row of `logits`; with a rival, p(target | target or rival) = sigmoid(difference)."""
    logits = logits.float()
    if rival is None:
        return torch.softmax(logits, dim=-1)[:, target]
    return torch.sigmoid(logits[:, target] - logits[:, rival])


def random_map(size: tuple[int, int], seed: int = 0) -> torch.Tensor:
    """Smoothed noise at `size` (H, W), in [0, 1]: blobs about one CAM cell wide, the same for a seed."""
    cells = (max(2, math.ceil(size[0] / RANDOM_CELL)), max(2, math.ceil(size[1] / RANDOM_CELL)))
    noise = torch.rand(cells, generator=torch.Generator().manual_seed(seed))
    up = F.interpolate(noise[None, None], size=size, mode="bicubic", align_corners=False)[0, 0]
    return (up - up.min()) / (up.max() - up.min())


def centre_map(size: tuple[int, int]) -> torch.Tensor:
    """A Gaussian centred on the image (std CENTRE_SIGMA of each side), in [0, 1]."""
    rows = ((torch.arange(size[0]) + 0.5) / size[0] - 0.5) / CENTRE_SIGMA
    cols = ((torch.arange(size[1]) + 0.5) / size[1] - 0.5) / CENTRE_SIGMA
    return torch.exp(-0.5 * (rows[:, None] ** 2 + cols[None] ** 2))


def ranking(heatmap: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """Each pixel's rank in the map (0 = most important); ties in a seeded random order, never raster order."""
    flat = heatmap.flatten().float().cpu()
    shuffle = torch.randperm(flat.numel(), generator=torch.Generator().manual_seed(seed))
    order = shuffle[torch.argsort(flat[shuffle], descending=True, stable=True)]
    rank = torch.empty_like(order)
    rank[order] = torch.arange(order.numel())
    return rank.view(heatmap.shape)


def area(curve: list[float]) -> float:
    """Trapezoid area under a curve sampled at equally spaced fractions 0..1."""
    return float(np.trapezoid(curve, dx=1.0 / (len(curve) - 1)))


def probabilities(model: nn.Module, x: torch.Tensor, keep: torch.Tensor, how: str, target: int,
                  rival: Optional[int], seed: int, batch: int, dtype: Optional[torch.dtype]) -> torch.Tensor:
    """p(target) of `x` with each Nx1xHxW `keep` mask applied (removed pixels imputed by `how`), batched."""
    out = []
    with torch.inference_mode():
        for chunk in keep.split(batch):
            inputs = impute(x, chunk.to(x.device), how, seed).contiguous(memory_format=torch.channels_last)
            with autocast(x.device, dtype):
                out.append(target_probability(model(inputs), target, rival))
    return torch.cat(out).cpu()


def curves(model: nn.Module, x: torch.Tensor, maps: dict[str, torch.Tensor], target: int,
           rival: Optional[int] = None, steps: int = STEPS, imputation: str = IMPUTATION, seed: int = 0,
           batch: int = BATCH, dtype: Optional[torch.dtype] = None) -> dict[str, Figures]:
    """Deletion and insertion curves and areas of every map: 2 * (steps - 1) inputs per map, plus 2 shared."""
    steps, how = check_steps(steps), check_imputation(imputation)
    size = tuple(x.shape[-2:])
    counts = [round(i * size[0] * size[1] / steps) for i in range(1, steps)]
    keeps = [torch.ones(size, dtype=torch.bool), torch.zeros(size, dtype=torch.bool)]
    for heatmap in maps.values():
        if tuple(heatmap.shape) != size:
            raise ValueError(f"heatmap {tuple(heatmap.shape)} must match the input's size {size}")
        rank = ranking(heatmap, seed)
        keeps += [rank >= k for k in counts] + [rank < k for k in counts]  # deletion, then insertion
    p = probabilities(model, x, torch.stack(keeps)[:, None], how, target, rival, seed, batch, dtype).tolist()
    whole, nothing, inner = p[0], p[1], len(counts)
    out = {}
    for i, name in enumerate(maps):
        start = 2 + 2 * inner * i
        deletion = [whole, *p[start:start + inner], nothing]
        insertion = [nothing, *p[start + inner:start + 2 * inner], whole]
        out[name] = {"deletion": area(deletion), "insertion": area(insertion),
                     "curves": {"deletion": deletion, "insertion": insertion}}
    return out


def keep_remove_scores(model: nn.Module, x: torch.Tensor, maps: list[torch.Tensor], target: int,
                       rival: Optional[int] = None, fraction: float = KEEP_FRACTION,
                       dtype: Optional[torch.dtype] = None) -> list[float]:
    """`keep_remove_score` of several maps in one batched pass (0.0 for a flat map)."""
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"fraction must be between 0 and 1, got {fraction}")
    keeps = []
    for heatmap in maps:
        if heatmap.shape != x.shape[-2:]:
            raise ValueError(f"heatmap {tuple(heatmap.shape)} must match the input's size {tuple(x.shape[-2:])}")
        top = ranking(heatmap) < max(1, round(fraction * heatmap.numel()))
        keeps += [top, ~top]
    p = probabilities(model, x, torch.stack(keeps)[:, None], "constant", target, rival, 0, BATCH, dtype)
    flat = [not bool(m.max() > m.min()) for m in maps]  # nothing is ranked above anything else
    return [0.0 if f else float(p[2 * i] - p[2 * i + 1]) for i, f in enumerate(flat)]


def keep_remove_score(model: nn.Module, x: torch.Tensor, heatmap: torch.Tensor, target: int,
                      fraction: float = KEEP_FRACTION, rival: Optional[int] = None) -> float:
    """p(target | top `fraction` of `heatmap` kept) - p(target | it removed); 0.0 for a flat map."""
    return keep_remove_scores(model, x, [heatmap], target, rival, fraction)[0]


def forward_passes(steps: int = STEPS) -> int:
    """Inputs `measure` runs: both curves of the map and of each baseline, their shared ends, keep-remove of each."""
    maps = 1 + len(BASELINES)
    return 2 + 2 * (check_steps(steps) - 1) * maps + 2 * maps


def gap(scores: Figures) -> float:
    """Insertion minus deletion area: the one number a map and its baselines are ranked by."""
    return scores["insertion"] - scores["deletion"]


def measure(model: nn.Module, x: torch.Tensor, heatmap: torch.Tensor, target: int,
                 rival: Optional[int] = None, steps: int = STEPS, imputation: str = IMPUTATION, seed: int = 0,
                 dtype: Optional[torch.dtype] = None) -> Figures:
    """Deletion, insertion and keep-remove of `heatmap` and of both baselines, and whether the map beats them."""
    size = tuple(x.shape[-2:])
    maps = {"map": heatmap.to(torch.float32).cpu(), "random": random_map(size, seed), "centre": centre_map(size)}
    figures = curves(model, x, maps, target, rival, steps, imputation, seed, dtype=dtype)
    for name, score in zip(maps, keep_remove_scores(model, x, list(maps.values()), target, rival, dtype=dtype)):
        figures[name]["keep_remove"] = score
    beats = {name: gap(figures["map"]) > gap(figures[name]) for name in BASELINES}
    return {**figures["map"], "baselines": {name: figures[name] for name in BASELINES}, "beats": beats,
            "beats_baselines": all(beats.values()), "steps": check_steps(steps), "imputation": imputation}


def agreement(a: np.ndarray, b: np.ndarray, share: float = TOP_SHARE) -> dict[str, float]:
    """How much two maps of one image agree: Spearman's rho and the overlap of their top `share` of pixels."""
    a, b = np.asarray(a, np.float32), np.asarray(b, np.float32)
    if a.shape != b.shape:
        raise ValueError(f"maps of different shapes {a.shape} and {b.shape}")
    k = max(1, round(share * a.size))
    top_a = ranking(torch.from_numpy(a)).flatten() < k
    top_b = ranking(torch.from_numpy(b)).flatten() < k
    return {"rank_correlation": rank_correlation(a, b), "top_overlap": float((top_a & top_b).sum()) / k}
