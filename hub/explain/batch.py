"""Explain many images in one go: an overlay per image and method, and a CSV of what was found.

    python -m hub explain runs/demo/model runs/demo/data/ring --method both --out runs/demo/explained
    python -m hub explain org/her2-resnet50@v2 scans/*.png --method scorecam --max-channels exact --out out

Images come as files or folders (searched recursively). An image inside a folder named after one
of the model's labels has a known true class; `--faithfulness` then explains that class and
averages each method's faithfulness score, which `record_faithfulness` writes into the model
folder's metrics.json and card. An unreadable image becomes a CSV row with its error: one bad
file never stops the batch, and rows already written stay on disk if the run is interrupted.
"""
from __future__ import annotations

import csv
import json
import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Protocol

import numpy as np
from torch import nn

from hub.explain.cam import MaxChannels
from hub.explain.explanation import Explanation, explain
from hub.files import write_atomic
from hub.images import ImageError, ImageInput, find_images, load_image
from hub.model import labels_of, resolve_target


class Explainer(Protocol):
    """What the batch needs of a model: its labels and `explain` (a `hub.Classifier` is one). An interface
    rather than the class, because the Classifier sits a layer above the explanation engine."""

    labels: list[str]

    def explain(self, image: ImageInput, method: str = ..., target: int | str | None = ...,
                max_channels: MaxChannels = ..., **options) -> Explanation: ...


COLUMNS = ("image", "true_label", "predicted", "predicted_probability", "method", "mode", "masked_passes",
           "target", "target_probability", "faithfulness", "seconds", "overlay", "error")
CSV_NAME = "explanations.csv"
SUMMARY_NAME = "faithfulness.json"


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


def explain_images(clf: Explainer, items: Sequence[Item], methods: Sequence[str], out: str | Path,
                   max_channels: MaxChannels = "auto", target: Optional[str] = None, true_class: bool = False,
                   opacity: float = 0.5, progress: bool = True, **options) -> list[dict]:
    """Explain every item with every method; write overlays and the CSV under `out`; return the rows.

    The target is the true class when `true_class` (items without one are refused up front),
    else `target` (a label) when given, else the predicted class.
    """
    from tqdm.auto import tqdm

    if true_class:
        unlabelled = [str(i.path) for i in items if i.truth is None]
        if unlabelled:
            raise ValueError(f"{len(unlabelled)} image(s) are not in a folder named after one of the model's labels "
                             f"{clf.labels} (e.g. {unlabelled[0]}); faithfulness is measured on the true class")
    resolve_target(target, clf.labels)  # an unknown label is refused before anything is written
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
            for method in methods:
                row = dict.fromkeys(COLUMNS, "")
                row.update(image=str(item.path), true_label=truth, method=method)
                if img is None:
                    row["error"] = error
                else:
                    e = clf.explain(img, method=method, max_channels=max_channels,
                                    target=truth if true_class else target, **options)
                    name = overlay_name(index, item.path, method)
                    e.overlay(opacity).save(out / "overlays" / name)
                    best = int(np.argmax(e.probabilities))
                    row.update(predicted=clf.labels[best], predicted_probability=f"{e.probabilities[best]:.6f}",
                               mode=e.mode, masked_passes=e.passes, target=e.label,
                               target_probability=f"{e.probability:.6f}",
                               faithfulness="" if math.isnan(e.faithfulness) else f"{e.faithfulness:.6f}",
                               seconds=f"{e.seconds:.4f}", overlay=f"overlays/{name}")
                writer.writerow(row)
                fh.flush()  # an interrupted batch keeps the rows it finished
                rows.append(row)
                bar.update()
    bar.close()
    return rows


def summarise(rows: Sequence[dict]) -> dict[str, dict]:
    """Per method: mean/std faithfulness, images explained, mode, masked passes and mean seconds."""
    out = {}
    for method in dict.fromkeys(r["method"] for r in rows):
        done = [r for r in rows if r["method"] == method and not r["error"]]
        scores = np.array([float(r["faithfulness"]) for r in done if r["faithfulness"] != ""], np.float64)
        if not done or not len(scores):
            continue
        out[method] = {"mean": round(float(scores.mean()), 6), "std": round(float(scores.std()), 6),
                       "images": len(scores), "mode": done[0]["mode"],
                       "masked_passes": max(int(r["masked_passes"]) for r in done),
                       "seconds": round(float(np.mean([float(r["seconds"]) for r in done])), 4),
                       "score": "keep-remove@20%", "target": "true class"}
    return out


def record_faithfulness(folder: str | Path, summary: dict[str, dict]) -> None:
    """Put `summary` under "faithfulness" in the model folder's metrics.json and re-render its card."""
    from hub.card import render_card_from_folder

    folder = Path(folder)
    metrics_path = folder / "metrics.json"
    if not metrics_path.is_file():
        raise ValueError(f"{folder}: no metrics.json (not a model folder written by `python -m train`)")
    old_metrics = metrics_path.read_text()
    metrics = json.loads(old_metrics)
    metrics["faithfulness"] = summary
    write_atomic(metrics_path, json.dumps(metrics, indent=2) + "\n")
    try:
        card = render_card_from_folder(folder)
    except Exception:
        write_atomic(metrics_path, old_metrics)  # keep metrics.json and README.md in step
        raise
    write_atomic(folder / "README.md", str(card))


def is_model_folder(source: str) -> bool:
    """True when `source` is a local folder with a metrics.json we may update."""
    return (Path(source) / "metrics.json").is_file()


def mean_faithfulness(model: nn.Module, root: str | Path, methods: Iterable[str] = ("gradcam", "scorecam"),
                      max_images: Optional[int] = None, max_channels: MaxChannels = "exact",
                      labels: Optional[list[str]] = None, **options) -> dict[str, dict]:
    """Per method: mean/std of the keep-remove score over a class-per-folder directory (true class as target)."""
    labels = list(labels) if labels is not None else labels_of(model)
    if not Path(root).is_dir():
        raise ValueError(f"{root}: not a directory of class folders")
    items = [i for i in collect_images([root], labels) if i.truth is not None]
    if not items:
        raise ValueError(f"{root}: no images in folders named after the model's labels {labels}")
    if max_images is not None and max_images < len(items):
        # Evenly spaced over the class-sorted list: deterministic and spread over every class.
        items = [items[i] for i in np.linspace(0, len(items) - 1, max_images).round().astype(int)]
    out = {}
    for method in methods:
        runs = [explain(model, i.path, method=method, target=i.truth, max_channels=max_channels,
                        labels=labels, **options) for i in items]
        scores = np.array([r.faithfulness for r in runs], np.float64)
        if np.isnan(scores).any():
            raise ValueError("faithfulness was switched off (faithfulness=False); nothing to average")
        out[method] = {"mean": float(scores.mean()), "std": float(scores.std()), "images": len(runs),
                       "mode": runs[0].mode, "passes": max(r.passes for r in runs),
                       "seconds": float(np.mean([r.seconds for r in runs]))}
    return out
