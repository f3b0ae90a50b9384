"""Does a heatmap land on the expert's region? Pointing game and energy, one image at a time.

    loc = localise(e.heatmap, region)      # e: an Explanation; region: hub.annotations.Region
    loc.hit, loc.energy, loc.area, loc.ratio

- pointing game (Zhang et al. 2016): a hit when the map's maximum lies within `tolerance` pixels of the
  region (15 px, the paper's tolerance, at the image's own size);
- energy (Wang et al. 2020, Score-CAM's energy-based pointing game): the share of the map's mass inside the
  region (ungrown); `ratio` divides it by the region's share of the image, so a flat map scores 1.0 and a
  map that puts all its mass in the region scores 1 / area.

Baselines: maps that know nothing of the model, scored the same way on the same image, so a method's figures
can be read against what a map gets for free (`baseline_maps`):
- centre: a Gaussian peaked at the image's centre (std a quarter of each side, as the faithfulness baseline):
  lesions are often central, and a map can look good by being central alone;
- flat: the same value everywhere: energy = the region's area share, ratio 1.0 exactly; its maximum is a
  plateau, which `peak` puts at the centre, so its pointing game is the centre point's;
- random: uniform noise on the CAM's own grid (e.g. 4 x 4 for ResNet's layer4 at 128 px), placed on the image
  as a CAM is (`to_pixels`): peaks as coarse as a real map's, anywhere; one draw per image, seeded.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch

from hub.annotations import Region
from hub.explain.explanation import to_pixels
from hub.explain.faithfulness import centre_map

TOLERANCE = 15.0   # pixels of the image as given (Zhang et al. 2016)
BASELINES = ("centre", "flat", "random")


@dataclass(frozen=True)
class Localisation:
    """Where one map lands against one region."""

    hit: bool        # the maximum is within the tolerance of the region
    energy: float    # share of the map's mass inside the region
    area: float      # share of the image the region covers
    ratio: float     # energy / area: 1.0 for a flat map

    def to_dict(self) -> dict:
        """JSON-ready view."""
        return {"hit": self.hit, "energy": self.energy, "area": self.area, "ratio": self.ratio}


def peak(heatmap: np.ndarray) -> tuple[int, int]:
    """(row, column) of the map's maximum; ties go to the mean position of the tied pixels' nearest one."""
    top = heatmap.max()
    rows, cols = np.nonzero(heatmap >= top)
    if rows.size == 1:
        return int(rows[0]), int(cols[0])
    # a plateau (a flat map, or a cell upsampled flat): its centre, snapped to a pixel of the plateau
    centre = np.array([rows.mean(), cols.mean()])
    i = int(np.argmin((rows - centre[0]) ** 2 + (cols - centre[1]) ** 2))
    return int(rows[i]), int(cols[i])


def localise(heatmap: np.ndarray, region: Region, tolerance: float = TOLERANCE) -> Localisation:
    """Pointing-game hit and energy of `heatmap` (H x W, >= 0) against `region`, at the map's size."""
    return localise_all({"map": heatmap}, region, tolerance)["map"]


def localise_all(maps: Mapping[str, np.ndarray], region: Region,
                 tolerance: float = TOLERANCE) -> dict[str, Localisation]:
    """`localise` of several maps of one image (one size), the region's masks computed once."""
    if tolerance < 0:
        raise ValueError(f"tolerance must be >= 0 pixels, got {tolerance}")
    out, masks = {}, {}
    for name, heatmap in maps.items():
        heatmap = np.nan_to_num(np.asarray(heatmap, dtype=np.float64), nan=0.0).clip(min=0.0)
        size = heatmap.shape
        if size not in masks:
            masks[size] = region.mask(size), region.mask(size, grow=tolerance)
        inside, grown = masks[size]
        area = float(inside.mean())
        total = heatmap.sum()
        energy = float(heatmap[inside].sum() / total) if total > 0 else area  # an empty map spreads like a flat one
        r, c = peak(heatmap)
        out[name] = Localisation(bool(grown[r, c]), energy, area, energy / area if area > 0 else float("nan"))
    return out


def random_grid(grid: tuple[int, int], seed: int | tuple[int, ...]) -> torch.Tensor:
    """Uniform noise on the CAM's grid (h, w): the random baseline before it is placed on the image."""
    return torch.from_numpy(np.random.default_rng(seed).random(grid, dtype=np.float32))


def baseline_maps(size: tuple[int, int], grid: tuple[int, int], model_size: tuple[int, int], patches: bool = False,
                  seed: int | tuple[int, ...] = 0) -> dict[str, np.ndarray]:
    """The centre, flat and random maps of an image of `size` (H, W), for a CAM of `grid` cells on a model input
    of `model_size` (`patches`: how the model's cells sit on its input, see `explanation.cells_are_patches`)."""
    return {"centre": centre_map(size).numpy(),
            "flat": np.ones(size, np.float32),
            "random": to_pixels(random_grid(grid, seed), size, model_size, patches).numpy()}
