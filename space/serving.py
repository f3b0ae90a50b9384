"""What the app serves and how: one model loaded at start-up (or the reason it could not be), its
device and precision, the Score-CAM mode, and the ZeroGPU wrapper.

Loading never raises: a Space whose model is missing must still start and say why, so the error
text is kept in `Served.error` and every endpoint reports it (see `handlers.require`).
"""
from __future__ import annotations

import contextlib
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Optional

from hub.classifier import Classifier
from hub.device import autocast as device_autocast
from hub.device import autocast_dtype
from hub.errors import ModelLoadError, UserError
from hub.explain import faithfulness
from hub.explain.cam import MaxChannels, Passes, resolve_max_channels
from hub.loading import from_pretrained, is_repo_id, split_revision

# ZeroGPU (half an NVIDIA RTX Pro 6000 Blackwell, 48 GB, per call) schedules a call only while the
# visitor's remaining daily quota covers the duration the call asks for (2 minutes a day without an
# account, 5 with a free one, 40 with PRO), and shorter asks queue first. So each call asks for what
# its own work needs: a start-up cost, its forward passes scaled by the model's input size, and the
# drawing of the heatmap at the image's size; `gpu_seconds` adds them up. None of these was measured on
# ZeroGPU itself: they are estimates with a margin.
GPU_START_SECONDS = 5.0      # scheduling, and the weights moved onto a freshly attached GPU
GPU_PASS_SECONDS = 0.002     # one ResNet50 forward pass of a 224 px image in a batch: several times what an
                             # A100-class GPU (as half an RTX Pro 6000 Blackwell roughly is) takes
DRAW_SECONDS_PER_MEGAPIXEL = 0.5   # resizing, colouring and blending the heatmap (CPU work inside the call)
GPU_MAX_SECONDS = 60         # ZeroGPU's default duration; nothing here needs more
REFERENCE_PIXELS = 224 * 224
FAITHFULNESS_PASSES = faithfulness.forward_passes()  # the figures of each explanation: 62 at 10 steps


@dataclass(frozen=True)
class Served:
    """The model the app serves, or why there is none."""

    source: str                             # repo id or local folder, as configured
    revision: Optional[str]                 # tag / branch / commit asked for (None for a folder)
    classifier: Optional[Classifier] = None
    error: Optional[str] = None             # plain message when the model could not be loaded
    max_channels: Passes = "exact"          # Score-CAM's k as resolved for the device: k, or "exact"

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
    return Served(source, (rev or "main") if is_repo_id(source) else None, classifier,
                  max_channels=resolve_max_channels(max_channels, classifier.device))


def autocast(classifier: Classifier) -> contextlib.AbstractContextManager:
    """bf16 (else fp16) autocast for inference on CUDA; nothing on CPU (it would change answers for little gain)."""
    device = classifier.device
    return device_autocast(device, autocast_dtype(device) if device.type == "cuda" else None)


def forward_passes(served: Served, method: str, images: int = 1) -> int:
    """Forward passes of one call: a batch of `images` to classify, one map (a CAM tab's first step), the
    faithfulness figures of one map (its second step), or Compare (both maps with their figures)."""
    if method == "classify":
        return images
    if method == "gradcam":  # the backward pass runs through the head only: negligible
        return 1
    if method == "scorecam":
        k = served.max_channels
        return 1 + (served.classifier.model.num_features if k == "exact" else int(k))
    if method == "faithfulness":
        return FAITHFULNESS_PASSES
    if method == "compare":
        return forward_passes(served, "gradcam") + forward_passes(served, "scorecam") + 2 * FAITHFULNESS_PASSES
    raise ValueError(f"unknown method {method!r}")


def gpu_seconds(served: Served, method: str, image_size: tuple[int, int], images: int = 1) -> int:
    """Seconds of GPU a call asks ZeroGPU for: start-up + its forward passes + drawing at `image_size` (w, h)."""
    height, width = served.classifier.data_config["input_size"][1:]
    passes = forward_passes(served, method, images) * GPU_PASS_SECONDS * height * width / REFERENCE_PIXELS
    drawn = method not in ("classify", "faithfulness")  # the figures step draws only a small curve plot
    drawing = DRAW_SECONDS_PER_MEGAPIXEL * image_size[0] * image_size[1] / 1e6 if drawn else 0.0
    return min(GPU_MAX_SECONDS, math.ceil(GPU_START_SECONDS + passes + drawing * (2 if method == "compare" else 1)))


@dataclass(frozen=True)
class Refused:
    """A UserError raised inside a GPU call, carried back as its answer. ZeroGPU runs the call in a forked worker
    and hands back only a gr.Error as itself: any other exception arrives as gr.Error(<its class name>,
    title="ZeroGPU worker error") (spaces 0.51, zero/wrappers.py), so a user would read "UserError"."""

    message: str


def on_gpu(fn: Callable, duration: Callable[..., int]) -> Callable:
    """`spaces.GPU(fn)` on Hugging Face ZeroGPU hardware (when `spaces` is importable), else `fn`.

    `duration` takes the same arguments as `fn` and returns the seconds to ask for (ZeroGPU's dynamic duration).
    A UserError inside `fn` crosses the worker boundary as a `Refused` answer and is raised again outside.
    """
    try:
        import spaces
    except ImportError:
        return fn

    def in_worker(*args):
        try:
            return fn(*args)
        except UserError as exc:
            return Refused(str(exc))

    gpu = spaces.GPU(duration=duration)(in_worker)

    def call(*args):
        answer = gpu(*args)
        if isinstance(answer, Refused):
            raise UserError(answer.message)
        return answer
    return call
