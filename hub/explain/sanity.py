"""Does a heatmap depend on what the model learnt? Cascading randomisation (Adebayo et al. 2018).

    report = sanity_check(model, xs, "gradcam")          # xs: normalised 1x3xHxW inputs
    report["passed"], report["steps"][-1]["rank_correlation"], report["steps"][-1]["ssim"]

On a copy of the model (the model itself is untouched) the weights of the head, then of the last
feature stage, then of the one before it are replaced by noise, cumulatively, and each image is
explained again for the same class after every step. A method whose maps come from the model must
then draw different maps; one that would draw the same map for any model (an edge detector, the
image's own intensity) does not. Each step reports the mean Spearman rank correlation (its absolute
value, as in the paper: a map turned upside down still singles out the same pixels) and the mean
SSIM between the original and the randomised maps.
"""
from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from typing import Optional, Union

import numpy as np
import torch
from torch import nn

from hub.explain.cam import SCORECAM_FILL, MaxChannels, resolve_max_channels
from hub.explain.explanation import cells_are_patches, make_cam, model_device, to_pixels
from hub.explain.split import feature_layer_name
from hub.explain.stats import rank_correlation, ssim

STAGES = 2  # feature stages randomised after the head: ResNet's layer4, then layer3
# A method passes when, with the head and both stages randomised, its maps keep less than this of their
# rank order and structure (mean |rho| and mean SSIM). Measured with `python -m hub explain MODEL HELD
# --faithfulness --sanity-images 10`, ResNet50 trained on the synthetic set (128 px), randomised
# head / +layer4 / +layer3: Grad-CAM |rho| 0.08 / 0.06 / 0.12, SSIM 0.17 / 0.13 / 0.27; fast Score-CAM (k=32)
# |rho| 0.89 / 0.79 / 0.61, SSIM 0.96 / 0.92 / 0.82 (its masks are activation maps, which keep outlining the
# salient object in a random network); the image's own intensity as the map: 1.0 throughout. 0.5 sits
# between Grad-CAM and the rest.
THRESHOLD = 0.5

# A map maker: (model, normalised 1x3xHxW input, class) -> H x W map at the input's size.
MapFn = Callable[[nn.Module, torch.Tensor, int], torch.Tensor]


def cascade(model: nn.Module, stages: int = STAGES) -> list[str]:
    """Submodule names in randomisation order: the classifier head, then the last `stages` feature stages."""
    info = getattr(model, "feature_info", None)
    head = (getattr(model, "pretrained_cfg", None) or {}).get("classifier")
    if not head or feature_layer_name(model) is None:
        raise ValueError(f"{type(model).__name__} has no timm classifier name and feature_info: "
                         "the sanity check needs a timm model")
    return [head, *[stage["module"] for stage in reversed(info[-stages:])]]


def randomise(module: nn.Module, generator: torch.Generator) -> None:
    """Replace every parameter of `module` by Gaussian noise with that tensor's own mean and std (in place)."""
    with torch.no_grad():
        for p in module.parameters():
            std = float(p.float().std()) if p.numel() > 1 else 0.0
            noise = torch.randn(p.shape, generator=generator) * std + float(p.float().mean())
            p.copy_(noise.to(p.device, p.dtype))


def cam_maps(method: str, max_channels: MaxChannels = "auto", seed: int = 0, rival: Optional[int] = None,
             fill: str = SCORECAM_FILL) -> MapFn:
    """The map maker of Grad-CAM or Score-CAM (of `target` rather than `rival`, if given), at the input's own size."""
    def draw(model: nn.Module, x: torch.Tensor, target: int) -> torch.Tensor:
        k = resolve_max_channels(max_channels, x.device)
        cam = make_cam(model, method, k, seed=seed, fill=fill)(x, target, rival).cam
        return to_pixels(cam, tuple(x.shape[-2:]), tuple(x.shape[-2:]), cells_are_patches(model))
    return draw


def sanity_check(model: nn.Module, xs: Sequence[torch.Tensor], method: Union[str, MapFn],
                 targets: Optional[Sequence[Optional[int]]] = None, *, rival: Optional[int] = None,
                 max_channels: MaxChannels = "auto", stages: int = STAGES, seed: int = 0,
                 scorecam_fill: str = SCORECAM_FILL) -> dict:
    """Per cascade step, how alike the maps of the randomised model are to the originals; passed or not."""
    if not xs:
        raise ValueError("the sanity check needs at least one image")
    draw = cam_maps(method, max_channels, seed, rival, scorecam_fill) if isinstance(method, str) else method
    device = model_device(model)
    xs = [x.to(device) for x in xs]
    targets = list(targets) if targets is not None else [None] * len(xs)
    with torch.inference_mode():  # the class stays the trained model's, whatever the randomised one predicts
        targets = [int(model(x).argmax()) if t is None else int(t) for x, t in zip(xs, targets)]
    originals = [draw(model, x, t).cpu().numpy() for x, t in zip(xs, targets)]
    shadow, generator, steps = copy.deepcopy(model).eval(), torch.Generator().manual_seed(seed), []
    for name in cascade(model, stages):
        randomise(shadow.get_submodule(name), generator)
        pairs = list(zip(originals, [draw(shadow, x, t).cpu().numpy() for x, t in zip(xs, targets)]))
        steps.append({"randomised": name,
                      "rank_correlation": float(np.mean([abs(rank_correlation(*p)) for p in pairs])),
                      "ssim": float(np.mean([ssim(*p) for p in pairs]))})
    last = steps[-1]
    passed = last["rank_correlation"] < THRESHOLD and last["ssim"] < THRESHOLD
    return {"method": method if isinstance(method, str) else getattr(method, "__name__", "custom"),
            "images": len(xs), "steps": steps, "passed": bool(passed), "threshold": THRESHOLD}
