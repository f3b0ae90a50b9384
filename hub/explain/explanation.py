"""Explain one image: which pixels made the model choose a class (Grad-CAM or Score-CAM).

    e = explain(model, "scan.jpg", method="scorecam", max_channels=32)   # fast: 32 passes
    e = explain(model, "scan.jpg", method="gradcam", target=("glioma", "meningioma"))  # glioma rather than meningioma
    e.heatmap            # H x W float32 in [0, 1] at the input image's size
    e.overlay(0.5)       # PIL image: the heatmap in colour over the input
    e.label, e.probability, e.mode, e.passes, e.seconds
    e.faithfulness["deletion"], e.faithfulness["insertion"], e.faithfulness["beats_baselines"]

`max_channels` is Score-CAM's k: "exact" (one masked pass per channel, the default), a whole number
k (fast mode, k passes) or "auto" (fast on CPU, exact on CUDA); Grad-CAM ignores it.
Options: `layer` (a submodule name; default the last feature stage, `layer4` for ResNet),
`batch_size` (masked inputs per pass; default from free memory), `dtype` ("auto": bf16/fp16
autocast on CUDA, fp32 on CPU; "bfloat16" is worth it on CPUs with AVX512-BF16/AMX), `seed`
(fast mode's clustering and the faithfulness baselines), `faithfulness=False` to skip the figures of
`hub.explain.faithfulness` (their forward passes: about 6 * steps batched images), `steps` and `imputation`
for the deletion/insertion curves. An explicit `dtype` also sets the precision of the curves' passes;
with "auto" they run in `hub.device.autocast_dtype`, bf16 on bf16-native CPUs too (see `curve_dtype`).

The map is placed on the image by receptive field: a padded CNN's cell i is centred on pixel
i * stride of the model input (not in the middle of its stride-wide tile), and it is upsampled
bicubically, so the peak can fall between two cells. The model input is the whole image resized
(timm "squash"), so the map then stretches back onto the image with no crop offset.

Preprocessing, labels and the target layer all come from the model (timm `pretrained_cfg`,
`feature_info`). The model is not modified (only put in eval mode). No hooks are registered on
timm models whose last feature stage ends `forward_features` (ResNet), so concurrent calls on one
shared model run in parallel; other layers use a hook under a per-model lock. Either way,
concurrent calls give the same results as sequential ones.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Optional, Union

import numpy as np
import timm
import torch
from PIL import Image
from torch import nn

from hub.calibration import check_temperature
from hub.explain.cam import (
    SCORECAM_FILL,
    BaseCAM,
    FastScoreCAM,
    GradCAM,
    MaxChannels,
    Passes,
    ScoreCAM,
    check_fill,
    resolve_dtype,
    resolve_max_channels,
)
from hub.explain.faithfulness import IMPUTATION, STEPS, Figures, check_steps, measure
from hub.explain.imputation import check_imputation
from hub.images import ImageInput, load_image
from hub.model import labels_of, resolve_contrast

# A target as users write it: a class (index or label), or two for "A rather than B": (A, B) or "A vs B".
Target = Union[int, str, tuple, None]

METHODS = ("scorecam", "gradcam")


@dataclass(frozen=True)
class Explanation:
    """A heatmap for one image and class, with what it took to compute it."""

    heatmap: np.ndarray          # H x W float32 in [0, 1], the input image's size
    image: Image.Image = field(repr=False)
    target: int
    label: str
    probability: float           # probability of `target` on the unmasked image: softmax(logits / temperature)
    faithfulness: Optional[Figures]  # hub.explain.faithfulness.measure; None if switched off
    seconds: float
    method: str                  # "scorecam" or "gradcam"
    mode: str                    # "exact", "fast" (Score-CAM) or "gradient" (Grad-CAM)
    passes: int                  # masked forward passes run: k in fast mode, 0 for Grad-CAM
    layer: str                   # the target layer, e.g. "layer4"
    probabilities: np.ndarray = field(repr=False)  # all classes, in label order
    rival: Optional[int] = None  # a contrastive target's B: the map explains `target` rather than `rival`
    rival_label: Optional[str] = None
    # The map at the model's input size: what the faithfulness figures rank pixels by, kept so that
    # `add_faithfulness` can measure them later without recomputing the map.
    model_map: Optional[np.ndarray] = field(default=None, repr=False)
    fill: Optional[str] = None   # Score-CAM: what its masks removed became; None for Grad-CAM

    def overlay(self, opacity: float = 0.5) -> Image.Image:
        """The input image with the heatmap blended on top in a jet colour map."""
        if not 0.0 <= opacity <= 1.0:
            raise ValueError(f"opacity must be between 0 and 1, got {opacity}")
        base = np.asarray(self.image, np.float32) / 255.0
        blended = (1.0 - opacity) * base + opacity * jet(self.heatmap)
        return Image.fromarray((np.clip(blended, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8))


def jet(values: np.ndarray) -> np.ndarray:
    """Map [0, 1] values to RGB in [0, 1] with the classic jet ramp (blue -> red)."""
    v = np.clip(values, 0.0, 1.0)[..., None] * 4.0
    return np.clip(1.5 - np.abs(v - np.array([3.0, 2.0, 1.0], np.float32)), 0.0, 1.0).astype(np.float32)


def model_transform(model: nn.Module) -> Callable:
    """The model's own eval preprocessing (timm data config: size, mean/std, squash resize)."""
    return timm.data.create_transform(**timm.data.resolve_model_data_config(model))


def model_device(model: nn.Module) -> torch.device:
    """The device the model's parameters live on."""
    return next(model.parameters()).device


def make_cam(model: nn.Module, method: str, max_channels: Passes = "exact", layer=None,
             batch_size: Optional[int] = None, dtype="auto", seed: int = 0, fill: str = SCORECAM_FILL) -> BaseCAM:
    """The CAM object for `method`: Grad-CAM, exact Score-CAM ("exact"), or fast Score-CAM with k passes (an int;
    "auto" is the user's word, turned into one of these by `resolve_max_channels` once the device is known).
    `fill`: what Score-CAM's masks remove becomes (`hub.explain.imputation`); Grad-CAM has no masks."""
    if method == "gradcam":
        return GradCAM(model, layer)
    if method == "scorecam":
        if max_channels == "exact":
            return ScoreCAM(model, layer, batch_size=batch_size, dtype=dtype, fill=fill)
        if isinstance(max_channels, bool) or not isinstance(max_channels, int):
            raise ValueError(f"make_cam takes k or 'exact', got {max_channels!r}; resolve it first with "
                             "hub.explain.cam.resolve_max_channels")
        return FastScoreCAM(model, max_channels, layer, batch_size=batch_size, dtype=dtype, seed=seed, fill=fill)
    raise ValueError(f"unknown method {method!r}; choose from {list(METHODS)}")


def cells_are_patches(model: nn.Module) -> bool:
    """True for patchify stems (ViT, ConvNeXt, Swin: kernel == stride, no padding), else False.

    That decides where a feature cell's receptive field is centred: patch cells are centred in
    their patch (cell i at (i + 0.5) * stride), while padded stems (ResNet, EfficientNet) centre
    cell i on pixel i * stride, half a cell up-left of where a plain image resize would put it.
    """
    name = (getattr(model, "pretrained_cfg", None) or {}).get("first_conv")
    try:
        conv = model.get_submodule(name) if isinstance(name, str) else None
    except AttributeError:
        conv = None
    if not isinstance(conv, nn.Conv2d):
        return True  # unknown stem: fall back to the plain-resize convention
    return tuple(conv.kernel_size) == tuple(conv.stride) and tuple(conv.padding) == (0, 0)


def _cubic(d: torch.Tensor, a: float = -0.75) -> torch.Tensor:
    """Keys' cubic convolution kernel (a = -0.75, as PyTorch's and OpenCV's bicubic)."""
    d = d.abs()
    near = ((a + 2) * d - (a + 3)) * d * d + 1
    far = ((a * d - 5 * a) * d + 8 * a) * d - 4 * a
    return torch.where(d <= 1, near, torch.where(d < 2, far, torch.zeros_like(d)))


def _axis_weights(cells: int, out: int, model_px: int, patches: bool) -> torch.Tensor:
    """out x cells bicubic weights placing cell i at its receptive-field centre (see above)."""
    stride = model_px / cells
    centre0 = stride / 2 if patches else 0.5            # continuous coordinate of cell 0's centre
    p = (torch.arange(out, dtype=torch.float64) + 0.5) * (model_px / out)  # output pixel centres
    u = ((p - centre0) / stride).clamp(0, cells - 1)    # in cells; flat beyond the outer centres
    base = u.floor()
    weights = torch.zeros(out, cells, dtype=torch.float64)
    for tap in (-1, 0, 1, 2):                           # edge taps repeat the border cell
        index = (base + tap).clamp(0, cells - 1).long()
        weights.scatter_add_(1, index[:, None], _cubic(u - (base + tap))[:, None])
    return weights.float()


def to_pixels(cam: torch.Tensor, size: tuple[int, int], model_size: tuple[int, int],
              patches: bool) -> torch.Tensor:
    """The h x w map at `size` (H, W) of an image that was squashed to `model_size`, in [0, 1].

    Bicubic rather than bilinear: a bilinear map peaks exactly on a cell centre, while evidence
    straddling two cells should peak between them (held-out pointing game on the synthetic set,
    ResNet50 at 128 px: 0.90 bilinear, 1.00 bicubic).
    """
    rows = _axis_weights(cam.shape[0], size[0], model_size[0], patches)
    cols = _axis_weights(cam.shape[1], size[1], model_size[1], patches)
    up = rows @ cam.float().cpu() @ cols.T      # separable: no H x W x 2 sampling grid
    lo, hi = up.min(), up.max()                 # cubic overshoot is absorbed by the rescale
    return (up - lo) / (hi - lo) if hi > lo else torch.zeros_like(up)


def explain(model: nn.Module, image: ImageInput, method: str = "scorecam", target: Target = None,
            max_channels: MaxChannels = "exact", transform: Optional[Callable] = None,
            labels: Optional[list[str]] = None, device: Union[str, torch.device, None] = None, *, layer=None,
            batch_size: Optional[int] = None, dtype: Union[str, torch.dtype, None] = "auto",
            seed: int = 0, faithfulness: bool = True, steps: int = STEPS,
            imputation: str = IMPUTATION, scorecam_fill: str = SCORECAM_FILL,
            temperature: float = 1.0) -> Explanation:
    """Explain `model`'s decision for `image` (class `target`, default the predicted one; (A, B): A rather than B).

    `scorecam_fill`: what Score-CAM's masks remove becomes; `imputation`: what the faithfulness curves remove;
    `temperature`: the model's calibration (hub.calibration), which scales the reported probabilities only."""
    start = time.perf_counter()
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose from {list(METHODS)}")
    steps, imputation = check_steps(steps), check_imputation(imputation)  # refused before any pass
    check_fill(scorecam_fill)
    temperature = check_temperature(temperature)
    model.eval()  # a model in training mode would update its BatchNorm statistics on every pass
    img = load_image(image)
    labels = list(labels) if labels is not None else labels_of(model)
    index, rival = resolve_contrast(target, labels)
    transform = transform or model_transform(model)
    device = torch.device(device) if device is not None else model_device(model)
    x = transform(img).unsqueeze(0).to(device)
    cam = make_cam(model, method, resolve_max_channels(max_channels, device), layer, batch_size, dtype, seed,
                   scorecam_fill)
    model_size, patches = tuple(x.shape[-2:]), cells_are_patches(model)
    with cam.split.session():  # a lock on the hook path only; the curves' plain passes need none
        result = cam(x, index, rival)
    model_map = to_pixels(result.cam, model_size, model_size, patches)
    probs = torch.softmax(result.logits / temperature, dim=-1).numpy()
    heatmap = to_pixels(result.cam, (img.height, img.width), model_size, patches).numpy()
    name = lambda i: labels[i] if i < len(labels) else str(i)  # noqa: E731
    e = Explanation(heatmap, img, result.target, name(result.target), float(probs[result.target]), None,
                    time.perf_counter() - start, method, result.mode, result.passes, result.layer, probs,
                    rival, None if rival is None else name(rival), model_map.numpy(), result.fill)
    if not faithfulness:
        return e
    return add_faithfulness(model, e, transform, device, dtype=dtype, seed=seed, steps=steps, imputation=imputation)


def curve_dtype(device: torch.device, dtype: Union[str, torch.dtype, None]) -> Optional[torch.dtype]:
    """The precision of the faithfulness curves' passes: with "auto", bf16 on CPUs that run it natively too, not
    only on CUDA as Score-CAM's masked passes. Measured: ResNet50 trained on the synthetic set, 128 px, one image's
    62 inputs: CPU time 2.3 s fp32 -> 1.2 s bf16, every area (map and baselines) within 0.0002 of fp32's."""
    return resolve_dtype(device, dtype, reduced_on_cpu=True)


def add_faithfulness(model: nn.Module, e: Explanation, transform: Optional[Callable] = None,
                     device: Union[str, torch.device, None] = None, *, dtype: Union[str, torch.dtype, None] = "auto",
                     seed: int = 0, steps: int = STEPS, imputation: str = IMPUTATION) -> Explanation:
    """`e` with its faithfulness figures measured (`hub.explain.faithfulness.measure`) and their time added.

    `explain(..., faithfulness=False)` then this gives what `explain(...)` gives: the app shows the map
    first and the figures, ~6 * steps forward passes, a moment later.
    """
    if e.model_map is None:
        raise ValueError("this explanation has no model-size map; compute it with hub.explain.explanation.explain")
    start = time.perf_counter()
    steps, imputation = check_steps(steps), check_imputation(imputation)
    transform = transform or model_transform(model)
    device = torch.device(device) if device is not None else model_device(model)
    x = transform(e.image).unsqueeze(0).to(device)
    model.eval()
    figures = measure(model, x, torch.from_numpy(e.model_map), e.target, e.rival, steps=steps,
                      imputation=imputation, seed=seed, dtype=curve_dtype(device, dtype))
    return replace(e, faithfulness=figures, seconds=e.seconds + time.perf_counter() - start)

