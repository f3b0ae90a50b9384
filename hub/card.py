"""render_card: the model card (README.md) of a model folder, as a pure function of its files.

The YAML metadata is `ModelCardData` + `EvalResult`s, so the Hub indexes the metrics; the body is
a Jinja template (hub/templates/model_card.md). Called by training and again on every push, when
the repo id, the revision and the earlier revisions are known.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from huggingface_hub import EvalResult, ModelCard, ModelCardData

from hub.display import MAP_NAMES, METHOD_NAMES, interval_text
from hub.model import label_names

TEMPLATE = Path(__file__).with_name("templates") / "model_card.md"
# Tags every model of this project has; the user's own (--tags, e.g. medical-imaging) are added to them.
TAGS = ["timm", "image-classification", "grad-cam", "score-cam"]


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def fill_text(figures: dict) -> str:
    """", blur fill" for a Score-CAM whose masks filled what they removed from the image; "" for pytorch-grad-cam's
    mean-colour fill ("constant") and for figures that predate the choice (they used it)."""
    fill = figures.get("fill")
    return f", {fill} fill" if fill and fill != "constant" else ""


def faithfulness_rows(summary: dict | None) -> list[dict[str, Any]]:
    """The card's faithfulness table: display strings per method (an older keep-remove-only summary: n/a elsewhere)."""
    rows = []
    for method, f in (summary or {}).items():
        mode = f["mode"] + (f" (k={f.get('masked_passes')})" if f["mode"] == "fast" else "") + fill_text(f)
        images = f"{f['images']} ({f['split']})" if f.get("split") else f"{f['images']} (split not recorded)"
        row = {"name": METHOD_NAMES.get(method, method), "mode": mode, "images": images,
               "deletion": "n/a", "insertion": "n/a", "random": "n/a", "centre": "n/a", "sanity": "not run",
               "keep_remove": f"{f['keep_remove']['mean']:+.3f}" if "keep_remove" in f else f"{f['mean']:+.3f}",
               "steps": []}
        if "deletion" in f:
            row.update(deletion=interval_text(f["deletion"]), insertion=interval_text(f["insertion"]),
                       random=f"{f['beats']['random']:.0%}", centre=f"{f['beats']['centre']:.0%}")
        if "sanity" in f:
            last, verdict = f["sanity"]["steps"][-1], "pass" if f["sanity"]["passed"] else "FAIL"
            row.update(sanity=f"{verdict} (rank corr. {last['rank_correlation']:.2f}, SSIM {last['ssim']:.2f})",
                       steps=f["sanity"]["steps"])
        rows.append(row)
    return rows


LESION_VIEWS = {"as_is": "as is", "hidden": "lesion hidden", "only": "only the lesion"}
SPLIT_ORDER = ("validation", "test")   # then any other name (python -m hub explain --split-name), sorted


def localisation_tables(localisation: dict | None) -> list[dict[str, Any]]:
    """The card's "Does the model look at the lesion?" tables, one per split, as display strings."""
    tables = []
    names = sorted(localisation or {}, key=lambda n: (SPLIT_ORDER.index(n) if n in SPLIT_ORDER else 2, n))
    for name in names:
        r = localisation[name]
        maps = []
        for key, f in [*r["methods"].items(), *r["baselines"].items()]:
            label = MAP_NAMES.get(key, key)
            if f.get("mode") == "fast":
                label += f" (fast, k={f['masked_passes']})"
            label += fill_text(f)
            maps.append({"name": label, "pointing_game": interval_text(f["pointing_game"]),
                         "energy": interval_text(f["energy"]), "ratio": interval_text(f["ratio"], 2)})
        shortcut = [{"name": LESION_VIEWS.get(v, v), "accuracy": interval_text(a)}
                    for v, a in r["shortcut"]["accuracy"].items()]
        place = r["shortcut"].get("place_only")
        if place:
            shortcut.append({"name": f"the lesion's place and size alone ({place['k']} nearest of "
                                     f"{place['reference_images']} training regions; no image)",
                             "accuracy": interval_text(place["accuracy"])})
        tables.append({"split": name, "images": r["images"], "skipped": r["skipped"],
                       "tolerance": f"{r['tolerance']:g}",
                       "resampled": "whole patients" if r["resampled"] == "groups" else "images",
                       "area": f"{100 * r['area']['mean']:.1f}%", "grow": f"{100 * r['shortcut']['grow_share']:.0f}%",
                       "maps": maps, "shortcut": shortcut})
    return tables


def _ci(m: dict, key: str) -> str:
    """' (95% CI low-high)' of a metric's bootstrap interval, '' when there is none."""
    ci = (m.get("intervals") or {}).get(key) or {}
    return f" (95% CI {ci['low']:.3f}-{ci['high']:.3f})" if ci.get("low") is not None else ""


SPLIT_TEXT = {"random": "random per class (images of one patient can be on both sides)",
              "ordered": "ordered: per class, the last files in natural order (neighbouring slices stay together)",
              "group": "by group: every patient or slide in one split only",
              "explicit": "a separate validation folder (--val-data)",
              "none": "none: a final fit on every training image for an epoch count chosen beforehand "
                      "(--val-split 0); the figures below are on held-out test data only"}


def _split_text(split: dict | None) -> str:
    return SPLIT_TEXT.get((split or {}).get("method"), "not recorded")


def data_summary(counts: dict[str, dict[str, int]], labels: Sequence[str]) -> str:
    """What the model was trained on, per class: the training split's counts only (validation and test images
    were never trained on, so they do not describe its training data)."""
    train = counts.get("train", {})
    return "the training split's " + ", ".join(f"{train.get(lab, 0)} `{lab}`" for lab in labels) + " images"


def grounding_line(cfg: dict, run: dict, counts: dict[str, dict[str, int]]) -> str:
    """How the model was trained with expert regions (--annotations), as the card says it; "" when it was not."""
    if not cfg.get("annotations"):
        return ""
    total = sum(counts.get("train", {}).values())
    seen = run.get("annotated_training_images")
    share = f"{seen} of {total} training images annotated" if seen is not None else "annotated training images"
    weight = cfg.get("guide_weight", 1)
    parts = [f"Trained with expert regions (`--annotations`, {share}): cross-entropy plus {weight:g} x a grounding "
             "loss on the last stage's per-cell logits (the true class's map must peak on the region, every cell off "
             f"it must be class-neutral), last stage at output stride {cfg.get('output_stride', 32)}"]
    if cfg.get("global_pool", "avg") != "avg":
        parts.append(f"the head pools the last stage by `{cfg['global_pool']}` (`--global-pool`), so a small "
                     "region's evidence is not averaged with the neutral cells around it")
    if cfg.get("counterfactual"):
        parts.append(f"{cfg['counterfactual']:.0%} of the annotated images shown with the region hidden (blur-filled) "
                     "and trained toward no class")
    if cfg.get("context_swap"):
        parts.append(f"{cfg['context_swap']:.0%} of them shown with the region pasted into another annotated "
                     "training image, whose own region was blur-filled, keeping their label")
    return "; ".join(parts) + "."


def _eval_results(results: dict[str, dict], dataset: str, dataset_name: str) -> list[EvalResult]:
    split = "test" if "test" in results else "validation"
    m = results[split]
    out = []
    for metric_type, name, value in (("accuracy", "Accuracy", m["accuracy"]),
                                     ("f1", "Macro F1", m["f1_macro"]),
                                     ("roc_auc", "Macro AUC", m["auc_macro"])):
        if value is None:
            continue
        out.append(EvalResult(task_type="image-classification", dataset_type=dataset, dataset_name=dataset_name,
                              dataset_split=split, metric_type=metric_type, metric_name=name,
                              metric_value=round(float(value), 6),
                              metric_config="macro" if metric_type != "accuracy" else None))
    return out


def _parent_name(parent: dict) -> str:
    """`org/repo@v1` for a Hub parent, the folder for a local one."""
    return f"{parent['repo_id']}@{parent['revision']}" if parent.get("repo_id") else str(parent.get("folder"))


def _parent_line(parent: dict) -> str:
    """The training procedure's first words for a retrain: from which parent, and what its head became."""
    commit = f" (commit `{parent['commit']}`)" if parent.get("commit") else ""
    return f"retrained from `{_parent_name(parent)}`{commit}, {parent['head']}"


def _compared(parent: dict | None, metrics: dict, revision: str | None) -> list[tuple[str, dict]]:
    """(name, test metrics) of the parent and of this model on the same test data; empty when not measured."""
    if not parent or "parent_test" not in metrics or "test" not in metrics:
        return []
    this = f"`{revision}` (this revision)" if revision else "this model"
    return [(f"`{_parent_name(parent)}` (parent)", metrics["parent_test"]), (this, metrics["test"])]


def render_card(config: dict, metrics: dict, train_config: dict, repo_id: str | None = None,
                revision: str | None = None, previous: Sequence[dict] = ()) -> ModelCard:
    """Model card from config.json, metrics.json and train_config.json contents (+ Hub context)."""
    cfg = train_config["config"]
    dataset = train_config["dataset"]
    pcfg = config.get("pretrained_cfg", {})
    labels = list(label_names(config) or [])
    results = {name: metrics[name] for name in ("validation", "test") if name in metrics}
    name = repo_id.split("/")[-1] if repo_id else Path(cfg.get("out", "model")).name
    dataset_id = cfg.get("dataset_id")
    parent = train_config.get("parent")
    imagenet = cfg.get("pretrained") and not cfg.get("init")
    # The Hub's model tree links a model to its base_model: ImageNet weights, or the parent repo of a retrain.
    base_model = f"timm/{cfg['arch']}.{cfg['pretrained_tag']}" if imagenet else (parent or {}).get("repo_id")
    card_data = ModelCardData(
        model_name=name,
        library_name="timm",
        pipeline_tag="image-classification",
        license=cfg.get("license") or "apache-2.0",
        tags=list(dict.fromkeys([*TAGS, *cfg.get("tags", ())])),
        datasets=[dataset_id] if dataset_id else None,
        base_model=base_model,
        metrics=["accuracy", "f1", "roc_auc"],
        eval_results=_eval_results(results, dataset_id or "imagefolder", dataset_id or "class-per-folder images"),
    )
    size = pcfg.get("input_size", [3, cfg.get("img_size"), cfg.get("img_size")])
    aug = [a for a, on in ((f"random-resized crop of {cfg.get('scale_min', 1):g}-1 of the image",
                            cfg.get("scale_min", 1) < 1),
                           ("horizontal flip", cfg.get("hflip")),
                           (f"rotation ±{cfg.get('rotation'):g}°", cfg.get("rotation")),
                           (f"colour jitter {cfg.get('color_jitter'):g}", cfg.get("color_jitter")),
                           (f"random gain and gamma exp(U(±{cfg.get('intensity', 0):g}))", cfg.get("intensity")),
                           (f"mixup alpha {cfg.get('mixup'):g}", cfg.get("mixup")),
                           (f"cutmix alpha {cfg.get('cutmix'):g}", cfg.get("cutmix"))) if on]
    # Older train_config.json files lack the newer keys: .get() keeps their cards rendering.
    extras = [a for a, on in ((f"{cfg.get('warmup_epochs')} warmup epoch(s)", cfg.get("warmup_epochs")),
                              (f"label smoothing {cfg.get('label_smoothing'):g}", cfg.get("label_smoothing")),
                              (f"EMA weights (decay {cfg.get('ema_decay'):g}) evaluated and published",
                               cfg.get("ema_decay")),
                              ("bf16 autocast + channels_last where the device has bf16", cfg.get("amp")),
                              ("evaluated as the mean of each image and its mirror (flip TTA)", cfg.get("tta")))
              if on]
    grounding = grounding_line(cfg, train_config.get("run", {}), dataset["counts"])
    counts = dataset["counts"]
    init = (_parent_line(parent) if parent else "initialised from ImageNet weights `" + base_model + "`" if base_model
            else f"initialised from `{cfg['init']}`" if cfg.get("init") else "trained from scratch (random init)")
    load_id = repo_id or "path/to/model-folder"
    timm_id = (f"hf-hub:{repo_id}@{revision}" if repo_id and revision
               else f"hf-hub:{repo_id}" if repo_id else "local-dir:path/to/model-folder")
    history = train_config.get("run", {})
    faith = metrics.get("faithfulness") or {}
    return ModelCard.from_template(
        card_data,
        template_path=str(TEMPLATE),
        model_name=name,
        homepage=cfg.get("homepage"),
        architecture=config.get("architecture", cfg.get("arch")),
        labels=labels,
        data_summary=data_summary(counts, labels),
        eval_split_name="held-out test" if "test" in results else "validation",
        split_counts=counts,
        fingerprint=dataset["files_sha256"],
        skipped=dataset.get("skipped", 0),
        cfg=cfg,
        init=init,
        grounding=grounding,
        epochs_run=history.get("epochs_run", "?"),
        best_epoch=history.get("best_epoch", "?"),
        input_size=f"{size[1]}x{size[2]}",
        interpolation=pcfg.get("interpolation", "bicubic"),
        mean=tuple(round(v, 4) for v in pcfg.get("mean", ())),
        std=tuple(round(v, 4) for v in pcfg.get("std", ())),
        augmentation=", ".join(aug) or "none",
        extras=extras,
        results={"test" if k == "test" else "validation": v for k, v in results.items()},
        faithfulness=faithfulness_rows(faith),
        faithfulness_setup=next(iter(faith.values()), {}),
        agreement=next((f["agreement"] for f in faith.values() if "agreement" in f), None),
        localisation=localisation_tables(metrics.get("localisation")),
        calibration=metrics.get("calibration"),
        temperature=config.get("temperature"),
        parent=parent,
        compared=_compared(parent, metrics, revision if repo_id else None),
        split=metrics.get("split"),
        split_text=_split_text(metrics.get("split")),
        leakage=metrics.get("leakage"),
        ci=_ci,
        fmt=_fmt,
        timm_id=timm_id,
        load_id=load_id,
        revision=revision if repo_id else None,
        previous=list(previous),
    )


def render_card_from_folder(folder: str | Path, **hub_context: Any) -> ModelCard:
    """render_card over the JSON files of a model folder."""
    import json

    folder = Path(folder)
    config, metrics, train_config = (json.loads((folder / n).read_text())
                                     for n in ("config.json", "metrics.json", "train_config.json"))
    return render_card(config, metrics, train_config, **hub_context)
