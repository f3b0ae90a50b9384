"""Draw an expert's region on a picture of an explanation (its overlay or its heatmap), for the app and the CLI.

    drawn = draw_region(e.overlay(0.5), region)   # region: hub.annotations.Region

Boxes are drawn as rectangles, a mask as its contour, in white with a dark edge on both sides: visible over
every colour of the jet map and over dark or bright images. The line is about 1/256 of the image's longer
side (1 px at 256 px, 8 px at 2048 px); nothing but the outline changes.
"""
from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from hub.annotations import Region

LINE = (255, 255, 255)
EDGE = (0, 0, 0)
PIXELS_PER_LINE_PIXEL = 256


def line_width(size: tuple[int, int]) -> int:
    """The outline's width in pixels for an image of `size` (width, height)."""
    return max(1, round(max(size) / PIXELS_PER_LINE_PIXEL))


def draw_region(image: Image.Image, region: Region) -> Image.Image:
    """A copy of `image` (RGB) with `region`'s outline drawn on it at the image's own size."""
    out = image.convert("RGB")  # always a copy
    width = line_width(out.size)
    if region.pixels is not None:
        return _draw_contour(out, region.mask((out.height, out.width)), width)
    draw = ImageDraw.Draw(out)
    w, h = out.size
    for x0, y0, x1, y1 in region.boxes:
        # pixel edges to the first and last pixel inside the box (PIL's rectangles include both corners)
        left, top = round(x0 * w), round(y0 * h)
        right, bottom = max(left, round(x1 * w) - 1), max(top, round(y1 * h) - 1)
        draw.rectangle((left - 1, top - 1, right + 1, bottom + 1), outline=EDGE, width=width + 2)
        draw.rectangle((left, top, right, bottom), outline=LINE, width=width)
    return out


def _draw_contour(image: Image.Image, mask: np.ndarray, width: int) -> Image.Image:
    """The inner band of `mask` (`width` px) in LINE, with a 1 px EDGE inside and outside it."""
    line = mask & ~_shrink(mask, width)  # the image's border counts as outside: a mask touching it is closed
    inner = mask & ~_shrink(mask, width + 1) & ~line
    outer = _grow(mask) & ~mask
    pixels = np.array(image)
    pixels[inner | outer] = EDGE
    pixels[line] = LINE
    return Image.fromarray(pixels)


def _neighbours(mask: np.ndarray, fill: bool) -> tuple[np.ndarray, ...]:
    """`mask` shifted by one pixel up, down, left and right (pixels beyond the border: `fill`)."""
    p = np.pad(mask, 1, constant_values=fill)
    return p[:-2, 1:-1], p[2:, 1:-1], p[1:-1, :-2], p[1:-1, 2:]


def _shrink(mask: np.ndarray, steps: int) -> np.ndarray:
    """`mask` eroded `steps` times by a 4-neighbour cross, outside the image counting as outside the mask
    (numpy only: the Space ships `hub/` without scipy)."""
    for _ in range(steps):
        up, down, left, right = _neighbours(mask, False)
        mask = mask & up & down & left & right
    return mask


def _grow(mask: np.ndarray) -> np.ndarray:
    """`mask` dilated once by a 4-neighbour cross."""
    up, down, left, right = _neighbours(mask, False)
    return mask | up | down | left | right
