"""CAM methods on a normalised input tensor: Grad-CAM and Score-CAM (exact, or fast with k passes).

Each method is a small class over `BaseCAM`; calling one returns a `CamResult` whose `cam` is the
map at the target layer's resolution, min-max normalised to [0, 1]. Nothing is kept between
calls, so one instance (or many) may be used from several threads on one shared model.

Score-CAM follows the definition of pytorch-grad-cam's `ScoreCAM` (Wang et al. 2020): every
activation map, bilinearly upsampled (align_corners=True) and min-max normalised, masks the
normalised input; the target logits of the masked inputs, softmaxed over channels, weight the
activation maps; ReLU; min-max normalise. One difference of default, the fill (`SCORECAM_FILL`): what a
mask hides is a blur of the image, where the library's x * mask makes it the mean colour (`fill="constant"`
is the library's). Other differences are in cost only: masked inputs are built
one batch at a time, run without hooks in `inference_mode`, channels_last and (optionally)
autocast, scores stay on the device until the end, and constant channels (e.g. dead ReLUs) are
not run: their mask is all zero, so they all share the score of one all-zero mask (the fill alone).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Literal, Optional, Union

import torch
import torch.nn.functional as F
from torch import nn

from hub.device import autocast, autocast_dtype
from hub.explain.imputation import IMPUTATIONS, impute
from hub.explain.split import ModelSplit, split_model
from hub.model import resolve_contrast, resolve_target

# Score-CAM's k as users write it: a whole number (fast mode, k masked passes), "exact" (one pass per
# channel) or "auto" (chosen for the device by `resolve_max_channels`).
MaxChannels = Union[int, Literal["auto", "exact"]]
# k once the device is known: a whole number or "exact", never "auto" (what `make_cam` and the app take).
Passes = Union[int, Literal["exact"]]
# Fast mode's default k (masked passes) and its k-means steps: chosen by measurement (see the
# report in bench/explain.py); a few Lloyd steps cluster as well as many.
FAST_CHANNELS = 32
KMEANS_STEPS = 5
# What a Score-CAM mask removes becomes (`hub.explain.imputation`): "constant" is pytorch-grad-cam's x * mask,
# the normalisation mean colour; "blur" and "linear" fill from the image itself. Blur, measured (python -m
# bench.localisation --scorecam-fill constant blur linear; a guided ResNet50 at 192 px, 294 validation MRI slices):
# Score-CAM's peak on the tumour box 0.350 / 0.867 / 0.741 of slices, energy 1.26x / 3.68x / 3.52x the box's
# area share; the sanity check (python -m hub explain --faithfulness, 8 slices) fails with constant (|rho| 0.57,
# SSIM 0.56 with the head, layer4 and layer3 randomised) and passes with blur (0.17, 0.24), deletion / insertion
# on 30 slices 0.426 / 0.510 against 0.430 / 0.493. On the unguided control (same size, no boxes) the blur
# fill's peak is on the tumour on 0.126 of slices: it follows the model, it does not find tumours by itself.
# A reading, not tested apart: grey where the mask was is a
# shape the model reads, so masks that keep the head's outline score highest; a blurred slice keeps the coarse
# anatomy everywhere, so a mask scores by the detail it keeps.
SCORECAM_FILL = "blur"
# pytorch-grad-cam's epsilon in the mask normalisation; spans below it give (almost) zero masks.
MASK_EPS = 1e-8
# Rough peak bytes per masked sample, as a multiple of the input's bytes (ResNet50 in inference
# keeps a few 256-channel quarter-resolution maps alive: ~16x the input each, plus workspace).
SAMPLE_BYTES_PER_INPUT_BYTE = 48


@dataclass(frozen=True)
class CamResult:
    """One class-activation map and the unmasked pass it came from."""

    cam: torch.Tensor       # h x w float32 on the CPU, in [0, 1]
    logits: torch.Tensor    # num_classes float32 on the CPU (unmasked input)
    target: int
    mode: str               # "gradient", "exact" or "fast"
    passes: int             # masked forward passes run (0 for Grad-CAM)
    channels: int           # channels of the target layer
    layer: str
    rival: Optional[int] = None  # the class explained against (target = logit A - logit B), if any
    fill: Optional[str] = None   # Score-CAM: what its masks removed became (hub.explain.imputation); else None


def parse_max_channels(value: MaxChannels | str) -> MaxChannels:
    """Check Score-CAM's k as given by a user: "auto", "exact" or a whole number >= 1 (digits accepted)."""
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if value in ("auto", "exact"):
        return value
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"max_channels must be 'auto', 'exact' or a whole number >= 1, got {value!r}")
    if value < 1:
        raise ValueError(f"max_channels must be at least 1 (or 'exact'), got {value}")
    return value


def resolve_max_channels(value: MaxChannels | str, device: torch.device | str) -> Passes:
    """k masked passes for fast Score-CAM, or "exact": 'auto' is fast on CPU (the exact 2,048 passes of
    ResNet50 take minutes there) and exact on CUDA."""
    value = parse_max_channels(value)
    if value == "auto":
        return "exact" if torch.device(device).type == "cuda" else FAST_CHANNELS
    return value


def check_fill(fill: str) -> str:
    """`fill` if Score-CAM knows it, else a ValueError naming the choices."""
    if fill not in IMPUTATIONS:
        raise ValueError(f"unknown Score-CAM fill {fill!r}; choose from {list(IMPUTATIONS)}")
    return fill


def normalise(cam: torch.Tensor) -> torch.Tensor:
    """Min-max scale to [0, 1]; a flat or non-finite map becomes all zeros instead of NaN."""
    cam = torch.nan_to_num(cam.float(), nan=0.0, posinf=0.0, neginf=0.0)
    lo, hi = cam.min(), cam.max()
    return (cam - lo) / (hi - lo) if hi > lo else torch.zeros_like(cam)


def resolve_dtype(device: torch.device, dtype: Union[str, torch.dtype, None], *,
                  reduced_on_cpu: bool) -> Optional[torch.dtype]:
    """The autocast dtype of a batch of passes: a named dtype as named ("float32" and None: full precision);
    "auto" is `hub.device.autocast_dtype` (bf16, else fp16) on CUDA, and on a CPU only when `reduced_on_cpu`
    (then bf16 where the CPU runs it natively, else none). Each caller says which "auto" it means."""
    if isinstance(dtype, torch.dtype):
        return None if dtype == torch.float32 else dtype
    if dtype in (None, "float32", "fp32"):
        return None
    if dtype == "auto":
        return autocast_dtype(device) if reduced_on_cpu or torch.device(device).type == "cuda" else None
    names = {"bfloat16": torch.bfloat16, "bf16": torch.bfloat16, "float16": torch.float16, "fp16": torch.float16}
    if dtype not in names:
        raise ValueError(f"dtype must be 'auto', 'float32', 'bfloat16' or 'float16', got {dtype!r}")
    return names[dtype]


def auto_batch_size(x: torch.Tensor, dtype: Optional[torch.dtype], limit: int) -> int:
    """Masked inputs per pass, from free device memory (CUDA) or available RAM (CPU)."""
    element = torch.finfo(dtype).bits // 8 if dtype else 4
    per_sample = x[0].numel() * (element + 4) * SAMPLE_BYTES_PER_INPUT_BYTE // 2
    if x.device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(x.device)
        budget, cap = free // 2, 256
    else:
        try:
            free = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError, AttributeError):
            free = 2 << 30
        # CPU throughput stops improving past a few dozen samples; memory is the real limit.
        budget, cap = free // 4, 32
    return int(max(1, min(cap, limit, budget // max(per_sample, 1))))


class BaseCAM:
    """Shared base: the model split at its target layer (default: the last feature stage)."""

    mode = "base"
    fill: Optional[str] = None   # Score-CAM sets what its masks hide; methods without masks have none

    def __init__(self, model: nn.Module, layer: Union[str, nn.Module, None] = None):
        self.model = model
        self.split: ModelSplit = split_model(model, layer)

    def __call__(self, x: torch.Tensor, target: Optional[int] = None, rival: Optional[int] = None) -> CamResult:
        """The map for one normalised 1x3xHxW input and class `target` (default: predicted), against `rival`."""
        if x.ndim != 4 or x.shape[0] != 1:
            raise ValueError(f"expected one image as a 1xCxHxW tensor, got shape {tuple(x.shape)}")
        with self.split.session():
            return self.compute(x, target, rival)

    def compute(self, x: torch.Tensor, target: Optional[int], rival: Optional[int]) -> CamResult:
        """Method-specific work, run while the split's session is held."""
        raise NotImplementedError

    def _target(self, logits: torch.Tensor, target: Optional[int], rival: Optional[int]) -> int:
        names = [str(i) for i in range(logits.shape[-1])]
        index = resolve_target(target, names)
        index = int(logits[0].argmax()) if index is None else index
        if rival is not None:
            resolve_contrast((index, rival), names)
        return index

    def _result(self, cam, logits, target, passes, channels, mode=None, rival=None) -> CamResult:
        return CamResult(normalise(F.relu(cam)).cpu(), logits[0].detach().float().cpu(), target,
                         mode or self.mode, passes, channels, self.split.layer, rival, self.fill)


def target_score(logits: torch.Tensor, target: int, rival: Optional[int]) -> torch.Tensor:
    """What a map explains, per row: the target logit, or logit A - logit B for a contrastive target."""
    return logits[:, target] if rival is None else logits[:, target] - logits[:, rival]


class GradCAM(BaseCAM):
    """Grad-CAM: channel weights are the spatial mean of d(target logit)/d(activation)."""

    mode = "gradient"

    def compute(self, x: torch.Tensor, target: Optional[int], rival: Optional[int]) -> CamResult:
        """One forward (trunk without autograd) and a backward through the head only."""
        with torch.inference_mode(False):  # a caller's inference_mode would forbid the backward
            acts, logits, leaf = self.split.run(x, grad=True)
            t = self._target(logits, target, rival)
            (grad,) = torch.autograd.grad(target_score(logits, t, rival)[0], leaf)
        grads = self.split.grid(grad)
        weights = grads.float().mean(dim=(2, 3), keepdim=True)
        cam = (weights * acts.detach().float()).sum(dim=1)[0]
        return self._result(cam, logits, t, 0, acts.shape[1], rival=rival)


class ScoreCAM(BaseCAM):
    """Exact Score-CAM: one masked pass per non-constant channel of the target layer."""

    mode = "exact"

    def __init__(self, model: nn.Module, layer: Union[str, nn.Module, None] = None,
                 batch_size: Optional[int] = None, dtype: Union[str, torch.dtype, None] = "auto",
                 fill: str = SCORECAM_FILL):
        super().__init__(model, layer)
        self.batch_size, self.dtype, self.fill = batch_size, dtype, check_fill(fill)

    def compute(self, x: torch.Tensor, target: Optional[int], rival: Optional[int]) -> CamResult:
        """Base pass in fp32, masked passes batched, weights softmaxed over channels."""
        with torch.inference_mode():
            acts, logits, _ = self.split.run(x)
            t = self._target(logits, target, rival)
            maps = acts[0].float()                                   # C x h x w
            lo = maps.amin(dim=(1, 2), keepdim=True)
            span = maps.amax(dim=(1, 2), keepdim=True) - lo
            flat = span.flatten() < MASK_EPS
            varying = (~flat).nonzero().flatten()
            if varying.numel() == 0:  # nothing varies anywhere: there is nothing to point at
                return self._result(maps.new_zeros(maps.shape[1:]), logits, t, 0, maps.shape[0], "exact", rival)
            # The library's masks at feature resolution (normalising commutes with its upsampling).
            masks = (maps[varying] - lo[varying]) / (span[varying] + MASK_EPS)
            run, share = self.plan(masks)
            # Constant channels add a flat term to the map (which normalisation removes) unless
            # they are non-zero and the map can go negative: only then is the all-zero mask's
            # score needed (their masks are all zero, so one pass serves them all).
            constant = maps[flat].sum(dim=0)
            need_zero = bool(constant.abs().amax() > 0) if constant.numel() else False
            scores, zero_score = self.masked_scores(x, masks[run], t, need_zero, rival)
            # Softmax over every non-constant channel, each with its own score (exact) or with
            # the score of its group's representative (fast); constant channels in the same units.
            channel_scores = scores[share].float()
            log_total = torch.logsumexp(channel_scores, dim=0)
            cam = torch.einsum("c,chw->hw", torch.exp(channel_scores - log_total), maps[varying])
            if need_zero:
                cam = cam + torch.exp(zero_score - log_total) * constant
        mode = self.mode if run.numel() < varying.numel() else "exact"
        return self._result(cam, logits, t, int(run.numel()) + need_zero, maps.shape[0], mode, rival)

    def plan(self, masks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Which masks to run, and for each channel the index of the run whose score it takes."""
        every = torch.arange(masks.shape[0], device=masks.device)
        return every, every

    def masked_scores(self, x: torch.Tensor, masks: torch.Tensor, target: int, zero: bool,
                      rival: Optional[int] = None):
        """Target scores of x * upsample(mask) for every mask, batched; one host sync at the end."""
        device = x.device
        # reduced precision on CUDA only: on a CPU the masked passes stay fp32 unless a dtype is named
        dtype = resolve_dtype(device, self.dtype, reduced_on_cpu=False)
        size = x.shape[-2:]
        if zero:  # the all-zero mask rides along with the first batch
            masks = torch.cat([masks, masks.new_zeros((1,) + masks.shape[1:])])
        batch = self.batch_size or auto_batch_size(x, dtype, limit=max(1, masks.shape[0]))
        out = []
        for chunk in masks.split(batch):
            up = F.interpolate(chunk[None], size=size, mode="bilinear", align_corners=True)[0]
            masked = impute(x, up[:, None], self.fill).contiguous(memory_format=torch.channels_last)
            with autocast(device, dtype):
                out.append(target_score(self.model(masked).float(), target, rival))
        scores = torch.cat(out) if out else x.new_zeros(0)
        if zero:
            return scores[:-1], scores[-1]
        return scores, None


class FastScoreCAM(ScoreCAM):
    """Score-CAM with at most `max_channels` (k) masked passes: channels with alike masks share one.

    The channels' masks (min-max normalised activation maps, at feature resolution) are grouped
    into k clusters by a seeded k-means; the channel nearest each cluster's centre runs its masked
    pass, and every channel in the cluster takes that score. The softmax and the weighted sum are
    then exactly Score-CAM's. With k >= the number of channels every channel is its own cluster:
    exact Score-CAM. Why clusters and not a random or top-k subset: see bench/explain.py.
    """

    mode = "fast"

    def __init__(self, model: nn.Module, max_channels: int = FAST_CHANNELS,
                 layer: Union[str, nn.Module, None] = None, batch_size: Optional[int] = None,
                 dtype: Union[str, torch.dtype, None] = "auto", seed: int = 0, fill: str = SCORECAM_FILL):
        super().__init__(model, layer, batch_size, dtype, fill)
        if int(max_channels) < 1:
            raise ValueError(f"max_channels must be at least 1, got {max_channels}")
        self.max_channels, self.seed = int(max_channels), seed

    def plan(self, masks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """k-means over the masks; run each cluster's member nearest its centre."""
        n, k = masks.shape[0], self.max_channels
        if k >= n:
            return super().plan(masks)
        points = masks.flatten(1)
        gen = torch.Generator().manual_seed(self.seed)   # local: no global RNG state touched
        centres = points[torch.randperm(n, generator=gen)[:k].to(points.device)]
        for _ in range(KMEANS_STEPS):
            groups = torch.cdist(points, centres).argmin(dim=1)
            sums = torch.zeros_like(centres).index_add_(0, groups, points)
            counts = torch.bincount(groups, minlength=k)[:, None]
            centres = torch.where(counts > 0, sums / counts.clamp(min=1), centres)
        dist = torch.cdist(points, centres)
        groups = dist.argmin(dim=1)
        used = groups.unique()                              # clusters that kept members
        members = groups[:, None] == used[None]
        run = dist[:, used].masked_fill(~members, torch.inf).argmin(dim=0)
        slot = torch.full((k,), -1, dtype=torch.long, device=points.device)
        slot[used] = torch.arange(used.numel(), device=points.device)
        return run, slot[groups]
