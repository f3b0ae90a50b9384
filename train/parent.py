"""The parent of a retrain: `--init` as a model folder or a Hub revision, and what the new run keeps of it.

The parent is loaded by `hub.from_pretrained` (cache, offline mode, token, safetensors only), so a
retrain reads a published model exactly as a notebook or the app does. The new model takes the
parent's backbone, its head rows by label name (a class the new data adds gets a fresh row, one
it drops loses its row), and its preprocessing. Every problem is a WeightsError naming --init,
raised before the output folder is touched.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import torch

from hub.classifier import Classifier
from hub.errors import ModelLoadError, WeightsError
from hub.loading import from_pretrained
from hub.model import output_stride
from train.config import TrainConfig

# The preprocessing a model's weights were trained on, as timm's data config names it.
PREPROCESSING = ("input_size", "mean", "std", "interpolation", "crop_pct", "crop_mode")


def load_parent(init: str, arch: str) -> Classifier:
    """The model named by --init (folder or org/repo[@rev]) on the CPU; refuse one of another architecture."""
    try:
        parent = from_pretrained(init, device="cpu")
    except ModelLoadError as exc:
        raise WeightsError(f"--init {init}: {exc}") from None
    found = parent.model.pretrained_cfg.get("architecture")
    if found != arch:
        raise WeightsError(f"--init {init}: the parent is a {found} but this run trains a {arch} (--arch); "
                           f"retrain from a {arch} model, or pass --arch {found}")
    return parent


def describe(parent: Classifier) -> str:
    """'org/repo@v1 (commit 1a2b3c4)' for a Hub parent, the folder's path for a local one."""
    if parent.revision is None:  # from_pretrained sets a revision for Hub sources only
        return str(parent.source)
    return f"{parent.source}@{parent.revision}" + (f" (commit {parent.commit[:7]})" if parent.commit else "")


def head_rows(parent_labels: Sequence[str], classes: Sequence[str], mode: str) -> list[int | None]:
    """For each new class, the parent head row it starts from (matched by label name), or None: a fresh row."""
    if mode == "reset":
        return [None] * len(classes)
    index = {name: i for i, name in enumerate(parent_labels)}
    return [index.get(name) for name in classes]


def head_summary(parent_labels: Sequence[str], classes: Sequence[str], rows: Sequence[int | None]) -> str:
    """One line saying what happened to the head: kept, carried over by name (new, dropped, reordered) or reset."""
    if list(parent_labels) == list(classes) and all(r == i for i, r in enumerate(rows)):
        return f"same {len(classes)} classes: head kept"
    if all(r is None for r in rows):
        return f"head reset (--init-head reset): {len(classes)} fresh rows"
    kept = [c for c, r in zip(classes, rows) if r is not None]
    new = [c for c, r in zip(classes, rows) if r is None]
    dropped = [c for c in parent_labels if c not in classes]
    moved = [c for i, (c, r) in enumerate(zip(classes, rows)) if r is not None and r != i]
    parts = [f"classes changed: {len(kept)} head rows carried over by label name"]
    parts += [f"new {new} (fresh rows)"] if new else []
    parts += [f"dropped {dropped}"] if dropped else []
    parts += [f"reordered {moved}"] if moved else []
    return ", ".join(parts)


@torch.no_grad()
def start_from(model: torch.nn.Module, parent: Classifier, classes: Sequence[str], mode: str) -> str:
    """Load the parent's backbone, head rows and preprocessing into the fresh `model`; return what the head got.

    `model` comes with its own (seeded) fresh head, so rows without a parent row stay as initialised.
    """
    head = model.pretrained_cfg.get("classifier", "fc")
    state = parent.model.state_dict()
    backbone = {k: v for k, v in state.items() if not k.startswith(f"{head}.")}
    try:
        missing, unexpected = model.load_state_dict(backbone, strict=False)
    except RuntimeError as exc:  # same architecture name, other shapes (e.g. another width)
        raise WeightsError(f"--init {parent.source}: its weights do not fit this run's model ({exc})") from None
    missing = [k for k in missing if not k.startswith(f"{head}.")]
    if missing or unexpected:
        raise WeightsError(f"--init {parent.source}: its weights do not fit this run's model "
                           f"(e.g. {(missing or unexpected)[0]} missing or unexpected)")
    rows = head_rows(parent.labels, classes, mode)
    linear = model.get_classifier()
    for i, row in enumerate(rows):
        if row is not None:
            linear.weight[i] = state[f"{head}.weight"][row]
            linear.bias[i] = state[f"{head}.bias"][row]
    # The new model reads images as the parent did; eval_data_config applies the run's overrides.
    model.pretrained_cfg = {**model.pretrained_cfg, **{k: parent.data_config[k] for k in PREPROCESSING
                                                       if k in parent.data_config}}
    return head_summary(parent.labels, classes, rows)


def preprocessing_changes(parent: Classifier, data_config: dict) -> list[str]:
    """What the run's preprocessing changes from the parent's ('mean (a) -> (b)'); empty when it keeps it."""
    def norm(value):
        return tuple(value) if isinstance(value, (list, tuple)) else value

    return [f"{key} {norm(parent.data_config.get(key))} -> {norm(data_config.get(key))}" for key in PREPROCESSING
            if norm(parent.data_config.get(key)) != norm(data_config.get(key))]


def network_shape(model: torch.nn.Module) -> dict[str, object]:
    """What of a timm network's build is not in its weights: the head's pooling and the last stage's stride."""
    pool = getattr(model, "global_pool", None)
    return {"--global-pool": getattr(pool, "pool_type", pool), "--output-stride": output_stride(model)}


def keep_network(cfg: TrainConfig, parent: Classifier) -> TrainConfig:
    """`cfg` with the parent's pooling and stride where it leaves them open (None: no flag given on a retrain),
    so v2 reads its weights through the network v1 was trained as."""
    shape = network_shape(parent.model)
    kept = {"global_pool": shape["--global-pool"], "output_stride": shape["--output-stride"]}
    return dataclasses.replace(cfg, **{k: v for k, v in kept.items() if getattr(cfg, k) is None})


def network_changes(parent: Classifier, model: torch.nn.Module) -> list[str]:
    """What the run builds otherwise than the parent ('--global-pool max -> avg'); empty when it keeps it. The
    weights load either way, so without this a retrain would silently read them through another network."""
    old, new = network_shape(parent.model), network_shape(model)
    return [f"{key} {old[key]} -> {new[key]}" for key in old if old[key] != new[key]]


def lineage(parent: Classifier, head_mode: str, head: str) -> dict:
    """The parent as train_config.json and the model card record it (repo, revision, resolved commit)."""
    hub = parent.revision is not None
    return {"repo_id": parent.source if hub else None, "folder": None if hub else str(parent.source),
            "revision": parent.revision, "commit": parent.commit, "labels": list(parent.labels),
            "head_mode": head_mode, "head": head,
            "preprocessing": {k: parent.data_config[k] for k in PREPROCESSING if k in parent.data_config}}


def comparable(parent: Classifier, classes: Sequence[str]) -> list[int] | None:
    """Parent output columns in the order of `classes` when it knows exactly these classes, else None."""
    if sorted(parent.labels) != sorted(classes):
        return None
    return [parent.labels.index(c) for c in classes]
