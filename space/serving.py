"""What the app serves and how: one model loaded at start-up (or the reason it could not be), its
device and precision, the Score-CAM mode, and the ZeroGPU wrapper.

Loading never raises: a Space whose model is missing must still start and say why, so the error
text is kept in `Served.error` and every endpoint reports it (see `handlers.require`).
"""
from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Optional

from hub.classifier import Classifier
from hub.device import autocast as device_autocast
from hub.device import autocast_dtype
from hub.errors import ModelLoadError
from hub.explain.cam import MaxChannels, resolve_max_channels
from hub.loading import from_pretrained, is_repo_id, split_revision

# ZeroGPU time slots (seconds) per call: Grad-CAM and classification are quick, exact Score-CAM is not.
GPU_SECONDS = {"fast": 30, "slow": 120}


@dataclass(frozen=True)
class Served:
    """The model the app serves, or why there is none."""

    source: str                             # repo id or local folder, as configured
    revision: Optional[str]                 # tag / branch / commit asked for (None for a folder)
    classifier: Optional[Classifier] = None
    error: Optional[str] = None             # plain message when the model could not be loaded
    max_channels: MaxChannels = "exact"     # Score-CAM's k as resolved for the device: k, or "exact"

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


def load(source: str, revision: Optional[str] = None, device: str = "auto",
         max_channels: MaxChannels = "auto") -> Served:
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
    k = resolve_max_channels(max_channels, classifier.device)
    return Served(source, (rev or "main") if is_repo_id(source) else None, classifier,
                  max_channels="exact" if k is None else k)


def autocast(classifier: Classifier) -> contextlib.AbstractContextManager:
    """bf16 (else fp16) autocast for inference on CUDA; nothing on CPU (it would change answers for little gain)."""
    device = classifier.device
    return device_autocast(device, autocast_dtype(device) if device.type == "cuda" else None)


def on_gpu(fn: Callable, seconds: int = GPU_SECONDS["fast"]) -> Callable:
    """`spaces.GPU(fn)` on Hugging Face ZeroGPU hardware (when `spaces` is importable), else `fn`."""
    try:
        import spaces
    except ImportError:
        return fn
    return spaces.GPU(duration=seconds)(fn)
