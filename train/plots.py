"""Figures of a finished run: confusion matrix, ROC curves, learning curves (PNG files).

matplotlib's object API with the Agg canvas: no pyplot global state, safe off the main thread.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from train.metrics import roc_curves


def _save(fig: Figure, path: Path) -> Path:
    FigureCanvasAgg(fig)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    return path


def plot_confusion_matrix(cm: Sequence[Sequence[int]], labels: Sequence[str], path: Path, title: str) -> Path:
    """Counts, with each cell also shown as a share of its true class."""
    cm = np.asarray(cm)
    share = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    size = 2.2 + 0.9 * len(labels)
    fig = Figure(figsize=(size + 1, size))
    ax = fig.add_subplot()
    im = ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="share of true class")
    ax.set(xticks=range(len(labels)), yticks=range(len(labels)), xlabel="predicted", ylabel="true", title=title)
    ax.set_xticklabels(labels, rotation=45, ha="right")
    ax.set_yticklabels(labels)
    for i in range(cm.shape[0]):
        for j in range(cm.shape[1]):
            ax.text(j, i, f"{cm[i, j]}\n{share[i, j]:.0%}", ha="center", va="center", fontsize=8,
                    color="white" if share[i, j] > 0.5 else "black")
    return _save(fig, path)


def plot_roc(y_true: np.ndarray, y_prob: np.ndarray, labels: Sequence[str], path: Path, title: str) -> Path:
    """One-vs-rest ROC per class plus the macro-average curve (mean TPR on a common FPR grid)."""
    fig = Figure(figsize=(5.5, 5))
    ax = fig.add_subplot()
    grid = np.linspace(0, 1, 201)
    tprs, aucs = [], []
    for label, curve in zip(labels, roc_curves(np.asarray(y_true), np.asarray(y_prob))):
        if curve is None:
            continue
        fpr, tpr = curve
        auc = float(np.trapezoid(tpr, fpr))
        aucs.append(auc)
        tprs.append(np.interp(grid, fpr, tpr))
        ax.plot(fpr, tpr, lw=1.5, label=f"{label} (AUC {auc:.3f})")
    if tprs:
        ax.plot(grid, np.mean(tprs, axis=0), "k--", lw=2, label=f"macro (AUC {np.mean(aucs):.3f})")
    ax.plot([0, 1], [0, 1], color="grey", lw=0.8, ls=":")
    ax.set(xlim=(0, 1), ylim=(0, 1.01), xlabel="false positive rate", ylabel="true positive rate", title=title)
    ax.legend(loc="lower right", fontsize=8)
    return _save(fig, path)


def plot_curves(history: Sequence[dict], path: Path) -> Path:
    """Loss and accuracy per epoch, train vs validation (train alone for a final fit without validation)."""
    epochs = [h["epoch"] for h in history]
    fig = Figure(figsize=(10, 4))
    for i, (key, name) in enumerate((("loss", "loss"), ("acc", "accuracy"))):
        ax = fig.add_subplot(1, 2, i + 1)
        ax.plot(epochs, [h[f"train_{key}"] for h in history], "o-", label="train")
        if any(h[f"val_{key}"] is not None for h in history):
            ax.plot(epochs, [h[f"val_{key}"] for h in history], "o-", label="validation")
        ax.set(xlabel="epoch", ylabel=name, title=name)
        ax.grid(alpha=0.3)
        ax.legend()
    return _save(fig, path)
