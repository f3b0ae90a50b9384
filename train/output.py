"""The model folder a run writes: weights, config.json, metrics, history, plots and the card.

Every published file is first written to a staging folder, then moved over the previous one, so a
failure at any point (disk full, a plot that cannot be drawn) leaves the previous model folder as
it was. Which files a model folder holds is `hub.model`'s contract (MODEL_FILES, PLOTS); every other plot
there (a previous model's explanations figure) is removed, so a push never publishes a figure of old weights.
"""
from __future__ import annotations

import csv
import json
import os
import platform
import shutil
from pathlib import Path

import numpy as np
import torch

from hub.card import render_card
from hub.errors import OutputError
from hub.files import move_into_place
from hub.model import CONFIG_NAME, MODEL_FILES, PLOTS, model_files, save_model_folder
from train.plots import plot_confusion_matrix, plot_curves, plot_roc

HISTORY_FIELDS = ("epoch", "train_loss", "train_acc", "val_loss", "val_acc", "lr", "seconds")


def ensure_writable(out: Path) -> None:
    """Fail before training when --out cannot be created or written."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / f".write-test-{os.getpid()}"
        probe.write_bytes(b"ok")
        probe.unlink()
    except OSError as exc:
        raise OutputError(f"--out {out}: cannot write there ({exc.strerror or exc}); "
                          "choose a writable folder with --out") from None


def versions() -> dict[str, str]:
    """Library versions recorded with every run."""
    import huggingface_hub
    import timm
    import torchvision

    return {"python": platform.python_version(), "torch": torch.__version__, "torchvision": torchvision.__version__,
            "timm": timm.__version__, "huggingface_hub": huggingface_hub.__version__, "numpy": np.__version__}


def write_model_folder(out: Path, model: torch.nn.Module, labels: list[str], data_config: dict, metrics: dict,
                       preds: dict, history: list[dict], train_config: dict, temperature: float | None = None) -> None:
    """Write every published file to a staging folder, then move them over the previous ones."""
    staging = out / ".staging"
    shutil.rmtree(staging, ignore_errors=True)
    try:
        save_model_folder(model, labels, staging, data_config, temperature)
        (staging / "metrics.json").write_text(json.dumps(metrics, indent=2))
        (staging / "train_config.json").write_text(json.dumps(train_config, indent=2))
        with open(staging / "history.csv", "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=HISTORY_FIELDS)
            writer.writeheader()
            writer.writerows({k: h[k] for k in HISTORY_FIELDS} for h in history)
        split = "test" if "test" in preds else "validation"
        plot_confusion_matrix(metrics[split]["confusion_matrix"], labels, staging / PLOTS[0],
                              f"confusion matrix ({split})")
        plot_roc(*preds[split], labels, staging / PLOTS[1], f"ROC, one-vs-rest ({split})")
        plot_curves(history, staging / PLOTS[2])
        config = json.loads((staging / CONFIG_NAME).read_text())
        render_card(config, metrics, train_config).save(staging / "README.md")
        written = (*MODEL_FILES, *PLOTS)
        for rel in written:
            move_into_place(staging / rel, out / rel)
        for rel in model_files(out):  # a previous model's figures (examples/ is the user's: kept)
            if rel.startswith("plots/") and rel not in written:
                (out / rel).unlink()
    except OSError as exc:
        raise OutputError(f"could not write the model folder {out} ({exc.strerror or exc}); "
                          "files of a previous run there were left as they were") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def report(metrics: dict, out: Path) -> str:
    """The final table: per-class and overall metrics of each split, and how to use the folder."""
    lines = []
    for split, m in ((s, metrics[s]) for s in ("validation", "test", "parent_test") if s in metrics):
        lines.append(f"\n{split} ({m['n']} images): accuracy {m['accuracy']:.4f}{_ci(m, 'accuracy')}  "
                     f"macro F1 {m['f1_macro']:.4f}{_ci(m, 'f1_macro')}  macro AUC {_f(m['auc_macro'])}"
                     f"{_ci(m, 'auc_macro')}  log loss {m['log_loss']:.4f}  ECE {m['ece']:.4f}")
        width = max(len("class"), *(len(k) for k in m["per_class"]))
        lines.append(f"  {'class':<{width}}  precision  recall     F1     AUC  support")
        for label, c in m["per_class"].items():
            lines.append(f"  {label:<{width}}  {c['precision']:9.4f}  {c['recall']:6.4f}  {c['f1']:6.4f}  "
                         f"{_f(c['auc']):>6}  {c['support']:7d}")
    if "calibration" in metrics:
        from hub.calibration import summary_line

        c = metrics["calibration"]
        lines.append(f"\ncalibration: temperature {c['temperature']:.3f}, {c['source']}")
        lines += [f"  {summary_line(name, split)}" for name, split in c["splits"].items()]
    lines += [f"\nmodel folder: {out.resolve()}",
              "use it:",
              f"  python -c \"from hub import from_pretrained; print(from_pretrained('{out}').predict('image.png'))\"",
              f"  timm.create_model('local-dir:{out.resolve()}', pretrained=True)",
              f"  python -m hub push {out} ORG/REPO --tag auto"]
    return "\n".join(lines)


def _ci(m: dict, key: str) -> str:
    """' [low, high]' of a metric's bootstrap interval, '' when there is none."""
    ci = (m.get("intervals") or {}).get(key) or {}
    return f" [{ci['low']:.3f}, {ci['high']:.3f}]" if ci.get("low") is not None else ""


def _f(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.4f}"
