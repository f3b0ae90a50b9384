"""The model folder contract: `model.safetensors` + timm `config.json` (labels and preprocessing).

Written once by training through `timm.models.save_for_hf`; read back by everything else through
timm itself (`local-dir:` / `hf-hub:`), so labels and normalisation are never retyped.
Only safetensors weights are ever loaded: a folder or repo with just a pickle is refused.
"""
from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open

from hub.calibration import check_temperature
from hub.errors import ModelLoadError

# "A vs B": a contrastive target (why A rather than B) as the CLI and the app spell it.
VERSUS = " vs "

WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"
GLOBAL_POOLS = ("avg", "max", "avgmax")  # timm global_pool types a model here may use (config.json's model_args)
TEMPERATURE_KEY = "temperature"  # config.json: probabilities are softmax(logits / temperature) (hub.calibration)
# Pickled weights (unpickling runs arbitrary code): never loaded, never published, never an --init.
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")
PICKLE_NAMES = ("pytorch_model.bin", "model.pt", "model.pth", "model.ckpt")  # the usual ones, named in refusals
# The one list of a model folder's published files. Training writes MODEL_FILES and PLOTS and removes any
# other plot a previous model left (EXPLANATIONS, from `python -m hub explain`, describes the old weights);
# examples/ holds the user's sample images (and their annotation files): training never touches it.
MODEL_FILES = (WEIGHTS_NAME, CONFIG_NAME, "README.md", "metrics.json", "history.csv", "train_config.json")
PLOTS = ("plots/confusion_matrix.png", "plots/roc.png", "plots/curves.png")
EXPLANATIONS = "plots/explanations.png"   # written by `python -m hub explain` into a local model folder
MODEL_GLOBS = ("plots/*.png", "examples/*")
# Never published, whatever a folder holds: pickles and training checkpoints.
NEVER_PUBLISHED = (*(f"*{suffix}" for suffix in PICKLE_SUFFIXES), "checkpoints/*")


def model_files(folder: str | Path) -> list[str]:
    """Relative paths of the published files present in `folder` (what a push uploads), sorted."""
    import fnmatch

    folder = Path(folder)
    found = {name for name in MODEL_FILES if (folder / name).is_file()}
    for pattern in MODEL_GLOBS:
        for path in folder.glob(pattern):
            rel = path.relative_to(folder).as_posix()
            if path.is_file() and not path.name.startswith(".") and \
                    not any(fnmatch.fnmatch(rel, n) for n in NEVER_PUBLISHED):
                found.add(rel)
    return sorted(found)


def output_stride(model: torch.nn.Module) -> int:
    """The last stage's reduction of a timm model (32 undilated, 16 with `output_stride=16`)."""
    return model.feature_info[-1]["reduction"] if getattr(model, "feature_info", None) else 32


def save_model_folder(model: torch.nn.Module, labels: Sequence[str], out: str | Path,
                      data_config: dict[str, Any], temperature: float | None = None) -> Path:
    """Write weights (safetensors) and timm config.json with label_names and preprocessing to `out`; with a
    `temperature` (hub.calibration), config.json carries it beside label_names."""
    from timm.models import save_for_hf

    if len(labels) != model.num_classes:
        raise ValueError(f"{len(labels)} labels for a model with {model.num_classes} outputs")
    out = Path(out)
    # timm's factory records reconstruction kwargs; dropout is a training-time detail, so drop it
    # and a plain `create_model(arch, num_classes=N)` rebuilds the same state dict. A dilated last stage
    # (--output-stride 16) is not in the weights, so it travels as a model arg: timm's hf-hub: and
    # local-dir: loaders pass config.json's model_args to the factory. The head's pooling (train --global-pool)
    # needs nothing here: timm 1.0.31 records the pooling module's current type in model_args itself.
    model_args: dict[str, Any] = {"drop_rate": 0.0}
    stride = output_stride(model)
    if stride != 32:
        model_args["output_stride"] = stride
    model_config: dict[str, Any] = {"label_names": list(labels)}
    if temperature is not None:
        # A top-level key, like label_names: timm's loaders ignore it. Never inside pretrained_cfg, which
        # timm turns into a PretrainedCfg dataclass that refuses unknown fields.
        model_config[TEMPERATURE_KEY] = check_temperature(temperature)
    save_for_hf(model, out, model_config=model_config, model_args=model_args,
                safe_serialization=True, data_config=dict(data_config))
    return out


def read_config(folder: Path) -> dict:
    """Parse config.json of a model folder, with a message that says what is wrong."""
    path = folder / CONFIG_NAME
    if not path.is_file():
        raise ModelLoadError(f"{folder}: no {CONFIG_NAME}; a model folder needs {CONFIG_NAME} and {WEIGHTS_NAME} "
                             "(as written by `python -m train`)")
    try:
        cfg = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelLoadError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(cfg, dict) or "architecture" not in cfg:
        raise ModelLoadError(f"{path}: not a timm config (no 'architecture' field)")
    return cfg


def no_weights(where: str, pickles: Sequence[str]) -> ModelLoadError:
    """The error for a folder or repo without safetensors weights; `pickles`: the pickled ones it has instead."""
    hint = (f" It only has {', '.join(pickles)}: pickled weights are never loaded because unpickling runs "
            "arbitrary code; convert them to safetensors (safetensors.torch.save_file) yourself if you "
            "trust the source." if pickles else "")
    return ModelLoadError(f"{where}: no {WEIGHTS_NAME}.{hint}")


def check_folder(folder: str | Path) -> dict:
    """Refuse folders without safetensors weights or whose config disagrees with them; return the config."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ModelLoadError(f"{folder}: no such model folder")
    cfg = read_config(folder)
    weights = folder / WEIGHTS_NAME
    if not weights.is_file():
        raise no_weights(str(folder), [n for n in PICKLE_NAMES if (folder / n).exists()])
    num_classes = cfg.get("num_classes", cfg.get("pretrained_cfg", {}).get("num_classes"))
    head = cfg.get("pretrained_cfg", {}).get("classifier", "fc")
    try:
        with safe_open(weights, framework="pt") as f:
            key = f"{head}.weight"
            rows = f.get_slice(key).get_shape()[0] if key in f.keys() else None
    except (SafetensorError, OSError, ValueError) as exc:  # a corrupt header, a truncated file
        raise ModelLoadError(f"{weights}: not a readable safetensors file ({exc})") from None
    if rows is not None and num_classes is not None and rows != num_classes:
        raise ModelLoadError(f"{folder}: config.json says num_classes={num_classes} but the weights have "
                             f"{rows} outputs in '{head}'; the config and weights do not belong together")
    labels = label_names(cfg)
    if labels is not None and not (isinstance(labels, list) and all(isinstance(n, str) and n for n in labels)):
        raise ModelLoadError(f"{folder}: config.json label_names must be a list of non-empty strings, got {labels!r}")
    if labels is not None and len(set(labels)) != len(labels):
        dupes = sorted({n for n in labels if labels.count(n) > 1})
        raise ModelLoadError(f"{folder}: config.json label_names has duplicates {dupes}; each class needs its own name")
    if labels is not None and rows is not None and len(labels) != rows:
        raise ModelLoadError(f"{folder}: config.json has {len(labels)} label_names but the weights have {rows} outputs")
    try:
        temperature_of(cfg)
    except ValueError as exc:
        raise ModelLoadError(f"{folder}: config.json {exc}; fix or remove the key (`python -m hub calibrate` "
                             "writes it)") from None
    return cfg


def temperature_of(config: dict) -> float:
    """The temperature of a config.json (1.0, no scaling, when it has none); ValueError when it is not positive."""
    if TEMPERATURE_KEY not in config:
        return 1.0
    return check_temperature(config[TEMPERATURE_KEY], TEMPERATURE_KEY)


def load_local(folder: str | Path) -> torch.nn.Module:
    """Build the timm model of a checked local model folder, in eval mode."""
    import timm

    check_folder(folder)
    try:
        model = timm.create_model(f"local-dir:{Path(folder).resolve()}", pretrained=True)
    except RuntimeError as exc:  # state dict mismatch not caught by the checks above
        raise ModelLoadError(f"{folder}: weights do not fit the architecture in config.json ({exc})") from None
    return model.eval()


def label_names(config: dict) -> list | None:
    """The `label_names` of a config.json or pretrained_cfg dict, by output index (None when absent).

    timm writes them at the top level of config.json and into `pretrained_cfg` when loading; both
    the list form and timm's {index: name} form are read here, and only here.
    """
    names = config.get("label_names")
    if names is None:
        names = (config.get("pretrained_cfg") or {}).get("label_names")
    if isinstance(names, dict):
        names = [names.get(str(i), names.get(i)) for i in range(len(names))]
    return names


def labels_of(model: torch.nn.Module) -> list[str]:
    """Class names of a loaded timm model (from its pretrained_cfg), by output index; indices if it has none."""
    names = label_names(getattr(model, "pretrained_cfg", None) or {})
    if names is None:
        return [str(i) for i in range(model.num_classes)]
    return [str(n) for n in names]


def resolve_target(target: int | str | None, labels: Sequence[str]) -> int | None:
    """A class index from an index, a label name, or None (the predicted class); ValueError names the choices."""
    if target is None:
        return None
    labels = list(labels)
    if isinstance(target, str):
        if target not in labels:
            raise ValueError(f"unknown target label {target!r}; the model's labels are {labels}")
        return labels.index(target)
    index = int(target)
    if not 0 <= index < len(labels):
        raise ValueError(f"target {index} is out of range for {len(labels)} classes {labels}")
    return index


def resolve_contrast(target: int | str | Sequence | None, labels: Sequence[str]) -> tuple[int | None, int | None]:
    """(class, rival) from a target, a pair (A, B) or "A vs B" (A rather than B); the rival is None if not given."""
    labels = list(labels)
    if isinstance(target, str) and target not in labels and VERSUS in target:
        target = tuple(part.strip() for part in target.split(VERSUS, 1))
    if not isinstance(target, (tuple, list)):
        return resolve_target(target, labels), None
    if len(target) != 2 or any(t is None or t == "" for t in target):
        raise ValueError(f"a contrastive target is two classes, (A, B) or 'A vs B', got {target!r}")
    first, rival = (resolve_target(t, labels) for t in target)
    if first == rival:
        raise ValueError(f"a contrastive target needs two different classes, got {labels[first]!r} twice; "
                         f"pick a rival from {[n for n in labels if n != labels[first]]}")
    return first, rival
