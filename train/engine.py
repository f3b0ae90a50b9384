"""The pieces of one training run: model, optimiser, schedule, loss, and the epoch loops.

Determinism: every epoch reseeds torch from (seed, epoch), so a run resumed after epoch k
draws the same augmentations, shuffles and dropout masks as an uninterrupted one.
"""
from __future__ import annotations

import math
import random
from collections.abc import Iterable
from contextlib import nullcontext

import numpy as np
import torch
from timm.utils import unwrap_model
from torch import nn
from tqdm import tqdm

from hub.device import autocast, autocast_dtype
from hub.errors import WeightsError
from train.config import TrainConfig
from train.grounding import HIDDEN, capture_features, cell_logits, grounding_loss, no_class_loss

# Steps between reads of the running loss/accuracy (each read is a host-device sync on a GPU).
SYNC_EVERY = 10


def build_model(cfg: TrainConfig, num_classes: int) -> nn.Module:
    """timm model with a fresh `num_classes` head, from ImageNet, an `--init` file, or scratch.

    With `--init MODEL` (a retrain) this is the fresh model that `train.parent.start_from` fills in.
    """
    import timm

    kwargs = dict(num_classes=num_classes, drop_rate=cfg.dropout)
    if cfg.output_stride != 32:  # dilated last stage(s): same weights, a finer map (saved in config.json's model_args)
        kwargs["output_stride"] = cfg.output_stride
    if cfg.global_pool != "avg":  # no weights change: saved in config.json's model_args like the stride
        kwargs["global_pool"] = cfg.global_pool
    if cfg.init or not cfg.pretrained:
        model = timm.create_model(cfg.model_name, pretrained=False, **kwargs)
        if cfg.init_is_file:
            _load_init(model, cfg.init, keep_head=cfg.init_head == "keep")
        return model
    try:
        return timm.create_model(cfg.model_name, pretrained=True, **kwargs)
    except Exception as exc:  # noqa: BLE001 - network, auth, missing file: all end the same way for the user
        raise WeightsError(
            f"could not download the ImageNet weights '{cfg.model_name}' through timm "
            f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else 'no details'}). "
            "Train from scratch with --no-pretrained, start from local weights with --init PATH.safetensors, "
            "or retrain a model with --init FOLDER or --init org/repo@REV") from None


def _load_init(model: nn.Module, path: str, keep_head: bool) -> None:
    """Load a backbone from safetensors; the classifier too when `keep_head` and its shape fits."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        state = load_file(path)
    except FileNotFoundError:
        raise WeightsError(f"--init {path}: no such file") from None
    except (SafetensorError, OSError, ValueError) as exc:
        raise WeightsError(f"--init {path}: not a readable safetensors file ({exc})") from None
    head = model.pretrained_cfg.get("classifier", "fc")
    own = model.state_dict()
    usable = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape
              and (keep_head or not k.startswith(f"{head}."))}
    missing = [k for k in own if k not in usable and not k.startswith(head)]
    if missing:
        raise WeightsError(f"--init {path}: does not fit {model.pretrained_cfg.get('architecture')} "
                           f"({len(missing)} backbone tensors missing or of another shape, e.g. {missing[0]})")
    model.load_state_dict(usable, strict=False)


def set_trainable(model: nn.Module, unfreeze: Iterable[str]) -> list[nn.Parameter]:
    """Freeze everything except the named top-level children ('all' trains everything)."""
    unfreeze = set(unfreeze)
    for name, p in model.named_parameters():
        p.requires_grad = "all" in unfreeze or name.split(".")[0] in unfreeze
    return [p for p in model.parameters() if p.requires_grad]


def make_optimizer(cfg: TrainConfig, params: list[nn.Parameter]) -> torch.optim.Optimizer:
    """Adam, AdamW or SGD with momentum, as configured."""
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    opt = torch.optim.AdamW if cfg.optimizer == "adamw" else torch.optim.Adam
    return opt(params, lr=cfg.lr, weight_decay=cfg.weight_decay)


def make_scheduler(cfg: TrainConfig, optimizer: torch.optim.Optimizer):
    """timm's CosineLRScheduler, stepped per epoch: `warmup_epochs` linear from lr/100, then cosine to min_lr
    over the remaining epochs. Call `.step(epochs_done)` after each epoch."""
    from timm.scheduler import CosineLRScheduler

    warmup = min(cfg.warmup_epochs, cfg.epochs - 1)
    return CosineLRScheduler(optimizer, t_initial=cfg.epochs - warmup, lr_min=min(cfg.min_lr, cfg.lr),
                             warmup_t=warmup, warmup_lr_init=cfg.lr / 100 if warmup else 0.0, warmup_prefix=True)


def make_mixup(cfg: TrainConfig, num_classes: int):
    """timm's Mixup/CutMix on each batch (soft targets with label smoothing), or None when both are off."""
    if not (cfg.mixup or cfg.cutmix):
        return None
    from timm.data import Mixup

    return Mixup(mixup_alpha=cfg.mixup, cutmix_alpha=cfg.cutmix, label_smoothing=cfg.label_smoothing,
                 num_classes=num_classes)


def make_criterion(cfg: TrainConfig, weight: torch.Tensor | None, mixing: bool) -> nn.Module:
    """Cross-entropy with the class weights and label smoothing; soft-target cross-entropy under mixup
    (Mixup already smooths its targets, and class weights do not apply to mixed targets)."""
    if mixing:
        from timm.loss import SoftTargetCrossEntropy

        return SoftTargetCrossEntropy()
    return nn.CrossEntropyLoss(weight=weight, label_smoothing=cfg.label_smoothing)


class Ema:
    """timm's ModelEmaV3 (an exponential moving average of the weights) with the update count its warmup
    needs: timm leaves the counting to the caller, and a resumed run must continue the same count."""

    def __init__(self, model: nn.Module, decay: float, updates: int = 0):
        from timm.utils import ModelEmaV3

        self.ema, self.updates = ModelEmaV3(model, decay=decay, use_warmup=True), updates

    @property
    def module(self) -> nn.Module:
        """The averaged model (evaluated, kept as best and published)."""
        return self.ema.module

    def update(self, model: nn.Module) -> None:
        """Fold the current weights in; early updates weigh more (timm's warmup of the decay)."""
        self.updates += 1
        self.ema.update(model, step=self.updates)


def make_ema(cfg: TrainConfig, model: nn.Module) -> Ema | None:
    """The EMA of `model`'s weights, or None when --ema-decay is 0."""
    return Ema(model, cfg.ema_decay) if cfg.ema_decay else None


def class_weights(counts: list[int], mode: str) -> torch.Tensor | None:
    """'balanced': n / (k * count_c) per class (scikit-learn's compute_class_weight); 'none' gives None."""
    if mode == "none":
        return None
    from sklearn.utils.class_weight import compute_class_weight

    # scikit-learn takes labels, not counts; a class with no image (never trained on) keeps weight n / k
    labels = np.repeat(np.arange(len(counts)), counts)
    present = [i for i, c in enumerate(counts) if c]
    weights = np.full(len(counts), len(labels) / len(counts), dtype=np.float64)
    balanced = compute_class_weight("balanced", classes=np.array(present), y=labels)
    weights[present] = balanced * len(present) / len(counts)
    return torch.tensor(weights, dtype=torch.float32)


def amp_dtype(device: torch.device, enabled: bool) -> torch.dtype | None:
    """--amp's precision on `device` (bf16/fp16 on GPUs, bf16 on bf16-native CPUs), None when off or not worth it."""
    return autocast_dtype(device) if enabled else None


def memory_format(device: torch.device, enabled: bool) -> torch.memory_format:
    """channels_last wherever --amp runs reduced precision: oneDNN and cuDNN pick their fast NHWC kernels."""
    return torch.channels_last if amp_dtype(device, enabled) else torch.contiguous_format


def amp_context(device: torch.device, enabled: bool):
    """Autocast in --amp's precision on `device`; a no-op when off or where it would be slower."""
    return autocast(device, amp_dtype(device, enabled))


def seed_epoch(seed: int, epoch: int, rank: int = 0) -> None:
    """Reseed every generator an epoch draws from, from (seed, epoch, rank): a resumed epoch replays exactly.
    torch: torchvision transforms, dropout; numpy: timm's Mixup/CutMix; random: timm's random-resized-crop."""
    value = seed * 1000 + epoch + 7919 * rank
    torch.manual_seed(value)
    np.random.seed(value % 2**32)
    random.seed(value)


def train_one_epoch(model: nn.Module, loader, criterion: nn.Module, optimizer: torch.optim.Optimizer,
                    device: torch.device, amp: bool = False, scaler=None, desc: str = "train",
                    show: bool = True, sync_every: int = SYNC_EVERY, mixup=None, ema=None,
                    guide: float = 0.0) -> tuple[float, int, int]:
    """One pass over `loader` with a live progress bar; returns (summed loss, correct, seen).

    With `guide` > 0 the loader yields (image, label, region mask, annotated) and the loss adds
    `guide` times train.grounding's loss on the annotated images (--annotations).
    Loss and accuracy are summed on the device and read back every `sync_every` steps (and at the
    end): each read waits for the GPU to drain its queue, so reading every step would stall it.
    """
    model.train()
    total_loss = torch.zeros((), device=device)
    correct = torch.zeros((), dtype=torch.long, device=device)
    seen = 0
    bar = tqdm(loader, desc=desc, leave=False, disable=None if show else True, dynamic_ncols=True)
    layout = memory_format(device, amp)
    net = unwrap_model(model)
    with capture_features(net) if guide else nullcontext([]) as features:
        for step, batch in enumerate(bar, 1):
            x = batch[0].to(device, non_blocking=True, memory_format=layout)
            y = batch[1].to(device, non_blocking=True)
            target = y
            if mixup is not None and len(y) % 2 == 0:  # timm mixes a batch with its flip: it needs an even size
                x, target = mixup(x, y)
            elif mixup is not None:  # the odd last batch: the same soft targets, unmixed
                target = nn.functional.one_hot(y, logits_width(model)).float()
            optimizer.zero_grad(set_to_none=True)
            features.clear()
            with amp_context(device, amp):
                logits = model(x)
                if guide:
                    loss = guided_loss(logits, target, y, batch, features[-1], net, criterion, guide, device)
                else:
                    loss = criterion(logits.float(), target)
            if scaler is not None:
                scaler.scale(loss).backward()
                scaler.step(optimizer)
                scaler.update()
            else:
                loss.backward()
                optimizer.step()
            if ema is not None:
                ema.update(net)
            n = y.shape[0]
            total_loss += loss.detach() * n
            correct += (logits.detach().argmax(1) == y).sum()
            seen += n
            if step % sync_every == 0 or step == len(bar):
                loss_sum = total_loss.item()
                if not math.isfinite(loss_sum):
                    raise FloatingPointError(f"training loss became {loss_sum} (by step {step}); "
                                             "lower --lr or turn off --amp")
                bar.set_postfix(loss=f"{loss_sum / seen:.4f}", acc=f"{correct.item() / seen:.3f}")
    loss_sum = total_loss.item()
    if not math.isfinite(loss_sum):
        raise FloatingPointError(f"training loss became {loss_sum}; lower --lr or turn off --amp")
    return loss_sum, int(correct.item()), seen


def guided_loss(logits, target, y, batch, features, net, criterion, guide: float, device) -> torch.Tensor:
    """Cross-entropy on the images shown with their evidence, plus `guide` times the grounding loss on the
    annotated ones and the no-class loss on those shown with their region hidden (train.grounding)."""
    masks, kinds = batch[2].to(device, non_blocking=True), batch[3].to(device, non_blocking=True)
    hidden = kinds == HIDDEN
    shown = ~hidden
    loss = criterion(logits[shown].float(), target[shown]) if bool(shown.any()) else logits.new_zeros(())
    cells = cell_logits(features, net.get_classifier())
    loss = loss + guide * grounding_loss(cells, y, masks, kinds)
    if bool(hidden.any()):
        loss = loss + guide * no_class_loss(logits[hidden]).sum() / len(y)
    return loss


def logits_width(model: nn.Module) -> int:
    """The number of classes a (possibly DDP-wrapped) timm model predicts."""
    return unwrap_model(model).num_classes


@torch.inference_mode()
def predict(model: nn.Module, loader, device: torch.device, amp: bool = False, desc: str = "eval",
            show: bool = True, tta: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(labels, softmax probabilities) over a loader, in order; with `tta`, the mean of the image's and
    its horizontal mirror's probabilities (flip test-time augmentation)."""
    model.eval()
    ys, probs = [], []
    for x, y in tqdm(loader, desc=desc, leave=False, disable=None if show else True, dynamic_ncols=True):
        x = x.to(device, memory_format=memory_format(device, amp))
        with amp_context(device, amp):
            p = model(x).float().softmax(1)
            if tta:
                p = (p + model(x.flip(-1)).float().softmax(1)) / 2
        probs.append(p.cpu().numpy())
        ys.append(y.numpy())
    return np.concatenate(ys), np.concatenate(probs)


def mean_loss(y_true: np.ndarray, y_prob: np.ndarray, weight: torch.Tensor | None) -> float:
    """The training criterion (weighted cross-entropy) evaluated on predicted probabilities."""
    logp = torch.log(torch.from_numpy(y_prob).clamp(min=1e-12))
    loss = nn.functional.nll_loss(logp, torch.from_numpy(y_true), weight=weight)
    value = float(loss)
    return value if math.isfinite(value) else float("inf")
