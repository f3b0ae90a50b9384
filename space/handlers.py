"""The app's work as plain functions: classify, explain (Grad-CAM / Score-CAM), compare.

Every explanation carries its faithfulness figures (deletion/insertion areas and curves, the two
baselines, keep-remove; see `hub.explain.faithfulness`); Compare adds how far the two maps agree.
A class "A vs B" explains A rather than B.

No Gradio here: each function takes the `Served` model and an image path and returns plain data
(dicts, PIL images, Markdown), so it is tested directly and the UI is only wiring. A request the
app cannot serve raises `UserError`, whose message is shown to the user as it is.

Each task is two steps: a cheap check on the CPU (`check_image`, `check_explain`: the image decodes,
the class exists, the opacity is in range) and the model work (`classify_batch`, `run_explain`,
`run_compare`). On ZeroGPU only the second runs on a GPU, so a bad request never asks for one.
"""
from __future__ import annotations

import html
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Optional

import numpy as np
from PIL import Image

from hub.errors import UserError
from hub.explain.explanation import Explanation, jet
from hub.explain.faithfulness import agreement
from hub.images import ImageError, load_image
from hub.model import VERSUS, resolve_contrast
from space.curves import curve_plot
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
    """One explanation, rendered: colour heatmap, overlay, curve plot, a Markdown summary and plain numbers."""

    explanation: Explanation
    heatmap: Image.Image
    overlay: Image.Image
    summary: str
    details: dict
    curves: Optional[Image.Image]  # None when the figures were not computed


@dataclass(frozen=True)
class CompareResult:
    """Grad-CAM and Score-CAM of one image and class, how far they agree, and a Markdown table of both."""

    gradcam: ExplainResult
    scorecam: ExplainResult
    table: str
    agreement: dict


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
    """None for the predicted class ('' or None), else a label or "A vs B" (checked by `resolve_contrast`)."""
    if target is None or target == PREDICTED:
        return None
    try:
        resolve_contrast(str(target), labels)
    except ValueError as exc:
        if "twice" in str(exc):
            raise UserError(f"'A vs B' needs two different classes, got {target!r}.") from None
        unknown = [t for t in str(target).split(VERSUS) if t not in labels] or [target]
        raise UserError(f"Unknown class {unknown[0]!r}; the model's classes are: {', '.join(labels)}.") from None
    return str(target)


def target_choices(labels: list[str]) -> list[str]:
    """Every class, then every "A vs B" pair (A rather than B), as the class dropdowns offer them."""
    return [*labels, *[f"{a}{VERSUS}{b}" for a in labels for b in labels if a != b]]


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


def rounded(value, digits: int = 6):
    """Floats in nested dicts and lists rounded for JSON answers."""
    if isinstance(value, float):
        return round(value, digits)
    if isinstance(value, dict):
        return {k: rounded(v, digits) for k, v in value.items()}
    if isinstance(value, list):
        return [rounded(v, digits) for v in value]
    return value


def mark(ok: bool) -> str:
    """A check mark or a cross."""
    return "✓" if ok else "✗"


def figures_text(e: Explanation) -> str:
    """Deletion and insertion areas, the beats-baselines mark and keep-remove, in one Markdown line."""
    f = e.faithfulness
    if f is None:
        return "faithfulness: not measured yet"
    beats = f["beats"]
    return (f"deletion **{f['deletion']:.3f}** (lower is better), insertion **{f['insertion']:.3f}** (higher is "
            f"better); beats the baselines **{mark(f['beats_baselines'])}** (random {mark(beats['random'])}, "
            f"centre {mark(beats['centre'])}); keep-remove {f['keep_remove']:+.3f}")


def class_text(e: Explanation) -> str:
    """The explained class, or "A rather than B"."""
    text = f"class **{md_escape(e.label)}**"
    return text if e.rival_label is None else f"{text} rather than **{md_escape(e.rival_label)}**"


def details(e: Explanation) -> dict:
    """The numbers of an explanation, JSON-ready (for API clients), faithfulness figures and curves included."""
    return {"method": e.method, "mode": e.mode, "masked_passes": e.passes, "layer": e.layer,
            "target": e.target, "label": e.label, "rival": e.rival_label, "probability": round(e.probability, 6),
            "faithfulness": rounded(e.faithfulness), "seconds": round(e.seconds, 4),
            "image_size": [e.image.width, e.image.height]}


def summary(e: Explanation) -> str:
    """A short Markdown account of one explanation."""
    return (f"**{METHOD_NAMES[e.method]}** for {class_text(e)} (p = {e.probability:.3f})  \n"
            f"Computed by {mode_text(e)} in **{e.seconds:.2f} s**  \n{figures_text(e)}")


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


def run_explain(served: Served, request: ExplainRequest, figures: bool = True) -> ExplainResult:
    """Grad-CAM or Score-CAM (fast on CPU, exact on GPU) of a checked request, with its faithfulness figures
    unless `figures` is False (the CAM tabs show the map first, then `run_figures` adds them)."""
    clf = require(served)
    try:
        e = clf.explain(request.image, method=request.method, target=request.label, max_channels=served.max_channels,
                        faithfulness=figures)
    except ValueError as exc:  # e.g. a model whose input is too small for its last feature stage
        raise UserError(str(exc)) from None
    return result(e, request.opacity)


def result(e: Explanation, opacity: float) -> ExplainResult:
    """An explanation rendered for the app: heatmap, overlay, summary, details and curves (when measured)."""
    heat, over = render(e, opacity)
    return ExplainResult(e, heat, over, summary(e), details(e), curves_image(e) if e.faithfulness else None)


def check_figures(served: Served, e: Optional[Explanation]) -> Explanation:
    """The session's last explanation, checked before its figures are measured (the second step of a CAM tab)."""
    require(served)
    if e is None:
        raise UserError("No explanation to measure yet: run Grad-CAM or Score-CAM on an image first.")
    return e


def run_figures(served: Served, e: Explanation) -> Explanation:
    """`e` with its faithfulness figures (measured once: a measured explanation comes back as it is)."""
    return e if e.faithfulness is not None else require(served).faithfulness(e)


def curves_image(e: Explanation) -> Image.Image:
    """The deletion and insertion curves of a measured explanation, with the random baseline's."""
    if e.faithfulness is None:
        raise UserError("This explanation has no faithfulness figures yet.")
    return curve_plot(e.faithfulness)


def explain(served: Served, path: Optional[str], method: str, target: Optional[str] = PREDICTED,
            opacity: float = 0.5, figures: bool = True) -> ExplainResult:
    """Grad-CAM or Score-CAM of the predicted or chosen class: check, then run."""
    return run_explain(served, check_explain(served, path, method, target, opacity), figures)


def run_compare(served: Served, request: ExplainRequest) -> CompareResult:
    """Both methods on the same image and class, each with its time and faithfulness figures, and their agreement."""
    grad = run_explain(served, replace(request, method="gradcam"))
    # Pin Score-CAM to the class Grad-CAM explained, so "predicted" cannot mean two classes.
    score = run_explain(served, replace(request, method="scorecam", label=request.label or grad.explanation.label))
    agree = rounded(agreement(grad.explanation.heatmap, score.explanation.heatmap))
    rows = []
    for r in (grad, score):
        e, f = r.explanation, r.explanation.faithfulness
        rows.append(f"| {METHOD_NAMES[e.method]} | {md_escape(mode_text(e))} | {e.seconds:.2f} s | "
                    f"{f['deletion']:.3f} | {f['insertion']:.3f} | {mark(f['beats_baselines'])} | "
                    f"{f['keep_remove']:+.3f} |")
    table = (f"Explained: {class_text(grad.explanation)} (p = {grad.explanation.probability:.3f})\n\n"
             "| Method | How | Time | Deletion ↓ | Insertion ↑ | Beats baselines | Keep-remove |\n"
             "|---|---|---|---|---|---|---|\n" + "\n".join(rows) +
             f"\n\nAgreement of the two maps: rank correlation **{agree['rank_correlation']:.2f}**, "
             f"overlap of their top 20% **{agree['top_overlap']:.0%}**.")
    return CompareResult(grad, score, table, agree)


def compare(served: Served, path: Optional[str], target: Optional[str] = PREDICTED,
            opacity: float = 0.5) -> CompareResult:
    """Grad-CAM and Score-CAM of one image and class: check, then run both."""
    return run_compare(served, check_explain(served, path, "compare", target, opacity))
