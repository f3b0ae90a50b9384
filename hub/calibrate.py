"""python -m hub calibrate: fit a temperature on held-out images, or carry one, into a local model folder.

    python -m hub calibrate runs/mri-val --data mri/val                    # fit T on the validation block
    python -m hub calibrate runs/mri --temperature runs/mri-val --data mri/test   # carry it; check on the test block

Training fits the temperature itself when it has a validation block (`--temperature auto`); this command is
for a folder trained without one (a final fit) or before calibration existed. The images must be held out
from the model's training: on its own training images a model is surer than on new ones, and T would come
out too large. It writes `temperature` into config.json and a `calibration` record (each split's ECE, log
loss and mean probability of the true class, raw and scaled) into metrics.json and the card; the rest of
metrics.json keeps the raw figures training measured, and the card says so.
"""
from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from hub.calibration import check_temperature, compare, fit_temperature
from hub.classifier import Classifier
from hub.files import write_atomic
from hub.model import CONFIG_NAME, TEMPERATURE_KEY, check_folder, temperature_of

BATCH = 32


def labelled_logits(clf: Classifier, root: str | Path,
                    progress: Callable[[int, int], None] | None = None) -> tuple[np.ndarray, np.ndarray, int]:
    """(raw logits, true class indices, images skipped for lack of a class folder) of a class-per-folder tree."""
    from hub.explain.batch import collect_images

    if not Path(root).is_dir():
        raise ValueError(f"{root}: not a folder of class folders (one sub-folder per label: {clf.labels})")
    items = collect_images([root], clf.labels)
    known = [i for i in items if i.truth is not None]
    if not known:
        raise ValueError(f"{root}: no images in folders named after the model's labels {clf.labels}")
    logits = []
    for start in range(0, len(known), BATCH):
        logits.append(clf.logits([i.path for i in known[start:start + BATCH]]))  # ImageError names a bad file
        if progress:
            progress(min(start + BATCH, len(known)), len(known))
    return torch.cat(logits).numpy(), np.array([i.truth for i in known]), len(items) - len(known)


def resolve_temperature(given: str) -> tuple[float, str]:
    """(T, its source) from a number or a model folder with a fitted temperature."""
    try:
        return check_temperature(float(given), "--temperature"), "given (--temperature)"
    except ValueError:
        pass
    folder = Path(given)
    if not folder.is_dir():
        raise ValueError(f"--temperature {given}: not a positive number and no such model folder")
    config = check_folder(folder)
    if TEMPERATURE_KEY not in config:
        raise ValueError(f"--temperature {given}: its config.json has no temperature; calibrate that folder first "
                         f"(python -m hub calibrate {given} --data ITS_VALIDATION_IMAGES)")
    return temperature_of(config), f"carried from {folder.name} (fitted on its validation block)"


def calibrate_folder(folder: str | Path, data: str | Path, temperature: str | None = None,
                     split_name: str | None = None, device: str = "auto",
                     progress: Callable[[int, int], None] | None = None) -> dict:
    """Fit T on `data` (or carry `temperature`, and check it on `data`), write it into the folder; the record."""
    from hub.loading import from_pretrained
    from hub.records import check_model_folder, update_metrics

    folder = check_model_folder(folder)
    carried = resolve_temperature(temperature) if temperature is not None else None  # refused before any pass
    clf = from_pretrained(folder, device=device)
    logits, truth, skipped = labelled_logits(clf, data, progress)
    name = split_name or Path(data).resolve().name
    if carried is None:
        t = fit_temperature(logits, truth)
        source = f"fitted on `{name}` ({len(truth)} images, log loss) by `python -m hub calibrate`"
    else:
        t, source = carried
    raw = torch.from_numpy(logits).softmax(dim=1).numpy()
    record = {"temperature": t, "source": source, "fitted_on": None if carried else name,
              "applied_by": "python -m hub calibrate", "skipped": skipped,
              "splits": {name: compare(truth, raw, t)}}
    config_path = folder / CONFIG_NAME
    old_config = config_path.read_text()
    config = json.loads(old_config)
    config[TEMPERATURE_KEY] = t
    write_atomic(config_path, json.dumps(config, indent=2) + "\n")
    try:
        update_metrics(folder, lambda metrics: metrics.__setitem__("calibration", record))
    except Exception:
        write_atomic(config_path, old_config)  # config.json, metrics.json and the card stay in step
        raise
    return record
