"""Explain many images in one go: an overlay per image and method, and a CSV of what was found.

    python -m hub explain runs/demo/model runs/demo/data/ring --method both --out runs/demo/explained
    python -m hub explain org/her2-resnet50@v2 scans/*.png --method scorecam --max-channels exact --out out

Images come as files or folders (searched recursively). An image inside a folder named after one
of the model's labels has a known true class; `--faithfulness` then explains that class and
summarises each method's faithfulness figures (deletion and insertion areas with bootstrap
intervals, the share of images where the map beats each baseline, keep-remove) and its sanity
check, which `hub.records.record_faithfulness` writes into the model folder's metrics.json and card, with a
figure of example overlays. An unreadable image becomes a CSV row with its error: one bad file
never stops the batch, and rows already written stay on disk if the run is interrupted.
Each image and method is a `Row` of numbers; `csv_row` formats it, only when the CSV is written.
With `--annotations` (expert regions, `hub.annotations`) the annotated images' true class is also scored
against its region (`hub.explain.lesion`): localisation.csv, localisation.json, and `hub.records.record_localisation`
into metrics.json and the card. The annotations are read, and refused, before anything is written.
"""
from __future__ import annotations

import csv
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Optional, Protocol

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageOps
from torch import nn

from hub.annotations import Annotations, Region, read_annotations
from hub.display import METHOD_NAMES
from hub.explain.cam import SCORECAM_FILL, MaxChannels
from hub.explain.explanation import Explanation, Target, explain
from hub.explain.faithfulness import BASELINES, IMPUTATION, STEPS, Figures, agreement
from hub.explain.lesion import LesionRow
from hub.explain.lesion import columns as lesion_columns
from hub.explain.lesion import csv_row as lesion_csv_row
from hub.explain.sanity import sanity_check
from hub.explain.stats import interval
from hub.images import ImageError, ImageInput, find_images, load_image
from hub.model import labels_of, resolve_contrast


class Explainer(Protocol):
    """What the batch needs of a model: its labels, preprocessing and `explain` (a `hub.Classifier` is one). An
    interface rather than the class, because the Classifier sits a layer above the explanation engine."""

    labels: list[str]
    model: nn.Module
    data_config: dict

    def explain(self, image: ImageInput, method: str = ..., target: Target = ...,
                max_channels: MaxChannels = ..., **options) -> Explanation: ...

    def preprocess(self, images: ImageInput) -> torch.Tensor: ...


FIGURES = ("deletion", "insertion", "keep_remove", *[f"{b}_{k}" for b in BASELINES for k in ("deletion", "insertion")],
           *[f"beats_{b}" for b in BASELINES])
AGREEMENT = ("rank_correlation", "top_overlap")  # Grad-CAM vs Score-CAM, on both rows (agreement_* columns)
COLUMNS = ("image", "true_label", "predicted", "predicted_probability", "method", "mode", "masked_passes",
           "target", "rival", "target_probability", *FIGURES, *[f"agreement_{k}" for k in AGREEMENT], "seconds",
           "overlay", "error")
CSV_NAME = "explanations.csv"
SUMMARY_NAME = "faithfulness.json"
SANITY_NAME = "sanity.json"
LOCALISATION_CSV = "localisation.csv"    # --annotations: one row per annotated image (hub.explain.lesion)
LOCALISATION_NAME = "localisation.json"  # --annotations: the lesion report
SANITY_IMAGES = 8   # images the sanity check re-explains 3 times per method (each cascade step)
TILE = 160          # pixels per image in the example figure


@dataclass(frozen=True)
class Item:
    """One image to explain and, when its folder says so, its true class index."""

    path: Path
    truth: Optional[int]


def true_label(parts: Sequence[str], labels: Sequence[str]) -> Optional[int]:
    """The class of an image from its folders, outermost first: the first folder named after a label.

    Training reads `DATA/<class>/any/depth/x.png` as <class>, so `hub explain DATA` (parts: DATA,
    <class>, any, depth) and `hub explain DATA/<class>` (parts: <class>, any, depth) agree with it.
    """
    return next((labels.index(part) for part in parts if part in labels), None)


def collect_images(inputs: Iterable[str | os.PathLike], labels: Sequence[str]) -> list[Item]:
    """Files as given and the images under folders (sorted); truth from the folders (see `true_label`)."""
    items, seen = [], set()
    for raw in inputs:
        path = Path(raw)
        if path.is_dir():
            found = find_images(path)
            if not found:
                raise ValueError(f"{path}: no image files in this folder (looked for .png, .jpg, .tif, ... files)")
            parts = [[path.name, *p.relative_to(path).parent.parts] for p in found]
        elif path.exists():
            found, parts = [path], [[path.parent.name]]
        else:
            raise ValueError(f"{path}: no such file or folder")
        for p, folders in zip(found, parts):
            key = p.resolve()
            if key not in seen:
                seen.add(key)
                items.append(Item(p, true_label(folders, labels)))
    if not items:
        raise ValueError("no images given")
    return items


def overlay_name(index: int, path: Path, method: str) -> str:
    """A collision-free file name: images from different folders may share a stem."""
    return f"{index:05d}_{path.stem}.{method}.png"


@dataclass(frozen=True)
class Scores:
    """One map's faithfulness figures, as the batch keeps them (`hub.explain.faithfulness.measure`)."""

    deletion: float
    insertion: float
    keep_remove: float
    baselines: Mapping[str, Mapping[str, float]]   # baseline -> {"deletion": area, "insertion": area}
    beats: Mapping[str, bool]                      # baseline -> the map's insertion - deletion is larger

    @classmethod
    def of(cls, f: Figures) -> Scores:
        """The figures of one explanation (`Explanation.faithfulness`)."""
        return cls(float(f["deletion"]), float(f["insertion"]), float(f["keep_remove"]),
                   {b: {k: float(f["baselines"][b][k]) for k in ("deletion", "insertion")} for b in BASELINES},
                   {b: bool(f["beats"][b]) for b in BASELINES})


@dataclass(frozen=True)
class Row:
    """One image and method of a batch: what was explained and found, or why the image could not be read."""

    image: Path
    method: str
    true_label: str = ""                   # "" when no folder of the image is named after a label
    predicted: str = ""
    predicted_probability: float = math.nan
    mode: str = ""                         # "gradient", "exact" or "fast"
    masked_passes: int = 0
    target: str = ""
    rival: str = ""                        # a contrastive target's B, else ""
    target_probability: float = math.nan
    scores: Optional[Scores] = None        # None when the figures were switched off (or the image unreadable)
    agreement: Optional[Mapping[str, float]] = None  # with the image's other method's map (AGREEMENT keys)
    seconds: float = math.nan
    overlay: str = ""                      # relative to --out; "" for an unreadable image
    error: str = ""                        # an unreadable image: why (nothing else set)
    fill: str = ""                         # Score-CAM's fill (hub.explain.imputation); "" for Grad-CAM


def explained_row(e: Explanation, image: Path, true_label: str, labels: Sequence[str], overlay: str = "") -> Row:
    """The row of one explanation `e` of `image`."""
    best = int(np.argmax(e.probabilities))
    return Row(image, e.method, true_label, labels[best], float(e.probabilities[best]), e.mode, e.passes, e.label,
               e.rival_label or "", e.probability, None if e.faithfulness is None else Scores.of(e.faithfulness),
               seconds=e.seconds, overlay=overlay, fill=e.fill or "")


def csv_row(row: Row) -> dict[str, str]:
    """`row` as explanations.csv writes it: the one place its numbers become text ('' for what it lacks)."""
    out = dict.fromkeys(COLUMNS, "")
    out.update(image=str(row.image), true_label=row.true_label, method=row.method, error=row.error)
    if row.error:
        return out
    out.update(predicted=row.predicted, predicted_probability=f"{row.predicted_probability:.6f}", mode=row.mode,
               masked_passes=str(row.masked_passes), target=row.target, rival=row.rival,
               target_probability=f"{row.target_probability:.6f}", seconds=f"{row.seconds:.4f}", overlay=row.overlay)
    f = row.scores
    if f is not None:
        out.update(deletion=f"{f.deletion:.6f}", insertion=f"{f.insertion:.6f}", keep_remove=f"{f.keep_remove:.6f}")
        for b in BASELINES:
            out.update({f"{b}_{k}": f"{f.baselines[b][k]:.6f}" for k in ("deletion", "insertion")},
                       **{f"beats_{b}": str(int(f.beats[b]))})
    for k, v in (row.agreement or {}).items():
        out[f"agreement_{k}"] = f"{v:.6f}"
    return out


def probe(clf: Explainer) -> None:
    """One Grad-CAM of a blank image: a layer too coarse for the model's input is refused before anything is written."""
    height, width = clf.data_config["input_size"][-2:]
    clf.explain(Image.new("RGB", (width, height), (128, 128, 128)), method="gradcam", faithfulness=False)


def explain_images(clf: Explainer, items: Sequence[Item], methods: Sequence[str], out: str | Path,
                   max_channels: MaxChannels = "auto", target: Target = None, true_class: bool = False,
                   opacity: float = 0.5, progress: bool = True, **options) -> list[Row]:
    """Explain every item with every method; write overlays and the CSV under `out`; return the rows.

    The target is the true class when `true_class` (items without one are refused up front),
    else `target` (a label, or "A vs B" / (A, B) for A rather than B) when given, else the predicted class.
    """
    from tqdm.auto import tqdm

    if true_class:
        unlabelled = [str(i.path) for i in items if i.truth is None]
        if unlabelled:
            raise ValueError(f"{len(unlabelled)} image(s) are not in a folder named after one of the model's labels "
                             f"{clf.labels} (e.g. {unlabelled[0]}); faithfulness is measured on the true class")
    resolve_contrast(target, clf.labels)  # an unknown or repeated label is refused before anything is written
    probe(clf)
    out = Path(out)
    (out / "overlays").mkdir(parents=True, exist_ok=True)
    rows = []
    bar = tqdm(total=len(items) * len(methods), desc="explain", unit="map", disable=not progress)
    with open(out / CSV_NAME, "w", newline="") as fh:
        writer = csv.DictWriter(fh, COLUMNS)
        writer.writeheader()
        for index, item in enumerate(items):
            truth = clf.labels[item.truth] if item.truth is not None else ""
            try:
                img = load_image(item.path)
            except ImageError as exc:
                img, error = None, str(exc)
            done, maps = [], {}
            for method in methods:
                if img is None:
                    done.append(Row(item.path, method, truth, error=error))
                else:
                    e = clf.explain(img, method=method, max_channels=max_channels,
                                    target=truth if true_class else target, **options)
                    name = overlay_name(index, item.path, method)
                    e.overlay(opacity).save(out / "overlays" / name)
                    done.append(explained_row(e, item.path, truth, clf.labels, f"overlays/{name}"))
                    maps[method] = e.heatmap
                bar.update()
            if len(maps) == 2:
                agree = agreement(*maps.values())
                done = [replace(row, agreement={k: float(agree[k]) for k in AGREEMENT}) for row in done]
            writer.writerows(csv_row(row) for row in done)
            fh.flush()  # an interrupted batch keeps the images it finished
            rows += done
    bar.close()
    return rows


def summarise(rows: Sequence[Row], steps: Optional[int] = None, imputation: Optional[str] = None) -> dict[str, dict]:
    """Per method: deletion/insertion (mean, 95% interval), keep-remove, baselines, share beating them, cost."""
    out = {}
    for method in dict.fromkeys(r.method for r in rows):
        done = [r for r in rows if r.method == method and not r.error and r.scores is not None]
        if not done:
            continue
        scores = [r.scores for r in done]
        beats = {b: [s.beats[b] for s in scores] for b in BASELINES}
        keep_remove = [s.keep_remove for s in scores]
        out[method] = {
            "deletion": interval([s.deletion for s in scores]), "insertion": interval([s.insertion for s in scores]),
            "keep_remove": {"mean": round(float(np.mean(keep_remove)), 6), "std": round(float(np.std(keep_remove)), 6)},
            "baselines": {b: {k: round(float(np.mean([s.baselines[b][k] for s in scores])), 6)
                              for k in ("deletion", "insertion")} for b in BASELINES},
            "beats": {**{b: round(float(np.mean(v)), 4) for b, v in beats.items()},
                      "both": round(float(np.mean([all(t) for t in zip(*beats.values())])), 4)},
            "images": len(done), "mode": done[0].mode, "masked_passes": max(r.masked_passes for r in done),
            **({"fill": done[0].fill} if done[0].fill else {}),
            "seconds": round(float(np.mean([r.seconds for r in done])), 4), "steps": steps, "imputation": imputation,
            "target": "true class"}
        paired = [r.agreement for r in done if r.agreement]
        if paired:
            out[method]["agreement"] = {k: round(float(np.mean([a[k] for a in paired])), 4) for k in AGREEMENT}
    return out


def spread(items: Sequence[Item], count: int) -> list[Item]:
    """`count` items evenly spaced over the class-sorted list: deterministic and spread over every class."""
    if count >= len(items):
        return list(items)
    return [items[i] for i in np.linspace(0, len(items) - 1, count).round().astype(int)]


def sanity_reports(clf: Explainer, items: Sequence[Item], methods: Sequence[str], max_channels: MaxChannels = "auto",
                   target: Target = None, true_class: bool = False, count: int = SANITY_IMAGES,
                   scorecam_fill: str = SCORECAM_FILL) -> dict[str, dict]:
    """`hub.explain.sanity.sanity_check` of each method on up to `count` readable items (spread over the classes)."""
    readable = []
    for item in items:
        try:
            readable.append((item, clf.preprocess(load_image(item.path))))
        except ImageError:
            continue
    if not readable:
        raise ValueError("no readable image to run the sanity check on")
    chosen = [readable[i] for i in np.linspace(0, len(readable) - 1, min(count, len(readable))).round().astype(int)]
    index, rival = resolve_contrast(target, clf.labels)
    targets = [item.truth if true_class else index for item, _ in chosen]
    return {m: sanity_check(clf.model, [x for _, x in chosen], m, targets, rival=rival, max_channels=max_channels,
                            scorecam_fill=scorecam_fill) for m in methods}


def example_figure(rows: Sequence[Row], out: str | Path, labels: Sequence[str]) -> Optional[Image.Image]:
    """One image per class (its first explained one): the image, then each method's overlay for its true class."""
    out, methods = Path(out), list(dict.fromkeys(r.method for r in rows))
    picks = []
    for label in labels:
        first = next((r.image for r in rows if r.true_label == label and r.overlay), None)
        if first is not None:
            overlays = {r.method: out / r.overlay for r in rows if r.image == first and r.overlay}
            picks.append((label, [Image.open(first), *[Image.open(overlays[m]) for m in methods if m in overlays]]))
    if not picks:
        return None
    head = 18
    sheet = Image.new("RGB", (TILE * (len(methods) + 1), head + (TILE + head) * len(picks)), "white")
    draw = ImageDraw.Draw(sheet)
    for col, title in enumerate(["image", *[METHOD_NAMES.get(m, m) for m in methods]]):
        draw.text((col * TILE + 4, 2), title, fill="black")
    for row, (label, tiles) in enumerate(picks):
        top = head + row * (TILE + head)
        draw.text((4, top + 2), f"true class: {label}", fill="black")
        for col, tile in enumerate(tiles):
            sheet.paste(ImageOps.contain(tile.convert("RGB"), (TILE, TILE)), (col * TILE, top + head))
    return sheet


def annotation_root(inputs: Sequence[str | os.PathLike]) -> Path:
    """The folder annotations are matched under: the IMAGES folder, an image file's own folder, or the folder
    that holds all of several (absolute)."""
    folders = [Path(p) if Path(p).is_dir() else Path(p).parent for p in inputs]
    return Path(os.path.commonpath([os.path.abspath(f) for f in folders]))


def read_item_annotations(source: str | os.PathLike, items: Sequence[Item],
                          inputs: Sequence[str | os.PathLike]) -> Annotations:
    """`hub.annotations.read_annotations` of the items' images, matched under `annotation_root(inputs)`, keyed
    by the items' paths as given."""
    given = {Path(os.path.abspath(i.path)): i.path for i in items}
    found = read_annotations(source, list(given), annotation_root(inputs))
    return Annotations({given[p]: r for p, r in found.regions.items()}, tuple(given[p] for p in found.missing),
                       found.source)


def reference_regions(data: str | os.PathLike, source: str | os.PathLike,
                      labels: Sequence[str]) -> list[tuple[Region, int]]:
    """(region, class index) of every annotated image in the class folders under `data`: the training images'
    regions that the shortcut check's place floor votes with (`hub.explain.place`)."""
    items = collect_images([data], labels)
    found = read_item_annotations(source, items, [data])
    return [(found.get(i.path), i.truth) for i in items if i.truth is not None and found.get(i.path) is not None]


def write_localisation(out: str | Path, rows: Sequence[LesionRow], labels: Sequence[str],
                       methods: Sequence[str]) -> Path:
    """The localisation CSV (one row per annotated image) in `out`."""
    path = Path(out) / LOCALISATION_CSV
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, lesion_columns(methods))
        writer.writeheader()
        writer.writerows(lesion_csv_row(r, labels, methods) for r in rows)
    return path


def mean_faithfulness(model: nn.Module, root: str | Path, methods: Iterable[str] = ("gradcam", "scorecam"),
                      max_images: Optional[int] = None, max_channels: MaxChannels = "exact",
                      labels: Optional[list[str]] = None, **options) -> dict[str, dict]:
    """`summarise` of each method's faithfulness figures over a class-per-folder directory (true class as target)."""
    labels = list(labels) if labels is not None else labels_of(model)
    if not Path(root).is_dir():
        raise ValueError(f"{root}: not a directory of class folders")
    items = [i for i in collect_images([root], labels) if i.truth is not None]
    if not items:
        raise ValueError(f"{root}: no images in folders named after the model's labels {labels}")
    items = spread(items, max_images or len(items))
    rows = []
    for method in methods:
        for item in items:
            e = explain(model, item.path, method=method, target=item.truth, max_channels=max_channels,
                        labels=labels, **options)
            if e.faithfulness is None:
                raise ValueError("faithfulness was switched off (faithfulness=False); nothing to summarise")
            rows.append(explained_row(e, item.path, labels[item.truth], labels))
    return summarise(rows, options.get("steps", STEPS), options.get("imputation", IMPUTATION))
