"""Does a heatmap land on the expert's region? Pointing game and energy, one image at a time.

    loc = localise(e.heatmap, region)      # e: an Explanation; region: hub.annotations.Region
    loc.hit, loc.energy, loc.area, loc.ratio

- pointing game (Zhang et al. 2016): a hit when the map's maximum lies within `tolerance` pixels of the
  region (15 px, the paper's tolerance, at the image's own size);
- energy (Wang et al. 2020, Score-CAM's energy-based pointing game): the share of the map's mass inside the
  region (ungrown); `ratio` divides it by the region's share of the image, so a flat map scores 1.0 and a
  map that puts all its mass in the region scores 1 / area.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hub.annotations import Region

TOLERANCE = 15.0   # pixels of the image as given (Zhang et al. 2016)


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
    if tolerance < 0:
        raise ValueError(f"tolerance must be >= 0 pixels, got {tolerance}")
    heatmap = np.nan_to_num(np.asarray(heatmap, dtype=np.float64), nan=0.0).clip(min=0.0)
    size = heatmap.shape
    inside = region.mask(size)
    grown = region.mask(size, grow=tolerance)
    area = float(inside.mean())
    total = heatmap.sum()
    energy = float(heatmap[inside].sum() / total) if total > 0 else area  # an empty map spreads like a flat one
    r, c = peak(heatmap)
    return Localisation(bool(grown[r, c]), energy, area, energy / area if area > 0 else float("nan"))
