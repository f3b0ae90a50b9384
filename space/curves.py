"""A small picture of an explanation's deletion and insertion curves, drawn with PIL (no plotting library).

Solid: the map's curves (red deletion, blue insertion); thin and pale: the same curves of the random
baseline on the same image, so a map that does no better than noise is visible at a glance.
"""
from __future__ import annotations

from collections.abc import Sequence

from PIL import Image, ImageDraw

SIZE = (320, 200)
MARGIN = (34, 26, 12, 30)  # left, top (the legend), right, bottom
COLOURS = {"deletion": (200, 40, 40), "insertion": (40, 80, 200)}
PALE = {"deletion": (240, 180, 180), "insertion": (180, 195, 240)}


def _line(draw: ImageDraw.ImageDraw, values: Sequence[float], box: tuple[int, int, int, int], colour, width: int):
    left, top, right, bottom = box
    step = (right - left) / (len(values) - 1)
    points = [(left + i * step, bottom - v * (bottom - top)) for i, v in enumerate(values)]
    draw.line(points, fill=colour, width=width)


def curve_plot(figures: dict, size: tuple[int, int] = SIZE) -> Image.Image:
    """The deletion and insertion curves of `figures` (an Explanation's faithfulness) and the random baseline's."""
    img = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(img)
    box = (MARGIN[0], MARGIN[1], size[0] - MARGIN[2], size[1] - MARGIN[3])
    draw.rectangle(box, outline=(120, 120, 120))
    for value in (0.0, 0.5, 1.0):
        y = box[3] - value * (box[3] - box[1])
        draw.text((4, y - 6), f"{value:.1f}", fill="black")
    draw.text((box[0], box[3] + 4), "0%", fill="black")
    draw.text((box[2] - 28, box[3] + 4), "100%", fill="black")
    draw.text((box[0] + 40, box[3] + 4), "pixels removed / revealed", fill=(90, 90, 90))
    for curve in ("deletion", "insertion"):
        _line(draw, figures["baselines"]["random"]["curves"][curve], box, PALE[curve], 1)
    for column, curve in enumerate(("deletion", "insertion")):
        _line(draw, figures["curves"][curve], box, COLOURS[curve], 2)
        draw.text((box[0] + 92 * column, 6), f"{curve} {figures[curve]:.3f}", fill=COLOURS[curve])
    draw.text((box[0] + 184, 6), "pale: random map", fill=(130, 130, 130))
    return img
