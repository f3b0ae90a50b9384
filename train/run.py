"""fit(config) -> model folder: the whole training job, from class folders to published files.

Order of work: check the output folder and the data (fail before any training), build the model
(`setup`), pick up a checkpoint (`resume`), train with a checkpoint per epoch (`train_epochs`),
reload the best epoch, evaluate and write the model folder (`finish`, through train.output, which
leaves the previous folder as it was on any failure).
"""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from timm.utils import unwrap_model
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler

from hub.classifier import Classifier
from hub.device import needs_grad_scaler, pick_device
from hub.errors import ConfigError
from hub.images import find_images
from train import checkpoint, distributed, engine, parent
from train.config import TrainConfig
from train.data import ImageDataset, build_splits, eval_data_config, train_transform, trained_pretrained_cfg
from train.grounding import GroundedDataset, annotated_share, joint_transform
from train.leakage import leakage_report
from train.metrics import bootstrap_intervals, evaluate
from train.output import ensure_writable, report, versions, write_model_folder

# Options that may change between a run and its --resume (they do not change what is trained).
RESUMABLE = {"resume", "epochs", "workers", "device", "out", "push_to", "tag", "license", "dataset_id", "amp",
             "homepage", "tags", "leakage_check", "temperature"}


@dataclass
class Run:
    """What one training run holds between its phases."""

    cfg: TrainConfig
    out: Path
    world: distributed.World
    log: Callable[[str], None]
    progress: bool
    splits: object = None
    device: torch.device = None
    net: torch.nn.Module = None     # the model itself (rank 0 saves it)
    model: torch.nn.Module = None   # what the loops call: net, or net wrapped in DDP
    optimizer: torch.optim.Optimizer = None
    scheduler: object = None
    criterion: torch.nn.Module = None
    weight: torch.Tensor | None = None
    scaler: object = None
    data_config: dict = field(default_factory=dict)
    loaders: dict = field(default_factory=dict)
    leakage: dict | None = None     # near-duplicates across splits (train.leakage), rank 0 only
    regions: dict = field(default_factory=dict)  # "data" / "test": hub.annotations.Annotations of --(test-)annotations
    mixup: object = None            # timm Mixup/CutMix, or None
    ema: object = None              # timm ModelEmaV3, or None
    parent: Classifier | None = None  # the model --init names, for a retrain
    lineage: dict | None = None     # what train_config.json and the card say about the parent
    carried_temperature: tuple[float, str] | None = None  # --temperature T|MODEL: (T, where it came from)

    @property
    def evaluated(self) -> torch.nn.Module:
        """What is validated, kept as best and published: the EMA weights when there are any."""
        return self.ema.module if self.ema is not None else self.model


@dataclass
class State:
    """Where training stands: what a checkpoint saves and --resume restores."""

    history: list = field(default_factory=list)
    best_loss: float = float("inf")
    best_epoch: int = 0
    bad_epochs: int = 0
    stopped: bool = False
    epoch: int = 0


def fit(cfg: TrainConfig, log: Callable[[str], None] = print, progress: bool = True) -> Path:
    """Train, evaluate and write the model folder at cfg.out; return its path.

    Under torchrun every rank trains its shard; rank 0 alone logs, checkpoints and writes files.
    """
    world = distributed.init(pick_device(cfg.device))
    try:
        run = setup(cfg, world, log if world.main else (lambda line: None), progress and world.main)
        state = train_epochs(run, resume(run))
        return finish(run, state)
    finally:
        distributed.shutdown(world)


def _loader(dataset, cfg: TrainConfig, device: torch.device, world: distributed.World, shuffle: bool) -> DataLoader:
    """A loader over this rank's shard; --batch-size is the global batch, split over the ranks."""
    sampler = DistributedSampler(dataset, num_replicas=world.size, rank=world.rank, shuffle=shuffle, seed=cfg.seed)
    per_rank = cfg.batch_size // world.size
    # A last batch of one sample breaks BatchNorm in training mode; drop it in that one case.
    drop_last = shuffle and len(sampler) % per_rank == 1 and len(sampler) > 1
    return DataLoader(dataset, batch_size=per_rank, sampler=sampler, num_workers=cfg.workers,
                      pin_memory=device.type == "cuda", drop_last=drop_last)


def setup(cfg: TrainConfig, world: distributed.World, log: Callable[[str], None], progress: bool) -> Run:
    """Check the parent, the output folder and the data, then build model, optimiser, loss and loaders."""
    run = Run(cfg, Path(cfg.out), world, log, progress)
    # Before --out is created: a parent that cannot be had or does not fit leaves nothing behind.
    run.parent = parent.load_parent(cfg.init, cfg.arch) if cfg.init_is_model else None
    if run.parent is not None:  # from here on, and in train_config.json, the pooling and stride actually built
        run.cfg = cfg = parent.keep_network(cfg, run.parent)
    # Annotations are read (and refused) before --out is touched; the test ones are only used at the end.
    run.regions = read_regions(cfg)
    run.carried_temperature = carried_temperature(cfg)
    if world.main:
        ensure_writable(run.out)
    if cfg.batch_size % world.size:
        raise ValueError(f"--batch-size {cfg.batch_size} (the global batch) must be divisible by the "
                         f"{world.size} processes")
    run.splits = splits = build_splits(cfg.data, cfg.val_data, cfg.test_data, cfg.val_split, cfg.seed,
                                       cfg.split, cfg.group_pattern, cfg.group_csv)
    run.device = device = distributed.device_for(world, pick_device(cfg.device))
    groups = splits.info.get("groups")
    log(f"data: {len(splits.train)} train / " + (f"{len(splits.val)} val" if cfg.validates else "no val")
        + (f" / {len(splits.test)} test" if splits.test else "") + f" images, classes {list(splits.classes)}; "
        f"{splits.info['method']} split" + (f" ({groups['train']} / {groups['val']} groups)" if groups else "")
        + f"; device {device}" + (f" x {world.size} processes" if world.enabled else ""))
    if cfg.leakage_check and world.main:
        run.leakage = leakage_report({name: split.paths for name, split in splits.named()})
        for name in ("val", "test"):
            if (run.leakage.get(name) or {}).get("warning"):
                log(f"warning: {run.leakage[name]['warning']}")
    torch.manual_seed(cfg.seed)
    run.net = net = engine.build_model(cfg, len(splits.classes))
    if run.parent is not None:
        _start_from_parent(run)
    run.data_config = eval_data_config(net, cfg.img_size, cfg.mean, cfg.std, cfg.interpolation)
    if run.parent is not None and (changed := parent.preprocessing_changes(run.parent, run.data_config)):
        log(f"note: this run's preprocessing differs from what the weights of {parent.describe(run.parent)} "
            f"were trained on: {'; '.join(changed)}")
    if run.parent is not None and (changed := parent.network_changes(run.parent, net)):
        log(f"note: this run builds the network otherwise than {parent.describe(run.parent)} was trained: "
            f"{'; '.join(changed)} (as asked; leave the flags out to keep the parent's)")
    net.pretrained_cfg = trained_pretrained_cfg(net, run.data_config)
    net.to(device)
    net.to(memory_format=engine.memory_format(device, cfg.amp))
    params = engine.set_trainable(net, cfg.unfreeze)
    run.model = DistributedDataParallel(net, device_ids=[device.index] if device.type == "cuda" else None) \
        if world.enabled else net
    run.optimizer = engine.make_optimizer(cfg, params)
    run.scheduler = engine.make_scheduler(cfg, run.optimizer)
    run.weight = engine.class_weights(splits.train.counts(len(splits.classes)), cfg.class_weights)
    run.mixup = engine.make_mixup(cfg, len(splits.classes))
    run.criterion = engine.make_criterion(cfg, run.weight.to(device) if run.weight is not None else None,
                                          mixing=run.mixup is not None)
    run.ema = engine.make_ema(cfg, net)
    use_scaler = needs_grad_scaler(device, engine.amp_dtype(device, cfg.amp))
    run.scaler = torch.amp.GradScaler("cuda") if use_scaler else None
    from timm.data import create_transform

    train_tf = train_transform(run.data_config, cfg.hflip, cfg.rotation, cfg.color_jitter, cfg.scale_min,
                               cfg.intensity)
    if "data" in run.regions:
        grounded = GroundedDataset(splits.train, run.regions["data"], joint_transform(
            run.data_config, cfg.hflip, cfg.rotation, cfg.color_jitter, cfg.scale_min, cfg.intensity),
            cfg.counterfactual, cfg.context_swap)
        annotated, total = annotated_share(run.regions["data"], splits.train)
        log(f"--annotations: {annotated} of {total} training images annotated; grounding loss weight "
            f"{cfg.guide_weight}, last stage at stride {net.feature_info[-1]['reduction']}"
            + (f", {cfg.counterfactual:.0%} shown with the region hidden (no class)" if cfg.counterfactual else "")
            + (f", {cfg.context_swap:.0%} shown in another image's context" if cfg.context_swap else ""))
        run.loaders["train"] = _loader(grounded, cfg, device, world, True)
    else:
        run.loaders["train"] = _loader(ImageDataset(splits.train, train_tf), cfg, device, world, True)
    run.loaders["eval_transform"] = eval_tf = create_transform(**run.data_config)
    if cfg.validates:
        run.loaders["validation"] = _loader(ImageDataset(splits.val, eval_tf), cfg, device, world, False)
    if splits.test is not None:
        run.loaders["test"] = _loader(ImageDataset(splits.test, eval_tf), cfg, device, world, False)
        if run.parent is not None and parent.comparable(run.parent, splits.classes):
            # the parent reads the same test images through its own preprocessing, as it was trained
            run.loaders["parent_test"] = _loader(ImageDataset(splits.test, run.parent.transform), cfg, device,
                                                 world, False)
    return run


def read_regions(cfg: TrainConfig) -> dict:
    """The Annotations of --data ("data") and --test-data ("test") images that the run was given."""
    from hub.annotations import read_annotations

    regions = {}
    for key, source, root, role in (("data", cfg.annotations, cfg.data, "--annotations"),
                                    ("test", cfg.test_annotations, cfg.test_data, "--test-annotations")):
        if source:
            regions[key] = read_annotations(source, find_images(root), root, role)
    return regions


def carried_temperature(cfg: TrainConfig) -> tuple[float, str] | None:
    """(T, its source) for --temperature T or MODEL, None for auto and none; refuses a folder without a temperature."""
    from hub.calibrate import resolve_temperature

    if cfg.temperature in ("auto", "none"):
        return None
    try:
        return resolve_temperature(cfg.temperature)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def calibrate(run: Run, preds: dict) -> tuple[dict, dict | None]:
    """(predictions as published, the calibration record) under the run's temperature (hub.calibration).

    auto fits T on the validation predictions (their log-probabilities, which with flip TTA is the mirrored
    mean); the record keeps each split's figures before and after, so the card can say what T bought."""
    from hub.calibration import compare, fit_temperature, log_probs, scale

    if run.carried_temperature is not None:
        t, source = run.carried_temperature
    elif run.cfg.temperature == "auto" and "validation" in preds:
        y, p = preds["validation"]
        try:
            t, source = fit_temperature(log_probs(p), y), "fitted on the validation block (log loss)"
        except ValueError as exc:  # too few images, or none wrong: the probabilities stay as the model gives them
            run.log(f"note: the probabilities are not calibrated: {exc}")
            return preds, None
    else:
        if run.cfg.temperature == "auto":
            run.log("note: no validation block to fit a temperature on, so the probabilities are not calibrated; "
                    "pass --temperature with the model folder of this recipe's run with validation")
        return preds, None
    record = {"temperature": t, "source": source, "applied_by": "training",
              "fitted_on": "validation" if run.carried_temperature is None else None,
              "splits": {name: compare(y, p, t) for name, (y, p) in preds.items()}}
    return {name: (y, scale(log_probs(p), t)) for name, (y, p) in preds.items()}, record


def localisation(run: Run) -> dict:
    """Where the final model's maps land on the annotated validation and test images (hub.explain.lesion)."""
    from hub.explain.lesion import lesion_report

    out = {}
    # The training images' regions: what their place alone tells of the class is the lesion-hidden check's floor.
    train, known = run.splits.train, run.regions.get("data")
    reference = [(known.get(p), c) for p, c in zip(train.paths, train.labels) if known and known.get(p) is not None]
    for name, split, key in (("validation", run.splits.val, "data"), ("test", run.splits.test, "test")):
        if key not in run.regions or split is None or not len(split):
            continue
        if not any(run.regions[key].get(p) is not None for p in split.paths):
            continue
        groups = run.splits.groups if name == "validation" else None
        t0 = time.perf_counter()
        out[name] = lesion_report(run.net.eval(), list(zip(split.paths, split.labels)), run.regions[key],
                                  groups=groups, device=run.device, reference=reference, mirror=run.cfg.hflip)
        run.log(f"localisation on {name}: {time.perf_counter() - t0:.0f} s")
    return out


def _start_from_parent(run: Run) -> None:
    """Fill the fresh model with the parent's weights, head rows and preprocessing; say what the head got."""
    cfg, classes = run.cfg, run.splits.classes
    head = parent.start_from(run.net, run.parent, classes, cfg.init_head)
    run.lineage = parent.lineage(run.parent, cfg.init_head, head)
    run.log(f"--init {parent.describe(run.parent)}: {head}")


def _resume_check(saved: dict, cfg: TrainConfig, fingerprint: dict) -> None:
    """Refuse to continue a checkpoint of another dataset or recipe."""
    if saved["fingerprint"]["files_sha256"] != fingerprint["files_sha256"]:
        raise ValueError("--resume: the checkpoint was trained on other data (dataset fingerprint differs); "
                         "use another --out or drop --resume to start over")
    old, new = saved["config"], cfg.to_dict()
    changed = sorted(k for k in new if k not in RESUMABLE and old.get(k) != new[k])
    if changed:
        raise ValueError(f"--resume: options differ from the checkpoint's run ({', '.join(changed)}); "
                         "use the same options, or drop --resume to start over")


def resume(run: Run) -> State:
    """The state after the last checkpointed epoch with --resume (weights, optimiser and schedule
    restored), else a fresh state."""
    saved = checkpoint.load_state(run.out) if run.cfg.resume else None
    if saved is None:
        if run.cfg.resume:
            run.log(f"--resume: no checkpoint in {run.out / checkpoint.CHECKPOINT_DIR}, starting from epoch 1")
        return State()
    _resume_check(saved, run.cfg, run.splits.fingerprint())
    run.net.load_state_dict(saved["model"])
    run.optimizer.load_state_dict(saved["optimizer"])
    run.scheduler.load_state_dict(saved["scheduler"])
    if run.ema is not None:
        run.ema.module.load_state_dict(saved["ema"])
        run.ema.updates = int(saved["ema_updates"])
    state = State(list(saved["history"]), saved["best_loss"], saved["best_epoch"], saved["bad_epochs"],
                  saved["stopped"], saved["epoch"])
    run.log(f"resuming after epoch {state.epoch}" + (f" (best so far: epoch {state.best_epoch}, "
                                                    f"val loss {state.best_loss:.4f})" if run.cfg.validates else ""))
    return state


def _predict(run: Run, split: str, model: torch.nn.Module | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(labels, probabilities) of a whole split by `model` (the run's), gathered from every rank in dataset order."""
    loader = run.loaders[split]
    model = run.evaluated if model is None else model
    y, p = engine.predict(model, loader, run.device, run.cfg.amp, desc=split, show=run.progress, tta=run.cfg.tta)
    index = np.fromiter(iter(loader.sampler), dtype=np.int64)[: len(y)]
    return distributed.gather_predictions(index, y, p, len(loader.dataset), run.world)


def train_epochs(run: Run, state: State) -> State:
    """Train from the epoch after `state.epoch` until the last epoch or early stopping."""
    cfg = run.cfg
    while state.epoch < cfg.epochs and not state.stopped:
        epoch, t0 = state.epoch + 1, time.perf_counter()
        engine.seed_epoch(cfg.seed, epoch, run.world.rank)
        run.loaders["train"].sampler.set_epoch(epoch)  # the shuffle of this epoch, the same on every rank
        lr = run.optimizer.param_groups[0]["lr"]
        loss_sum, correct, seen = distributed.sum_all(list(engine.train_one_epoch(
            run.model, run.loaders["train"], run.criterion, run.optimizer, run.device, cfg.amp, run.scaler,
            desc=f"epoch {epoch}/{cfg.epochs}", show=run.progress, mixup=run.mixup, ema=run.ema,
            guide=cfg.guide_weight if "data" in run.regions else 0.0)),
            run.world, run.device)
        val_loss = val_acc = None  # a final fit (--val-split 0) has no validation
        if "validation" in run.loaders:
            y, p = _predict(run, "validation")
            val_loss, val_acc = engine.mean_loss(y, p, run.weight), float((p.argmax(1) == y).mean())
        run.scheduler.step(epoch)  # the learning rate of the next epoch
        row = dict(epoch=epoch, train_loss=loss_sum / max(seen, 1), train_acc=correct / max(seen, 1),
                   val_loss=val_loss, val_acc=val_acc, lr=lr, seconds=time.perf_counter() - t0)
        _end_epoch(run, state, row)
    return state


def _end_epoch(run: Run, state: State, row: dict) -> None:
    """Record an epoch, keep the best weights, decide on early stopping, checkpoint, log."""
    cfg, epoch = run.cfg, row["epoch"]
    state.history.append(row)
    state.epoch = epoch
    validated = row["val_loss"] is not None
    # Every rank sees the same gathered val set: same decision. Without validation the last epoch is kept.
    improved = not validated or row["val_loss"] < state.best_loss
    if improved:
        state.best_epoch, state.bad_epochs = epoch, 0
        if validated:
            state.best_loss = row["val_loss"]
        if run.world.main:
            checkpoint.save_best(run.out, unwrap_model(run.evaluated).state_dict())
    else:
        state.bad_epochs += 1
    state.stopped = cfg.patience > 0 and state.bad_epochs >= cfg.patience
    if run.world.main:
        checkpoint.save_state(run.out, dict(
            epoch=epoch, model=run.net.state_dict(), optimizer=run.optimizer.state_dict(),
            scheduler=run.scheduler.state_dict(), history=state.history, best_loss=state.best_loss,
            best_epoch=state.best_epoch, bad_epochs=state.bad_epochs, stopped=state.stopped,
            config=cfg.to_dict(), fingerprint=run.splits.fingerprint(),
            **({"ema": run.ema.module.state_dict(), "ema_updates": run.ema.updates} if run.ema else {})))
    val = f"val loss {row['val_loss']:.4f} acc {row['val_acc']:.3f}" if validated else "no validation"
    run.log(f"epoch {epoch:>3}/{cfg.epochs}  train loss {row['train_loss']:.4f} acc {row['train_acc']:.3f}  |  "
            f"{val}  |  lr {row['lr']:.2e}  {row['seconds']:.1f}s" + ("  * best" if improved and validated else "")
            + (f"\nearly stopping: no val-loss improvement for {cfg.patience} epochs" if state.stopped else ""))


def finish(run: Run, state: State) -> Path:
    """Reload the best epoch (the last one of a final fit), evaluate validation and test, write the model
    folder on rank 0."""
    distributed.barrier(run.world)  # rank 0 has written the best weights
    run.net.load_state_dict(checkpoint.load_best(run.out))
    run.ema = None  # the best weights (EMA ones, when --ema-decay is set) are now in the model itself
    labels = list(run.splits.classes)
    preds, calibration = calibrate(run, {name: _predict(run, name) for name in ("validation", "test")
                                         if name in run.loaders})
    metrics = {name: evaluate(*pred, labels) for name, pred in preds.items()}
    for name, split in (("validation", run.splits.val), ("test", run.splits.test)):
        if name in metrics:  # slices of one patient are not independent: resample whole groups when known
            groups = [run.splits.groups[p] for p in split.paths] if run.splits.groups and name == "validation" \
                else None
            metrics[name]["intervals"] = bootstrap_intervals(*preds[name], seed=run.cfg.seed, groups=groups)
    if "parent_test" in run.loaders:  # the parent on the same test data, for the card's side-by-side table
        from hub.calibration import log_probs, scale

        y, p = _predict(run, "parent_test", run.parent.model.to(run.device))
        p = scale(log_probs(p), run.parent.temperature)  # the parent's probabilities as it publishes them
        p = p[:, parent.comparable(run.parent, labels)]
        metrics["parent_test"] = {**evaluate(y, p, labels), "intervals": bootstrap_intervals(y, p, seed=run.cfg.seed)}
    metrics["split"] = run.splits.info
    if calibration is not None:
        metrics["calibration"] = calibration
    if run.world.main and run.regions:
        metrics["localisation"] = localisation(run)
    if run.leakage is not None:
        metrics["leakage"] = run.leakage
    if run.world.main:
        history = state.history
        run_info = dict(device=str(run.device), processes=run.world.size, epochs_run=len(history),
                        best_epoch=state.best_epoch, stopped_early=state.stopped,
                        best_val_loss=state.best_loss if run.cfg.validates else None,
                        train_seconds=round(sum(h["seconds"] for h in history), 2))
        if "data" in run.regions:  # the card says how many training images the grounding saw
            run_info["annotated_training_images"] = annotated_share(run.regions["data"], run.splits.train)[0]
        train_config = {"config": run.cfg.to_dict(), "versions": versions(), "dataset": run.splits.fingerprint(),
                        "run": run_info}
        if run.lineage is not None:
            train_config["parent"] = run.lineage
        # safetensors stores contiguous tensors only: channels_last (--amp) weights go back to NCHW first.
        net = run.net.cpu().to(memory_format=torch.contiguous_format)
        write_model_folder(run.out, net, labels, run.data_config, metrics, preds, history, train_config,
                           temperature=calibration["temperature"] if calibration else None)
        run.log(report(metrics, run.out))
    distributed.barrier(run.world)
    return run.out
