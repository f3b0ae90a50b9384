"""Resumable checkpoints, kept in OUT/checkpoints/, apart from the published model files.

Written atomically by `hub.files.write_atomic` (temp file in the same folder, fsync, rename), so a
run killed at any moment leaves either the previous checkpoint or the new one. Read with
`torch.load(weights_only=True)`: plain tensors and containers only, never arbitrary pickled objects.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from hub.files import stale_temp_files, write_atomic

CHECKPOINT_DIR = "checkpoints"
LAST = "last.pt"
BEST = "best.safetensors"


def save_state(folder: Path, state: dict[str, Any]) -> Path:
    """The training state after an epoch (model, optimiser, scheduler, history, counters)."""
    return write_atomic(folder / CHECKPOINT_DIR / LAST, lambda tmp: torch.save(state, tmp), fsync=True)


def save_best(folder: Path, model_state: dict[str, torch.Tensor]) -> Path:
    """Weights of the best epoch so far."""
    tensors = {k: v.detach().cpu().contiguous() for k, v in model_state.items()}
    return write_atomic(folder / CHECKPOINT_DIR / BEST, lambda tmp: save_file(tensors, str(tmp)), fsync=True)


def remove_stale(folder: Path) -> list[Path]:
    """Delete temp files a killed run left half-written (never the checkpoints themselves)."""
    stale = [p for name in (LAST, BEST) for p in stale_temp_files(folder / CHECKPOINT_DIR / name)]
    for p in stale:
        p.unlink(missing_ok=True)
    return stale


def load_state(folder: Path) -> dict[str, Any] | None:
    """The last saved training state, or None when there is none."""
    remove_stale(folder)
    path = folder / CHECKPOINT_DIR / LAST
    if not path.is_file():
        return None
    return torch.load(path, map_location="cpu", weights_only=True)


def load_best(folder: Path) -> dict[str, torch.Tensor] | None:
    """Weights of the best epoch, or None."""
    path = folder / CHECKPOINT_DIR / BEST
    return load_file(str(path)) if path.is_file() else None
