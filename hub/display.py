"""How the project's figures and method names are written for a reader: the one home of these words.

The model card, the CLI reports (`python -m hub explain`, the benches) and the app all print Grad-CAM and
Score-CAM by these names and a figure with its 95% interval as "mean [low, high]", so a figure reads the
same wherever it is shown. Plain Python: every layer of `hub/` and the shells may import it.
"""
from __future__ import annotations

from collections.abc import Mapping

METHOD_NAMES = {"gradcam": "Grad-CAM", "scorecam": "Score-CAM"}
# The maps that know nothing, scored beside the methods' (hub.explain.localisation.BASELINES).
BASELINE_NAMES = {"centre": "centre (baseline)", "flat": "flat (baseline)", "random": "random (baseline)"}
MAP_NAMES = {**METHOD_NAMES, **BASELINE_NAMES}


def interval_text(figure: Mapping[str, float], digits: int = 3) -> str:
    """'mean [low, high]' of a figure with its interval (a dict with "mean", "low" and "high")."""
    return f"{figure['mean']:.{digits}f} [{figure['low']:.{digits}f}, {figure['high']:.{digits}f}]"
