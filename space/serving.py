"""What the app serves and how: one model loaded at start-up (or the reason it could not be), its
device and precision, the Score-CAM mode, and the ZeroGPU wrapper.

Loading never raises: a Space whose model is missing must still start and say why, so the error
text is kept in `Served.error` and every endpoint reports it (see `handlers.require`).
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Callable, Optional

import torch

from hub.cam import default_max_channels
from hub.classifier import Classifier
from hub.loading import from_pretrained, is_repo_id, split_revision
from hub.model import ModelLoadError

# ZeroGPU time slots (seconds) per call: Grad-CAM and classification are quick, exact Score-CAM is not.
GPU_SECONDS = {"fast": 30, "slow": 120}


@dataclass(frozen=True)
class Served:
    """The model the app serves, or why there is none."""

    source: str                             # repo id or local folder, as configured
    revision: Optional[str]                 # tag / branch / commit asked for (None for a folder)
    classifier: Optional[Classifier] = None
    error: Optional[str] = None             # plain message when the model could not be loaded
    scorecam_channels: Optional[int] = None  # k for fast Score-CAM; None runs exact Score-CAM

    @property
    def ready(self) -> bool:
        """True when a model is loaded."""
        return self.classifier is not None

    @property
    def is_hub(self) -> bool:
        """True for a Hub repo id, False for a local folder."""
        return is_repo_id(self.source)

    @property
    def commit(self) -> Optional[str]:
        """The 40-hex commit actually served (Hub sources only)."""
        return self.classifier.commit if self.classifier is not None else None

    @property
    def labels(self) -> list[str]:
        """Class names from the model's config.json (empty when nothing is loaded)."""
        return list(self.classifier.labels) if self.classifier is not None else []


def default_channels(device: torch.device) -> Optional[int]:
    """k for fast Score-CAM on CPU; None (exact) on CUDA: the library's choice, shared with `hub explain`."""
    return default_max_channels(device)


def load(source: str, revision: Optional[str] = None, device: str = "auto",
         scorecam_channels: Optional[int] | str = "auto") -> Served:
    """Load `source@revision` as a Served model; any failure becomes `Served.error`, never an exception."""
    source, rev = source.strip(), (revision or "").strip() or None
    try:
        source, rev = split_revision(source, rev)
        if not is_repo_id(source) and rev == "main":
            rev = None  # MODEL_REVISION defaults to main; a local folder has no revisions
        if not source:
            raise ModelLoadError("no model given: set MODEL_ID (a Hub repo id or a model folder) or pass --model")
        classifier = from_pretrained(source, revision=rev, device=device)
    except ModelLoadError as exc:
        return Served(source, rev, error=str(exc))
    except Exception as exc:  # noqa: BLE001 - the app must start and show any load failure
        return Served(source, rev, error=f"{type(exc).__name__}: {exc}")
    if scorecam_channels == "auto":
        scorecam_channels = default_channels(classifier.device)
    return Served(source, (rev or "main") if is_repo_id(source) else None, classifier,
                  scorecam_channels=scorecam_channels or None)


def autocast(classifier: Classifier) -> contextlib.AbstractContextManager:
    """bf16 (else fp16) autocast for inference on CUDA; nothing on CPU, where it would be slower."""
    if classifier.device.type != "cuda":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.autocast("cuda", dtype=dtype)


def on_gpu(fn: Callable, seconds: int = GPU_SECONDS["fast"]) -> Callable:
    """`spaces.GPU(fn)` on Hugging Face ZeroGPU hardware (when `spaces` is importable), else `fn`."""
    try:
        import spaces
    except ImportError:
        return fn
    return spaces.GPU(duration=seconds)(fn)
