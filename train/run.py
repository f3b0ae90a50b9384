"""fit(config) -> model folder: the whole training job, from class folders to published files.

Order of work: check the output folder and the data (fail before any training), build the
model, train with a checkpoint per epoch, reload the best epoch, evaluate, then write the
published files to a staging folder and move them into place, so a failure at any point
leaves the previous model folder as it was.
"""
from __future__ import annotations

import csv
import json
import os
import platform
import shutil
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler

from hub.card import render_card
from hub.classifier import pick_device
from hub.errors import OutputError
from hub.model import save_model_folder
from train import checkpoint, distributed, engine
from train.config import TrainConfig
from train.data import ImageDataset, build_splits, eval_data_config, train_transform, trained_pretrained_cfg
from train.metrics import evaluate
from train.plots import plot_confusion_matrix, plot_curves, plot_roc

PUBLISHED = ("model.safetensors", "config.json", "metrics.json", "history.csv", "train_config.json", "README.md")
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


def _loader(dataset, cfg: TrainConfig, device: torch.device, world: distributed.World, shuffle: bool) -> DataLoader:
    """A loader over this rank's shard; --batch-size is the global batch, split over the ranks."""
    sampler = DistributedSampler(dataset, num_replicas=world.size, rank=world.rank, shuffle=shuffle, seed=cfg.seed)
    per_rank = cfg.batch_size // world.size
    # A last batch of one sample breaks BatchNorm in training mode; drop it in that one case.
    drop_last = shuffle and len(sampler) % per_rank == 1 and len(sampler) > 1
    return DataLoader(dataset, batch_size=per_rank, sampler=sampler, num_workers=cfg.workers,
                      pin_memory=device.type == "cuda", drop_last=drop_last)


def _predict(model, loader: DataLoader, device, cfg: TrainConfig, world, desc: str, progress: bool):
    """(labels, probabilities) of a whole split, gathered from every rank in dataset order."""
    y, p = engine.predict(model, loader, device, cfg.amp, desc=desc, show=progress)
    index = np.fromiter(iter(loader.sampler), dtype=np.int64)[: len(y)]
    return distributed.gather_predictions(index, y, p, len(loader.dataset), world)


def _resume_check(state: dict, cfg: TrainConfig, fingerprint: dict) -> None:
    """Refuse to continue a checkpoint of another dataset or recipe."""
    if state["fingerprint"]["files_sha256"] != fingerprint["files_sha256"]:
        raise ValueError("--resume: the checkpoint was trained on other data (dataset fingerprint differs); "
                         "use another --out or drop --resume to start over")
    ignore = {"resume", "epochs", "workers", "device", "out", "push_to", "tag", "license", "dataset_id", "amp"}
    old, new = state["config"], cfg.to_dict()
    changed = sorted(k for k in new if k not in ignore and old.get(k) != new[k])
    if changed:
        raise ValueError(f"--resume: options differ from the checkpoint's run ({', '.join(changed)}); "
                         "use the same options, or drop --resume to start over")


def fit(cfg: TrainConfig, log: Callable[[str], None] = print, progress: bool = True) -> Path:
    """Train, evaluate and write the model folder at cfg.out; return its path.

    Under torchrun every rank trains its shard; rank 0 alone logs, checkpoints and writes files.
    """
    out = Path(cfg.out)
    world = distributed.init(pick_device(cfg.device))
    try:
        return _fit(cfg, out, world, log if world.main else (lambda line: None), progress and world.main)
    finally:
        distributed.shutdown(world)


def _fit(cfg: TrainConfig, out: Path, world: distributed.World, log: Callable[[str], None], progress: bool) -> Path:
    if world.main:
        ensure_writable(out)
    if cfg.batch_size % world.size:
        raise ValueError(f"--batch-size {cfg.batch_size} (the global batch) must be divisible by the "
                         f"{world.size} processes")
    splits = build_splits(cfg.data, cfg.val_data, cfg.test_data, cfg.val_split, cfg.seed)
    labels = list(splits.classes)
    fingerprint = splits.fingerprint()
    device = distributed.device_for(world, pick_device(cfg.device))
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda: no CUDA GPU is available here; use --device auto or cpu")
    log(f"data: {len(splits.train)} train / {len(splits.val)} val"
        + (f" / {len(splits.test)} test" if splits.test else "") + f" images, classes {labels}; device {device}"
        + (f" x {world.size} processes" if world.enabled else ""))

    torch.manual_seed(cfg.seed)
    net = engine.build_model(cfg, len(labels))
    data_config = eval_data_config(net, cfg.img_size)
    net.pretrained_cfg = trained_pretrained_cfg(net, data_config)
    net.to(device)
    if cfg.amp and device.type == "cuda":
        net.to(memory_format=torch.channels_last)
    params = engine.set_trainable(net, cfg.unfreeze)
    model = DistributedDataParallel(net, device_ids=[device.index] if device.type == "cuda" else None) \
        if world.enabled else net
    optimizer = engine.make_optimizer(cfg, params)
    scheduler = engine.make_scheduler(cfg, optimizer)
    weight = engine.class_weights(splits.train.counts(len(labels)), cfg.class_weights)
    criterion = torch.nn.CrossEntropyLoss(weight=weight.to(device) if weight is not None else None)
    use_scaler = cfg.amp and device.type == "cuda" and not torch.cuda.is_bf16_supported()
    scaler = torch.amp.GradScaler("cuda") if use_scaler else None

    from timm.data import create_transform

    train_loader = _loader(ImageDataset(splits.train, train_transform(data_config, cfg.hflip, cfg.rotation,
                                                                      cfg.color_jitter)), cfg, device, world, True)
    eval_tf = create_transform(**data_config)
    val_loader = _loader(ImageDataset(splits.val, eval_tf), cfg, device, world, False)

    history: list[dict] = []
    best_loss, best_epoch, bad_epochs, stopped, start = float("inf"), 0, 0, False, 1
    state = checkpoint.load_state(out) if cfg.resume else None
    if state is not None:
        _resume_check(state, cfg, fingerprint)
        net.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        history, best_loss, best_epoch = list(state["history"]), state["best_loss"], state["best_epoch"]
        bad_epochs, stopped, start = state["bad_epochs"], state["stopped"], state["epoch"] + 1
        log(f"resuming after epoch {state['epoch']} (best so far: epoch {best_epoch}, val loss {best_loss:.4f})")
    elif cfg.resume:
        log(f"--resume: no checkpoint in {out / checkpoint.CHECKPOINT_DIR}, starting from epoch 1")

    for epoch in range(start, cfg.epochs + 1):
        if stopped:
            break
        t0 = time.perf_counter()
        engine.seed_epoch(cfg.seed, epoch, world.rank)
        train_loader.sampler.set_epoch(epoch)  # the shuffle of this epoch, the same on every rank
        lr = optimizer.param_groups[0]["lr"]
        loss_sum, correct, seen = distributed.sum_all(list(engine.train_one_epoch(
            model, train_loader, criterion, optimizer, device, cfg.amp, scaler,
            desc=f"epoch {epoch}/{cfg.epochs}", show=progress)), world)
        y, p = _predict(model, val_loader, device, cfg, world, "validate", progress)
        val_loss = engine.mean_loss(y, p, weight)
        val_acc = float((p.argmax(1) == y).mean())
        scheduler.step()
        row = dict(epoch=epoch, train_loss=loss_sum / max(seen, 1), train_acc=correct / max(seen, 1),
                   val_loss=val_loss, val_acc=val_acc, lr=lr, seconds=time.perf_counter() - t0)
        history.append(row)
        improved = val_loss < best_loss  # every rank sees the same gathered val set: same decision
        if improved:
            best_loss, best_epoch, bad_epochs = val_loss, epoch, 0
            if world.main:
                checkpoint.save_best(out, net.state_dict())
        else:
            bad_epochs += 1
        stopped = cfg.patience > 0 and bad_epochs >= cfg.patience
        if world.main:
            checkpoint.save_state(out, dict(epoch=epoch, model=net.state_dict(), optimizer=optimizer.state_dict(),
                                            scheduler=scheduler.state_dict(), history=history, best_loss=best_loss,
                                            best_epoch=best_epoch, bad_epochs=bad_epochs, stopped=stopped,
                                            config=cfg.to_dict(), fingerprint=fingerprint))
        log(f"epoch {epoch:>3}/{cfg.epochs}  train loss {row['train_loss']:.4f} acc {row['train_acc']:.3f}  |  "
            f"val loss {val_loss:.4f} acc {val_acc:.3f}  |  lr {lr:.2e}  {row['seconds']:.1f}s"
            + ("  * best" if improved else "")
            + (f"\nearly stopping: no val-loss improvement for {cfg.patience} epochs" if stopped else ""))

    distributed.barrier(world)  # rank 0 has written the best weights
    net.load_state_dict(checkpoint.load_best(out))
    metrics, preds = {}, {}
    for name, split in (("validation", splits.val), ("test", splits.test)):
        if split is None:
            continue
        loader = val_loader if name == "validation" else _loader(ImageDataset(split, eval_tf), cfg, device, world, False)
        preds[name] = _predict(model, loader, device, cfg, world, name, progress)
        metrics[name] = evaluate(*preds[name], labels)
    if world.main:
        run_info = dict(device=str(device), processes=world.size, epochs_run=len(history), best_epoch=best_epoch,
                        best_val_loss=best_loss, stopped_early=stopped,
                        train_seconds=round(sum(h["seconds"] for h in history), 2))
        train_config = {"config": cfg.to_dict(), "versions": versions(), "dataset": fingerprint, "run": run_info}
        publish(out, net.cpu(), labels, data_config, metrics, preds, history, train_config)
        log(report(metrics, out))
    distributed.barrier(world)
    return out


def publish(out: Path, model: torch.nn.Module, labels: list[str], data_config: dict, metrics: dict,
            preds: dict, history: list[dict], train_config: dict) -> None:
    """Write every published file to a staging folder, then move them over the previous ones."""
    staging = out / ".staging"
    shutil.rmtree(staging, ignore_errors=True)
    try:
        save_model_folder(model, labels, staging, data_config)
        (staging / "metrics.json").write_text(json.dumps(metrics, indent=2))
        (staging / "train_config.json").write_text(json.dumps(train_config, indent=2))
        with open(staging / "history.csv", "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=HISTORY_FIELDS)
            writer.writeheader()
            writer.writerows({k: h[k] for k in HISTORY_FIELDS} for h in history)
        split = "test" if "test" in preds else "validation"
        plot_confusion_matrix(metrics[split]["confusion_matrix"], labels, staging / "plots" / "confusion_matrix.png",
                              f"confusion matrix ({split})")
        plot_roc(*preds[split], labels, staging / "plots" / "roc.png", f"ROC, one-vs-rest ({split})")
        plot_curves(history, staging / "plots" / "curves.png")
        config = json.loads((staging / "config.json").read_text())
        render_card(config, metrics, train_config).save(staging / "README.md")
        (out / "plots").mkdir(exist_ok=True)
        for rel in (*PUBLISHED, "plots/confusion_matrix.png", "plots/roc.png", "plots/curves.png"):
            os.replace(staging / rel, out / rel)
    except OSError as exc:
        raise OutputError(f"could not write the model folder {out} ({exc.strerror or exc}); "
                          "files of a previous run there were left as they were") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def report(metrics: dict, out: Path) -> str:
    """The final table: per-class and overall metrics of each split, and how to use the folder."""
    lines = []
    for split, m in metrics.items():
        lines.append(f"\n{split} ({m['n']} images): accuracy {m['accuracy']:.4f}  macro F1 {m['f1_macro']:.4f}  "
                     f"macro AUC {_f(m['auc_macro'])}  log loss {m['log_loss']:.4f}  ECE {m['ece']:.4f}")
        width = max(len("class"), *(len(k) for k in m["per_class"]))
        lines.append(f"  {'class':<{width}}  precision  recall     F1     AUC  support")
        for label, c in m["per_class"].items():
            lines.append(f"  {label:<{width}}  {c['precision']:9.4f}  {c['recall']:6.4f}  {c['f1']:6.4f}  "
                         f"{_f(c['auc']):>6}  {c['support']:7d}")
    lines += [f"\nmodel folder: {out.resolve()}",
              "use it:",
              f"  python -c \"from hub import from_pretrained; print(from_pretrained('{out}').predict('image.png'))\"",
              f"  timm.create_model('local-dir:{out.resolve()}', pretrained=True)",
              f"  python -m hub push {out} ORG/REPO --tag auto"]
    return "\n".join(lines)


def _f(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.4f}"

