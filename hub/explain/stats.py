"""Statistics of maps and scores: rank correlation, SSIM and bootstrap intervals.

numpy and torch only: the Space ships `hub/` without scipy or scikit-image. Ties in a map (a
ReLU'd CAM is 0 over much of the image) get average ranks, as in `scipy.stats.spearmanr`.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

# SSIM as Wang et al. (2004) define it: an 11-tap Gaussian window, sigma 1.5, data range 1.
SSIM_WINDOW, SSIM_SIGMA, SSIM_C1, SSIM_C2 = 11, 1.5, 0.01 ** 2, 0.03 ** 2


def ranks(values: np.ndarray) -> np.ndarray:
    """0-based ranks of the flattened values, ties given their average rank."""
    flat = np.ravel(values)
    order = np.argsort(flat, kind="stable")
    _, first, counts = np.unique(flat[order], return_index=True, return_counts=True)
    out = np.empty(flat.size, np.float64)
    out[order] = np.repeat(first + (counts - 1) / 2.0, counts)
    return out


def rank_correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's rho of two maps of one shape; 0.0 when either is flat (it ranks nothing)."""
    ra, rb = ranks(np.asarray(a, np.float64)), ranks(np.asarray(b, np.float64))
    if ra.std() == 0 or rb.std() == 0:
        return 0.0
    return float(np.corrcoef(ra, rb)[0, 1])


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    """Mean structural similarity of two [0, 1] maps of one shape (1 = identical)."""
    x = torch.as_tensor(np.asarray(a, np.float32))[None, None]
    y = torch.as_tensor(np.asarray(b, np.float32))[None, None]
    size = min(SSIM_WINDOW, *x.shape[-2:])
    taps = torch.exp(-((torch.arange(size) - (size - 1) / 2) ** 2) / (2 * SSIM_SIGMA ** 2))
    window = (taps[:, None] * taps[None]) / taps.sum() ** 2
    mean = lambda t: F.conv2d(t, window[None, None])  # noqa: E731 (valid windows only, as the paper)
    mx, my = mean(x), mean(y)
    vx, vy, cov = mean(x * x) - mx ** 2, mean(y * y) - my ** 2, mean(x * y) - mx * my
    s = ((2 * mx * my + SSIM_C1) * (2 * cov + SSIM_C2)) / ((mx ** 2 + my ** 2 + SSIM_C1) * (vx + vy + SSIM_C2))
    return float(s.mean())


def bootstrap_interval(values, confidence: float = 0.95, resamples: int = 2000, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of `values` (seeded, so a report is reproducible)."""
    v = np.asarray(values, np.float64)
    if v.size == 0:
        raise ValueError("no values to bootstrap")
    means = v[np.random.default_rng(seed).integers(0, v.size, (resamples, v.size))].mean(axis=1)
    tail = (1.0 - confidence) / 2.0 * 100.0
    low, high = np.percentile(means, [tail, 100.0 - tail])
    return float(low), float(high)


def interval(values) -> dict[str, float]:
    """Mean and bootstrap 95% interval, rounded for a report: {"mean", "low", "high"}."""
    low, high = bootstrap_interval(values)
    return {"mean": round(float(np.mean(values)), 6), "low": round(low, 6), "high": round(high, 6)}
