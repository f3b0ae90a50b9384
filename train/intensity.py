"""Random intensity (--intensity S): a scan's gain and gamma drawn anew for each training image.

Why: a from-scratch MRI model reads a slice's overall brightness as a class cue. The guided 192 px model
changes 13% of its validation answers when every pixel is scaled by 0.8 and 21% under gamma 1.25, and calls
the darkened slices glioma (180 of 294 against 137 true; python -m bench.intensity, docs/lesion-mri.md).
Measured on the MRI set, --intensity 0.25 cut those changed answers from 16% to 4% but cost 8 points of
validation accuracy (0.884 -> 0.803), and did not help the earlier acquisition's test block (0.714 against
0.751): the mri recipe leaves it off; it is there for data whose scanners differ in gain or windowing.

Why not torchvision's ColorJitter: its contrast blends every pixel toward the image's mean grey, which
lights the black air around the head, a change no scanner makes (and jitter 0.4 kept the recipe's
validation accuracy near chance, docs/mri.md). Gain and gamma keep black black and white at most white:
x -> clamp(g * x ** y, 0, 1) on [0, 1] pixels, g = exp(U(-S, S)), y = exp(U(-S, S)), one draw per image,
the same for its three channels. A region mask riding along (train.grounding) is left as it is.
"""
from __future__ import annotations

import math
from typing import Any

import torch
from torchvision import tv_tensors
from torchvision.transforms import v2

from hub.images import gain_gamma


class RandomIntensity(v2.Transform):
    """Random gain and gamma of a float image in [0, 1] (after ToTensor / ToDtype, before Normalize)."""

    def __init__(self, strength: float):
        super().__init__()
        if not 0.0 < strength <= 1.0:
            raise ValueError(f"intensity strength must be in (0, 1] (got {strength})")
        self.strength = strength

    def make_params(self, flat_inputs: list[Any]) -> dict[str, float]:
        s = self.strength
        draw = torch.empty(2).uniform_(-s, s)
        return {"gain": math.exp(float(draw[0])), "gamma": math.exp(float(draw[1]))}

    def transform(self, inpt: Any, params: dict[str, float]) -> Any:
        if isinstance(inpt, tv_tensors.Mask):
            return inpt                                   # the region rides along unchanged
        if not isinstance(inpt, torch.Tensor) or not inpt.is_floating_point():
            raise TypeError("RandomIntensity takes a float image in [0, 1]: place it after ToTensor / ToDtype "
                            f"and before Normalize (got {type(inpt).__name__})")
        out = gain_gamma(inpt, params["gain"], params["gamma"])
        return tv_tensors.wrap(out, like=inpt) if isinstance(inpt, tv_tensors.TVTensor) else out
