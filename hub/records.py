"""A local model folder's records: figures added to metrics.json after training, and the card kept in step.

Training writes a model folder once (`train/output.py`). Later commands add to it: `python -m hub explain`
(faithfulness, localisation and the example figure) and `python -m hub calibrate` (the temperature). Each change
goes through `update_metrics`, which re-renders README.md from the new metrics.json and puts metrics.json back
when the card cannot be rendered, so the two files never disagree.
"""
from __future__ import annotations

import io
import json
from collections.abc import Callable
from pathlib import Path

from PIL import Image

from hub.files import write_atomic
from hub.model import EXPLANATIONS


def is_model_folder(source: str | Path) -> bool:
    """True when `source` is a local folder with a metrics.json we may update."""
    return (Path(source) / "metrics.json").is_file()


def check_model_folder(folder: str | Path) -> Path:
    """`folder` if it has a metrics.json to update, else a ValueError saying what it is not."""
    if not is_model_folder(folder):
        raise ValueError(f"{folder}: no metrics.json (not a model folder written by `python -m train`)")
    return Path(folder)


def update_metrics(folder: str | Path, change: Callable[[dict], object]) -> None:
    """Apply `change` to the model folder's metrics.json and re-render its card; metrics.json is put back as it
    was when the card fails, so metrics.json and README.md stay in step."""
    from hub.card import render_card_from_folder

    metrics_path = Path(folder) / "metrics.json"
    old_metrics = metrics_path.read_text()
    metrics = json.loads(old_metrics)
    change(metrics)
    write_atomic(metrics_path, json.dumps(metrics, indent=2) + "\n")
    try:
        card = render_card_from_folder(folder)
    except Exception:
        write_atomic(metrics_path, old_metrics)
        raise
    write_atomic(Path(folder) / "README.md", str(card))


def record_faithfulness(folder: str | Path, summary: dict[str, dict], figure: Image.Image) -> None:
    """Put `summary` under "faithfulness" in the model folder's metrics.json, save `figure`, re-render its card."""
    figure_path = check_model_folder(folder) / EXPLANATIONS
    old_figure = figure_path.read_bytes() if figure_path.is_file() else None
    buf = io.BytesIO()
    figure.save(buf, format="PNG")
    figure_path.parent.mkdir(exist_ok=True)
    write_atomic(figure_path, buf.getvalue())
    try:
        update_metrics(folder, lambda metrics: metrics.update(faithfulness=summary))
    except Exception:
        if old_figure is None:   # keep metrics.json, the figure and README.md in step
            figure_path.unlink()
        else:
            write_atomic(figure_path, old_figure)
        raise


def record_localisation(folder: str | Path, name: str, report: dict) -> None:
    """Put the lesion `report` of split `name` under metrics.json's "localisation" and re-render the card."""
    check_model_folder(folder)
    update_metrics(folder, lambda metrics: metrics.setdefault("localisation", {}).update({name: report}))
