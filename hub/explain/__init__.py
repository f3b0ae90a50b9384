"""The explanation engine: which pixels made the model choose a class.

    from hub.explain import explain
    e = explain(model, "scan.png", method="gradcam")     # or clf.explain("scan.png", ...)

Modules, each depending only on those listed before it: `split` (the model around its target
layer), `imputation` (filling removed pixels), `stats` (rank correlation, SSIM, bootstrap), `cam`
(Grad-CAM, Score-CAM), `faithfulness` (deletion/insertion, baselines, keep-remove, agreement of a
heatmap), `explanation` (one image, end to end), `sanity` (cascading randomisation), `batch` (many
images, the `python -m hub explain` work).
"""
from hub.explain.explanation import METHODS, Explanation, explain

__all__ = ["METHODS", "Explanation", "explain"]
