"""The app's work as plain functions: classify, explain (Grad-CAM / Score-CAM), compare.

No Gradio here: each function takes the `Served` model and an image path and returns plain data
(dicts, PIL images, Markdown), so it is tested directly and the UI is only wiring. A request the
app cannot serve raises `UserError`, whose message is shown to the user as it is.

Each task is two steps: a cheap check on the CPU (`check_image`, `check_explain`: the image decodes,
the class exists, the opacity is in range) and the model work (`classify_batch`, `run_explain`,
`run_compare`). On ZeroGPU only the second runs on a GPU, so a bad request never asks for one.
"""
from __future__ import annotations

import html
import math
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Optional

import numpy as np
from PIL import Image

from hub.errors import UserError
from hub.explain.explanation import Explanation, jet
from hub.images import ImageError, load_image
from hub.model import resolve_target
from space.serving import Served, autocast

# Larger uploads are shrunk before explaining: the model sees ~224 px anyway, and a heatmap and
# overlay at the full 64 MP the loader allows would take gigabytes per request.
DISPLAY_MAX_SIDE = 2048
PREDICTED = ""  # target value meaning "the predicted class"
METHOD_NAMES = {"gradcam": "Grad-CAM", "scorecam": "Score-CAM"}


@dataclass(frozen=True)
class ExplainRequest:
    """A checked explanation request: method, decoded image, class (None: the predicted one), opacity."""

    method: str
    image: Image.Image
    label: Optional[str]
    opacity: float


@dataclass(frozen=True)
class ExplainResult:
    """One explanation, rendered: colour heatmap, overlay, a Markdown summary and plain numbers."""

    explanation: Explanation
    heatmap: Image.Image
    overlay: Image.Image
    summary: str
    details: dict


@dataclass(frozen=True)
class CompareResult:
    """Grad-CAM and Score-CAM of one image and class, and a Markdown table of both."""

    gradcam: ExplainResult
    scorecam: ExplainResult
    table: str


def md_escape(text: str) -> str:
    """`text` safe inside Markdown/HTML: tags escaped, Markdown punctuation backslashed."""
    return re.sub(r"([\\`*_{}\[\]()#+\-.!|~>])", r"\\\1", html.escape(str(text), quote=True))


def require(served: Served):
    """The served Classifier, or a UserError naming why no model is loaded."""
    if served.classifier is None:
        raise UserError(f"The model is not available: {served.error}")
    return served.classifier


def read_image(path: Optional[str], max_side: int = DISPLAY_MAX_SIDE) -> Image.Image:
    """Decode an uploaded file with the project's checks; shrink it to `max_side` for display."""
    if path is None or str(path) == "":
        raise UserError("No image: upload one (or pick a sample in the Examples tab) first.")
    try:
        img = load_image(path)
    except ImageError as exc:
        # The loader names the temporary upload path; the user knows their file by its name.
        raise UserError(str(exc).replace(str(path), f"'{Path(path).name}'")) from None
    if max(img.size) > max_side:
        img = img.copy()
        img.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    return img


def target_label(target: Optional[str], labels: list[str]) -> Optional[str]:
    """None for the predicted class ('' or None), else a label of the model (checked by `resolve_target`)."""
    if target is None or target == PREDICTED:
        return None
    try:
        resolve_target(str(target), labels)
    except ValueError:
        raise UserError(f"Unknown class {target!r}; the model's classes are: {', '.join(labels)}.") from None
    return target


def check_opacity(opacity: float) -> float:
    """Opacity as a float in [0, 1]."""
    try:
        value = float(opacity)
    except (TypeError, ValueError):
        raise UserError(f"Opacity must be a number between 0 and 1, got {opacity!r}.") from None
    if not 0.0 <= value <= 1.0:
        raise UserError(f"Opacity must be between 0 and 1, got {value}.")
    return value


def check_image(served: Served, path: Optional[str]) -> Image.Image:
    """The decoded upload, once the model is known to be loaded (the check before any model work)."""
    require(served)
    return read_image(path)


def classify_batch(served: Served, images: list[Image.Image]) -> list[dict[str, float]]:
    """Label -> probability for each image, most likely first: one forward pass for the whole batch."""
    clf = require(served)
    with autocast(clf):
        return clf.predict_batch(images)


def classify(served: Served, path: Optional[str]) -> dict[str, float]:
    """Label -> probability for the uploaded image, most likely first."""
    return classify_batch(served, [check_image(served, path)])[0]


def heatmap_image(heatmap: np.ndarray) -> Image.Image:
    """The raw [0, 1] heatmap as an RGB image in the same jet colours as the overlay."""
    return Image.fromarray((jet(heatmap) * 255.0 + 0.5).astype(np.uint8))


def mode_text(e: Explanation) -> str:
    """How the map was computed, in words (which Score-CAM ran matters for its cost and accuracy)."""
    if e.method == "gradcam":
        return "gradients (one forward and one backward pass)"
    passes = f"{e.passes} masked pass{'' if e.passes == 1 else 'es'}"
    if e.mode == "fast":
        return f"fast Score-CAM: {passes} (a sample of the {e.layer} channels)"
    return f"exact Score-CAM: {passes} (every non-constant {e.layer} channel)"


def faithfulness_text(value: float) -> str:
    """The keep-remove score, or 'n/a' when it was not computed."""
    return "n/a" if value is None or math.isnan(value) else f"{value:+.3f}"


def details(e: Explanation) -> dict:
    """The numbers of an explanation, JSON-ready (for API clients)."""
    return {"method": e.method, "mode": e.mode, "masked_passes": e.passes, "layer": e.layer,
            "target": e.target, "label": e.label, "probability": round(e.probability, 6),
            "faithfulness": None if math.isnan(e.faithfulness) else round(e.faithfulness, 6),
            "seconds": round(e.seconds, 4), "image_size": [e.image.width, e.image.height]}


def summary(e: Explanation) -> str:
    """A short Markdown account of one explanation."""
    return (f"**{METHOD_NAMES[e.method]}** for class **{md_escape(e.label)}** (p = {e.probability:.3f})  \n"
            f"Computed by {mode_text(e)} in **{e.seconds:.2f} s**; "
            f"faithfulness (keep-remove, -1 to 1, higher is better): **{faithfulness_text(e.faithfulness)}**")


def render(e: Explanation, opacity: float) -> tuple[Image.Image, Image.Image]:
    """(colour heatmap, overlay at `opacity`) of an explanation; cheap, no model call."""
    return heatmap_image(e.heatmap), e.overlay(check_opacity(opacity))


def check_explain(served: Served, path: Optional[str], method: str, target: Optional[str] = PREDICTED,
                  opacity: float = 0.5) -> ExplainRequest:
    """Every input of an explanation checked, the image decoded: what `run_explain` needs."""
    if method not in METHOD_NAMES and method != "compare":
        raise UserError(f"Unknown method {method!r}; choose from {', '.join(METHOD_NAMES)}.")
    clf = require(served)
    opacity = check_opacity(opacity)
    img = read_image(path)
    return ExplainRequest(method, img, target_label(target, clf.labels), opacity)


def run_explain(served: Served, request: ExplainRequest) -> ExplainResult:
    """Grad-CAM or Score-CAM (fast on CPU, exact on GPU) of a checked request."""
    clf = require(served)
    e = clf.explain(request.image, method=request.method, target=request.label, max_channels=served.max_channels)
    heat, over = render(e, request.opacity)
    return ExplainResult(e, heat, over, summary(e), details(e))


def explain(served: Served, path: Optional[str], method: str, target: Optional[str] = PREDICTED,
            opacity: float = 0.5) -> ExplainResult:
    """Grad-CAM or Score-CAM of the predicted or chosen class: check, then run."""
    return run_explain(served, check_explain(served, path, method, target, opacity))


def run_compare(served: Served, request: ExplainRequest) -> CompareResult:
    """Both methods on the same image and class, each with its time and faithfulness score."""
    grad = run_explain(served, replace(request, method="gradcam"))
    # Pin Score-CAM to the class Grad-CAM explained, so "predicted" cannot mean two classes.
    score = run_explain(served, replace(request, method="scorecam", label=grad.explanation.label))
    rows = [f"| {METHOD_NAMES[r.explanation.method]} | {md_escape(mode_text(r.explanation))} | "
            f"{r.explanation.seconds:.2f} s | {faithfulness_text(r.explanation.faithfulness)} |"
            for r in (grad, score)]
    table = (f"Class **{md_escape(grad.explanation.label)}** (p = {grad.explanation.probability:.3f})\n\n"
             "| Method | How | Time | Faithfulness |\n|---|---|---|---|\n" + "\n".join(rows))
    return CompareResult(grad, score, table)


def compare(served: Served, path: Optional[str], target: Optional[str] = PREDICTED,
            opacity: float = 0.5) -> CompareResult:
    """Grad-CAM and Score-CAM of one image and class: check, then run both."""
    return run_compare(served, check_explain(served, path, "compare", target, opacity))
