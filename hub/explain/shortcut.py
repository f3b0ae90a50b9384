"""The shortcut check: is the model still right with the expert's region hidden, and with nothing but the region?

    v = views(image, region, model_size=(128, 128))   # PIL images at the image's own size
    v["as_is"], v["hidden"], v["only"]

A model that is right for the right reasons loses its answer when the lesion is hidden and keeps it when only
the lesion is shown; one that stays right with the lesion hidden reads something else (the slice's level or
view, the scanner, a marker).

How a region is hidden, and why so:
- the region is grown by 10% of its size (the side of a square of its area), and by at least one model-input
  pixel: a box is drawn tight, and a lesion's edge (its rim, the oedema around it) reaches past it; anything
  finer than a model pixel is averaged away by the resize anyway;
- "hidden": the grown region is filled from the pixels around it by pull-push inpainting (normalised averages
  over an image pyramid, `imputation.pull_push`: the same fill the deletion curves use): a smooth continuation
  of its surroundings, with no edge. Not a black (or mean-colour) box: a box's outline draws the region's
  place, size and shape onto the image, which a model can read as well as the lesion itself (it is the
  "constant" fill that leaks in `hub.explain.faithfulness`); not a blur of the region either, which keeps
  its brightness and tint;
- "only": everything outside the grown region is filled from the region alone, by the same inpainting. A
  heavy blur of the outside would keep the head's outline, size and brightness, so the slice's level and view
  (which differ between tumour types) would still be readable; a constant fill draws the region's outline.
  The inpainting from inside adds nothing the region does not already hold: what leaks is only the region's
  place, which is what "only the region" shows anyway.
Hiding is done on the image as given, at its own resolution; the model's own preprocessing (resize,
normalisation) follows, as for any image.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from PIL import Image

from hub.annotations import Region
from hub.explain.imputation import pull_push

VIEWS = ("as_is", "hidden", "only")
GROW_SHARE = 0.10   # of the region's size (the side of a square of its area)
EMPTY_FILL = 0.5    # grey, where nothing is left to fill from (a region grown over the whole image)


def margin(region: Region, size: tuple[int, int], model_size: tuple[int, int]) -> float:
    """Pixels (of an image of `size`) the region is grown by before it is hidden or kept alone."""
    side = math.sqrt(float(region.mask(size).sum()))
    model_pixel = max(size[0] / model_size[0], size[1] / model_size[1])
    return max(GROW_SHARE * side, model_pixel)


def fill(image: Image.Image, keep: np.ndarray) -> Image.Image:
    """`image` (RGB) with every pixel outside the bool `keep` (H x W) inpainted from the kept ones (pull-push)."""
    rgb = np.asarray(image.convert("RGB"))
    # A grey image (an MRI slice read as RGB) is filled once, not three times: a third of the cost, same result.
    grey = bool((rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all())
    x = torch.from_numpy((rgb[..., :1] if grey else rgb).astype(np.float32) / 255.0).permute(2, 0, 1)[None]
    weight = torch.from_numpy(keep.astype(np.float32))[None, None]
    if not keep.any():
        out = torch.full_like(x, EMPTY_FILL)
    else:
        out = torch.where(weight > 0, x, pull_push(x * weight, weight))   # kept pixels exactly as they were
    pixels = (out[0].permute(1, 2, 0).clamp(0.0, 1.0) * 255.0 + 0.5).to(torch.uint8).numpy()
    return Image.fromarray(np.repeat(pixels, 3, axis=2) if grey else pixels)


def views(image: Image.Image, region: Region, model_size: tuple[int, int]) -> dict[str, Image.Image]:
    """The image as is, with the (grown) region hidden, and with only the (grown) region kept."""
    image = image.convert("RGB")
    size = (image.height, image.width)
    grown = region.mask(size, grow=margin(region, size, model_size))
    return {"as_is": image, "hidden": fill(image, ~grown), "only": fill(image, grown)}
