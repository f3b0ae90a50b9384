"""The app's work as plain functions: classify, explain (Grad-CAM / Score-CAM), compare.

Every explanation carries its faithfulness figures (deletion/insertion areas and curves, the two
baselines, keep-remove; see `hub.explain.faithfulness`); Compare adds how far the two maps agree.
A class "A vs B" explains A rather than B. When the image comes with an expert region (an annotated
example), the pictures show its outline and the text says whether the map points into it.

No Gradio here: each function takes the `Served` model and an image path and returns plain data
(dicts, PIL images, Markdown), so it is tested directly. A request the app cannot serve raises
`UserError`, whose message is shown to the user as it is.

Each task is three steps, in this order in this file: a cheap check on the CPU (`check_image`,
`check_explain`: the image decodes, the class exists, the opacity is in range), the model work
(`classify_batch`, `run_explain`, `run_figures`, `run_compare`: plain `Explanation`s) and the rendering
of its answer (`result`, `compare_result`: pictures, Markdown, JSON). On ZeroGPU only the model work runs
on a GPU, so a bad request never asks for one; `space.endpoints` chains the three for each endpoint.
`classify`, `explain` and `compare` chain them in one call, for tests and scripts.
"""
from __future__ import annotations

import html
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Optional

import numpy as np
from PIL import Image

from hub.annotations import Region
from hub.display import METHOD_NAMES
from hub.errors import UserError
from hub.explain.explanation import Explanation, jet
from hub.explain.faithfulness import agreement
from hub.explain.localisation import TOLERANCE, Localisation, localise
from hub.explain.render import draw_region
from hub.images import ImageError, check_header, load_image
from hub.model import VERSUS, resolve_contrast
from space.curves import curve_plot
from space.serving import Served, autocast

# Larger uploads are shrunk before explaining: the model sees ~224 px anyway, and a heatmap and
# overlay at the full 64 MP the loader allows would take gigabytes per request.
DISPLAY_MAX_SIDE = 2048
PREDICTED = ""  # target value meaning "the predicted class"


@dataclass(frozen=True)
class ExplainRequest:
    """A checked explanation request: method, decoded image, class (None: the predicted one), opacity,
    and the image's expert region (None: the image has no annotation)."""

    method: str
    image: Image.Image
    label: Optional[str]
    opacity: float
    region: Optional[Region] = None


@dataclass(frozen=True)
class ExplainResult:
    """One explanation, rendered: colour heatmap, overlay, curve plot, a Markdown summary and plain numbers;
    with an expert region, its outline on both pictures and where the map lands against it."""

    explanation: Explanation
    heatmap: Image.Image
    overlay: Image.Image
    summary: str
    details: dict
    curves: Optional[Image.Image]  # None when the figures were not computed
    region: Optional[Region] = None
    localisation: Optional[Localisation] = None


@dataclass(frozen=True)
class CompareResult:
    """Grad-CAM and Score-CAM of one image and class, how far they agree, and a Markdown table of both."""

    gradcam: ExplainResult
    scorecam: ExplainResult
    table: str
    agreement: dict


# ---- 1. checks, on the CPU: every input of a request, before any model work ------------------------------------

def require(served: Served):
    """The served Classifier, or a UserError naming why no model is loaded."""
    if served.classifier is None:
        raise UserError(f"The model is not available: {served.error}")
    return served.classifier


def read_image(path: Optional[str], max_side: int = DISPLAY_MAX_SIDE) -> Image.Image:
    """Decode an uploaded file with the project's checks; shrink it to `max_side` for display."""
    with upload_errors(path):
        img = load_image(path)
    if max(img.size) > max_side:
        img = img.copy()
        img.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    return img


def check_upload(served: Served, path: Optional[str]) -> None:
    """What `check_image` refuses without decoding a pixel (no model, no upload, a file that is no image, too large,
    a DICOM file without pixels or with several frames): the app's validators run it before a request queues."""
    require(served)
    with upload_errors(path):
        check_header(path)


@contextmanager
def upload_errors(path: Optional[str]) -> Iterator[None]:
    """No upload, or the loader's ImageError, as the UserError a user reads (their file by its name)."""
    if path is None or str(path) == "":
        raise UserError("No image: upload one (or pick a sample in the Examples tab) first.")
    try:
        yield
    except ImageError as exc:
        # The loader names the temporary upload path; the user knows their file by its name.
        raise UserError(str(exc).replace(str(path), f"'{Path(path).name}'")) from None


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


def check_explain(served: Served, path: Optional[str], method: str, target: Optional[str] = PREDICTED,
                  opacity: float = 0.5, region: Optional[Region] = None) -> ExplainRequest:
    """Every input of an explanation checked, the image decoded: what `run_explain` needs. `region`: the
    image's expert region, when it has one (`space.samples.ExpertRegions`)."""
    if method not in METHOD_NAMES and method != "compare":
        raise UserError(f"Unknown method {method!r}; choose from {', '.join(METHOD_NAMES)}.")
    clf = require(served)
    opacity = check_opacity(opacity)
    img = read_image(path)
    return ExplainRequest(method, img, target_label(target, clf.labels), opacity, region)


def check_figures(served: Served, last: Optional[ExplainResult]) -> Explanation:
    """The session's last explanation, checked before its figures are measured (the second step of a CAM tab)."""
    require(served)
    if last is None:
        raise UserError("No explanation to measure yet: run Grad-CAM or Score-CAM on an image first.")
    return last.explanation


# ---- 2. the model work (on a GPU under ZeroGPU): plain answers, nothing drawn -----------------------------------

def classify_batch(served: Served, images: list[Image.Image]) -> list[dict[str, float]]:
    """Label -> probability for each image, most likely first: one forward pass for the whole batch."""
    clf = require(served)
    with autocast(clf):
        return clf.predict_batch(images)


def run_explain(served: Served, request: ExplainRequest, figures: bool = True) -> Explanation:
    """Grad-CAM or Score-CAM (fast on CPU, exact on GPU) of a checked request, with its faithfulness figures
    unless `figures` is False (the CAM tabs show the map first, then `run_figures` adds them)."""
    clf = require(served)
    try:
        return clf.explain(request.image, method=request.method, target=request.label,
                           max_channels=served.max_channels, faithfulness=figures)
    except ValueError as exc:  # e.g. a model whose input is too small for its last feature stage
        raise UserError(str(exc)) from None


def run_figures(served: Served, e: Explanation) -> Explanation:
    """`e` with its faithfulness figures (measured once: a measured explanation comes back as it is)."""
    return e if e.faithfulness is not None else require(served).faithfulness(e)


def run_compare(served: Served, request: ExplainRequest) -> tuple[Explanation, Explanation]:
    """Grad-CAM and Score-CAM of the same image and class, each with its time and faithfulness figures."""
    grad = run_explain(served, replace(request, method="gradcam"))
    # Pin Score-CAM to the class Grad-CAM explained, so "predicted" cannot mean two classes.
    score = run_explain(served, replace(request, method="scorecam", label=request.label or grad.label))
    return grad, score


# ---- 3. rendering, on the CPU: pictures, Markdown and JSON of an answer ---------------------------------------

def md_escape(text: str) -> str:
    """`text` safe inside Markdown/HTML: tags escaped, Markdown punctuation backslashed."""
    return re.sub(r"([\\`*_{}\[\]()#+\-.!|~>])", r"\\\1", html.escape(str(text), quote=True))


def heatmap_image(heatmap: np.ndarray) -> Image.Image:
    """The raw [0, 1] heatmap as an RGB image in the same jet colours as the overlay."""
    return Image.fromarray((jet(heatmap) * 255.0 + 0.5).astype(np.uint8))


# What a Score-CAM mask removed became (hub.explain.imputation), in words.
FILL_WORDS = {"blur": "what a mask hides blurred", "linear": "what a mask hides filled from its surroundings",
              "constant": "what a mask hides set to the mean colour"}


def mode_text(e: Explanation) -> str:
    """How the map was computed, in words (which Score-CAM ran matters for its cost and accuracy)."""
    if e.method == "gradcam":
        return "gradients (one forward and one backward pass)"
    passes = f"{e.passes} masked pass{'' if e.passes == 1 else 'es'}"
    fill = FILL_WORDS.get(e.fill, f"{e.fill} fill")
    if e.mode == "fast":
        return f"fast Score-CAM: {passes} (a sample of the {e.layer} channels), {fill}"
    return f"exact Score-CAM: {passes} (every non-constant {e.layer} channel), {fill}"


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


def region_kind(region: Region) -> str:
    """What the expert drew, in one word: "box" (boxes) or "mask"."""
    return "mask" if region.pixels is not None else "box"


def localisation_text(loc: Localisation, region: Region) -> str:
    """Where the map lands against the expert's region, in one line (hit: its peak is in or near it)."""
    return (f"pointing game: {'hit' if loc.hit else 'miss'}, energy in {region_kind(region)}: {loc.energy:.2f} "
            f"({loc.ratio:.1f}x its area share)")


def localisation_details(loc: Optional[Localisation], region: Optional[Region]) -> Optional[dict]:
    """The localisation figures, JSON-ready (None when the image has no expert region)."""
    if loc is None or region is None:
        return None
    return {"region": region_kind(region), **rounded(loc.to_dict()), "tolerance_px": TOLERANCE}


def details(e: Explanation, loc: Optional[Localisation] = None, region: Optional[Region] = None) -> dict:
    """The numbers of an explanation, JSON-ready (for API clients), faithfulness figures and curves included,
    and where it lands against the image's expert region (`localisation`: None without one)."""
    return {"method": e.method, "mode": e.mode, "masked_passes": e.passes, "layer": e.layer, "fill": e.fill,
            "target": e.target, "label": e.label, "rival": e.rival_label, "probability": round(e.probability, 6),
            "faithfulness": rounded(e.faithfulness), "seconds": round(e.seconds, 4),
            "image_size": [e.image.width, e.image.height], "localisation": localisation_details(loc, region)}


def summary(e: Explanation, loc: Optional[Localisation] = None, region: Optional[Region] = None) -> str:
    """A short Markdown account of one explanation (and where it lands against the expert's region)."""
    text = (f"**{METHOD_NAMES[e.method]}** for {class_text(e)} (p = {e.probability:.3f})  \n"
            f"Computed by {mode_text(e)} in **{e.seconds:.2f} s**  \n{figures_text(e)}")
    if loc is not None and region is not None:
        text += f"  \nExpert {region_kind(region)}: {localisation_text(loc, region)}"
    return text


def render(e: Explanation, opacity: float, region: Optional[Region] = None) -> tuple[Image.Image, Image.Image]:
    """(colour heatmap, overlay at `opacity`) of an explanation, with the expert region's outline on both
    when there is one (it stays put as the slider moves between them); cheap, no model call."""
    heat, over = heatmap_image(e.heatmap), e.overlay(check_opacity(opacity))
    if region is None:
        return heat, over
    return draw_region(heat, region), draw_region(over, region)


def curves_image(e: Explanation) -> Image.Image:
    """The deletion and insertion curves of a measured explanation, with the random baseline's."""
    if e.faithfulness is None:
        raise UserError("This explanation has no faithfulness figures yet.")
    return curve_plot(e.faithfulness)


def result(e: Explanation, opacity: float, region: Optional[Region] = None) -> ExplainResult:
    """An explanation rendered for the app: heatmap, overlay, summary, details and curves (when measured);
    with `region`, its outline on the pictures and the pointing game and energy in the text."""
    loc = localise(e.heatmap, region) if region is not None else None
    heat, over = render(e, opacity, region)
    return ExplainResult(e, heat, over, summary(e, loc, region), details(e, loc, region),
                         curves_image(e) if e.faithfulness else None, region, loc)


def with_figures(last: ExplainResult, e: Explanation) -> ExplainResult:
    """`last` once its explanation `e` has been measured: text, numbers and curves redone, pictures kept."""
    loc, region = last.localisation, last.region
    return replace(last, explanation=e, summary=summary(e, loc, region), details=details(e, loc, region),
                   curves=curves_image(e))


def compare_result(grad: Explanation, score: Explanation, opacity: float,
                   region: Optional[Region] = None) -> CompareResult:
    """Both methods rendered side by side, how far their maps agree, and a Markdown table of both (with the
    pointing game and energy of each when the image has an expert region)."""
    gradcam, scorecam = result(grad, opacity, region), result(score, opacity, region)
    agree = rounded(agreement(grad.heatmap, score.heatmap))
    rows = []
    for e in (grad, score):
        f = e.faithfulness
        rows.append(f"| {METHOD_NAMES[e.method]} | {md_escape(mode_text(e))} | {e.seconds:.2f} s | "
                    f"{f['deletion']:.3f} | {f['insertion']:.3f} | {mark(f['beats_baselines'])} | "
                    f"{f['keep_remove']:+.3f} |")
    table = (f"Explained: {class_text(grad)} (p = {grad.probability:.3f})\n\n"
             "| Method | How | Time | Deletion ↓ | Insertion ↑ | Beats baselines | Keep-remove |\n"
             "|---|---|---|---|---|---|---|\n" + "\n".join(rows) +
             f"\n\nAgreement of the two maps: rank correlation **{agree['rank_correlation']:.2f}**, "
             f"overlap of their top 20% **{agree['top_overlap']:.0%}**.")
    if region is not None:
        table += f"\n\nAgainst the expert {region_kind(region)}:" + "".join(
            f"\n- **{METHOD_NAMES[r.explanation.method]}**: {localisation_text(r.localisation, region)}"
            for r in (gradcam, scorecam))
    return CompareResult(gradcam, scorecam, table, agree)


# ---- all three in one call (tests, scripts) ----------------------------------------------------------------------

def classify(served: Served, path: Optional[str]) -> dict[str, float]:
    """Label -> probability for the uploaded image, most likely first."""
    return classify_batch(served, [check_image(served, path)])[0]


def explain(served: Served, path: Optional[str], method: str, target: Optional[str] = PREDICTED,
            opacity: float = 0.5, figures: bool = True, region: Optional[Region] = None) -> ExplainResult:
    """Grad-CAM or Score-CAM of the predicted or chosen class: check, run, render."""
    request = check_explain(served, path, method, target, opacity, region)
    return result(run_explain(served, request, figures), request.opacity, request.region)


def compare(served: Served, path: Optional[str], target: Optional[str] = PREDICTED,
            opacity: float = 0.5, region: Optional[Region] = None) -> CompareResult:
    """Grad-CAM and Score-CAM of one image and class: check, run both, render."""
    request = check_explain(served, path, "compare", target, opacity, region)
    return compare_result(*run_compare(served, request), request.opacity, request.region)
