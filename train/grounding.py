"""Annotation-guided training: a loss that grounds the decision in the expert's region (--annotations).

A timm ResNet's head is global average pooling then a linear layer, so its logits are the mean over
the last stage's cells of per-cell logits `W a_ij + b`, and Grad-CAM at that stage is exactly the
target row of those cell logits (Zhou et al. 2016's CAM). With max pooling (--global-pool max) the logits are
no longer that mean, but Grad-CAM still is that row less its bias: a max-pooled logit's gradient also sums to the
head's weight over the cells (tests/test_pooling.py). The loss therefore works on the cell logits
of each annotated image, with `coverage`, the share of each cell the region covers:

- inside (the map's peak on the lesion): a softmax over the cells of the true class's cell logits
  must put its mass on the covered cells, -log(sum softmax * coverage / max coverage). This is the
  pointing game made differentiable; a loss on the map's mass outside alone ("A quick try ... moved the
  pointing game only to 0.15-0.20", issue #20) leaves the peak free to sit on the skull;
- outside (no evidence off the lesion, Ross et al. 2017's "right for the right reasons" at cell
  level): every cell the region does not touch must be class-neutral, KL(uniform || softmax(cell)),
  so view, skull and acquisition context cannot carry the class: the lesion-hidden accuracy falls.

The total is cross-entropy + weight * (inside + outside), over the annotated images of the batch
(images without an annotation add cross-entropy only).

Cell logits constrain where the evidence is credited, not what a cell has seen: a ResNet's last-stage cells
see the whole image, so a lesion cell can still read a marker or the skull (the planted-shortcut test:
pointing 0.87 but accuracy 0.62 on marker-shuffled images with this loss alone). With `counterfactual`
p > 0, each annotated training image is, with probability p, shown with its region hidden instead (filled
by a blur of its surroundings) and trained toward no class at all (the uniform distribution, weight
`weight`): context alone must not predict the class (counterfactual augmentation; Teney et al. 2020).
The fill differs from the shortcut check's (pull-push inpainting, hub.explain.shortcut) so that the
lesion-hidden accuracy is not measured on the very images the model was taught to refuse.
With `context_swap` q > 0, each annotated training image is, with probability q, shown with its region (grown
as above, feathered) pasted at the same place into another annotated training image, drawn uniformly, whose own
region is blur-filled first; the label and the region stay the first image's. In those samples the context
(view, anatomy, acquisition, what a lesion does to its surroundings) is independent of the label, so it stops
paying to read it, while the lesion and its place still carry the class (background swapping: Xiao et al. 2021,
"Noise or Signal", whose models trained on random backgrounds relied less on them). Unlike the
counterfactual, no sample asks for "no class".
The region rides through the same random crop, flip and rotation as its image (torchvision v2
transforms move a `Mask` with the image).
"""
from __future__ import annotations

import math
from collections.abc import Callable
from contextlib import contextmanager

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn
from torch.utils.data import Dataset

from hub.annotations import Annotations
from hub.errors import DataError
from hub.images import ImageError, load_image
from train.data import Split, intensity_ops

EPS = 1e-6


def joint_transform(data_config: dict, hflip: bool, rotation: float, color_jitter: float,
                    scale_min: float, intensity: float = 0.0) -> Callable:
    """(PIL image, Mask) -> (normalised tensor, mask at the input size): the recipe's augmentations applied to
    both, as `train.data.train_transform` applies them to the image (same crop sampling as timm's
    random-resized-crop: torchvision's scale/ratio algorithm, which timm copies)."""
    from torchvision.transforms import InterpolationMode, v2

    size = tuple(data_config["input_size"][1:])
    mode = InterpolationMode(data_config.get("interpolation", "bilinear"))
    ops = [v2.RandomResizedCrop(size, scale=(scale_min, 1.0), ratio=(3 / 4, 4 / 3), interpolation=mode)
           if scale_min < 1.0 else v2.Resize(size, interpolation=mode)]
    if hflip:
        ops.append(v2.RandomHorizontalFlip())
    if rotation:
        ops.append(v2.RandomRotation(rotation, interpolation=mode))
    if color_jitter:
        ops.append(v2.ColorJitter(brightness=color_jitter, contrast=color_jitter, saturation=color_jitter))
    ops += [v2.ToImage(), v2.ToDtype(torch.float32, scale=True), *intensity_ops(intensity),
            v2.Normalize(data_config["mean"], data_config["std"])]
    return v2.Compose(ops)


# What a sample is to the loss: no region (cross-entropy only), annotated, or its region hidden (no class).
PLAIN, ANNOTATED, HIDDEN = 0.0, 1.0, 2.0
GROW_SHARE = 0.10   # the region is grown by 10% of its side before it is hidden, as the shortcut check grows it


def blur_fill(img: Image.Image, hole: np.ndarray) -> Image.Image:
    """`img` with the bool `hole` filled by a normalised Gaussian blur of the pixels around it.

    The blur runs at about the model's resolution (`factor` x smaller) and, when that grid divides the image by a
    power of two, only on the cells within its reach of the hole: the pixels of blurring the whole grid, but for a
    float sum in another order (one grey level on 2 of 31 million values, tests/test_grounding.py)."""
    from hub.explain.imputation import blur

    arr = np.array(img, dtype=np.uint8)
    x = torch.from_numpy(arr.astype(np.float32) / 255.0).permute(2, 0, 1)[None]
    keep = torch.from_numpy(~hole).float()[None, None]
    factor = max(1, min(x.shape[-2:]) // 128)              # blur at about the model's resolution: cheap
    small_x, small_keep = F.avg_pool2d(x * keep, factor), F.avg_pool2d(keep, factor)
    sigma = max(2.0, 0.5 * math.sqrt(float(hole.sum())) / factor)
    h, w = hole.shape
    ys, xs = np.nonzero(hole)
    if not len(ys):
        return Image.fromarray(arr)
    cells = _hole_cells(ys, xs, factor, sigma, small_x.shape[-2:]) if _exact_grid(h, w, factor) else None
    if cells is None:                                      # the whole grid
        filled = blur(small_x, sigma) / blur(small_keep, sigma).clamp_min(1e-4)
        filled = F.interpolate(filled, size=(h, w), mode="bilinear", align_corners=False)
        top, left = 0, 0
    else:
        (r0, r1, c0, c1), (i0, i1, j0, j1) = cells         # the blur's window, then the hole's cells +- 1 in it
        part = blur(small_x[..., r0:r1, c0:c1], sigma) / blur(small_keep[..., r0:r1, c0:c1], sigma).clamp_min(1e-4)
        part = part[..., i0 - r0:i1 - r0, j0 - c0:j1 - c0]
        filled = F.interpolate(part, size=((i1 - i0) * factor, (j1 - j0) * factor), mode="bilinear",
                               align_corners=False)
        top, left = i0 * factor, j0 * factor
    values = filled[0, :, ys - top, xs - left].clamp(0, 1).T.numpy()      # (n, 3) at the hole's pixels
    arr[ys, xs] = (values * 255 + 0.5).astype(np.uint8)
    return Image.fromarray(arr)


def _exact_grid(h: int, w: int, factor: int) -> bool:
    """True when the blur grid tiles the image exactly and `factor` is a power of two: upsampling a window of the
    grid then samples the very positions that upsampling the whole grid samples."""
    return h % factor == 0 and w % factor == 0 and factor & (factor - 1) == 0


def _hole_cells(ys: np.ndarray, xs: np.ndarray, factor: int, sigma: float, grid: tuple[int, int]):
    """((r0, r1, c0, c1), (i0, i1, j0, j1)): the grid cells the blur must see, and the hole's cells grown by one (what
    bilinear upsampling of the hole's pixels reads); None when the window would not be smaller than the grid or
    would change blur()'s kernel reach."""
    gh, gw = grid
    radius = max(1, min(int(3 * sigma), min(gh, gw) - 1))  # as hub.explain.imputation.blur reaches on the grid
    i0, i1 = max(0, ys.min() // factor - 1), min(gh, ys.max() // factor + 2)
    j0, j1 = max(0, xs.min() // factor - 1), min(gw, xs.max() // factor + 2)
    r0, r1 = max(0, i0 - radius - 1), min(gh, i1 + radius + 1)
    c0, c1 = max(0, j0 - radius - 1), min(gw, j1 + radius + 1)
    if (r1 - r0) * (c1 - c0) >= gh * gw or min(r1 - r0, c1 - c0) - 1 < radius:
        return None
    return (int(r0), int(r1), int(c0), int(c1)), (int(i0), int(i1), int(j0), int(j1))


class GroundedDataset(Dataset):
    """(image tensor, label, region mask at the input size, PLAIN / ANNOTATED / HIDDEN)."""

    def __init__(self, split: Split, annotations: Annotations, transform: Callable, counterfactual: float = 0.0,
                 context_swap: float = 0.0):
        self.split, self.annotations, self.transform = split, annotations, transform
        self.counterfactual, self.context_swap = counterfactual, context_swap
        # the images whose context can be borrowed: annotated ones, so that their own lesion can be hidden
        self.donors = [i for i, p in enumerate(split.paths) if annotations.get(p) is not None]

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, index: int):
        from torchvision import tv_tensors

        for offset in range(len(self.split)):  # as train.data.ImageDataset: a file that broke is replaced
            i = (index + offset) % len(self.split)
            path = self.split.paths[i]
            try:
                img = load_image(path)
            except ImageError as exc:
                import warnings

                warnings.warn(f"skipping image that became unreadable during training: {exc}", stacklevel=2)
                continue
            region = self.annotations.get(path)
            size = (img.height, img.width)
            mask = region.mask(size) if region is not None else np.zeros(size, bool)
            kind = PLAIN if region is None else ANNOTATED
            # torch's generator: reseeded per epoch (train.engine.seed_epoch), so a resumed run replays it
            draw = float(torch.rand(())) if region is not None and (self.counterfactual or self.context_swap) else 1.0
            if draw < self.counterfactual:
                img = blur_fill(img, region.mask(size, grow=grown(mask)))
                mask, kind = np.zeros(size, bool), HIDDEN
            elif draw < self.counterfactual + self.context_swap:
                context = self.borrowed_context(i, size)
                if context is not None:
                    img = paste_region(img, context, region.mask(size, grow=grown(mask)), grown(mask) / 2)
            x, m = self.transform(img, tv_tensors.Mask(torch.from_numpy(mask)))
            return x, self.split.labels[i], m.to(torch.float32), kind
        raise DataError("every image of the split became unreadable during training")

    def borrowed_context(self, index: int, size: tuple[int, int]) -> Image.Image | None:
        """Another annotated training image, drawn uniformly, at `size` with its own region blur-filled; None when
        there is no other one or it cannot be read (the sample is then shown as it is)."""
        others = [d for d in self.donors if d != index]
        if not others:
            return None
        donor = others[int(torch.randint(len(others), ()))]
        path = self.split.paths[donor]
        try:
            img = load_image(path)
        except ImageError:
            return None
        if (img.height, img.width) != size:
            img = img.resize((size[1], size[0]), Image.Resampling.BILINEAR)
        region = self.annotations.get(path)
        return blur_fill(img, region.mask(size, grow=grown(region.mask(size))))


def grown(mask: np.ndarray) -> float:
    """Pixels a region is grown by before it is hidden or moved: 10% of the side of a square of its area."""
    return max(1.0, GROW_SHARE * math.sqrt(float(mask.sum())))


def paste_region(img: Image.Image, context: Image.Image, keep: np.ndarray, feather: float) -> Image.Image:
    """`img`'s pixels on the bool `keep` (its region, grown) over `context` of the same size; the seam fades outward
    over about 2 * `feather` pixels, so that no hard edge outlines the region. Inside `keep` the pixels are `img`'s.

    Only the window around `keep` where the seam can reach is computed; beyond it the weight of `img` is exactly 0, so
    the result there is `context` itself. Why: blurring and blending the whole 512 x 512 slice was the dearest step
    of a context-swapped training sample (31 ms of 47 ms on a training machine's busy core, 2026-12-07); the window
    gives the same pixels (tests/test_grounding.py) in a fraction of the time."""
    from hub.explain.imputation import blur

    sigma = max(1.0, feather)
    radius = int(3 * sigma)                                   # blur()'s kernel reach, unless the image is smaller
    ys, xs = np.nonzero(keep)
    h, w = keep.shape
    rows, cols = slice(0, h), slice(0, w)
    if len(ys) and min(h, w) - 1 > radius:
        # 2 * radius of zeros around the region: blur()'s reflected border then mirrors zeros, as the slice has there
        rows = slice(max(0, ys.min() - 2 * radius), min(h, ys.max() + 2 * radius + 1))
        cols = slice(max(0, xs.min() - 2 * radius), min(w, xs.max() + 2 * radius + 1))
        if min(rows.stop - rows.start, cols.stop - cols.start) - 1 <= radius:
            rows, cols = slice(0, h), slice(0, w)
    part = keep[rows, cols]
    soft = blur(torch.from_numpy(part).float()[None, None], sigma)[0, 0].numpy()
    alpha = np.maximum(np.clip(2 * soft, 0, 1), part)[..., None]   # 1 on keep (its edge included), then a ramp
    out = np.array(context, dtype=np.uint8)
    mixed = alpha * np.asarray(img)[rows, cols].astype(np.float32) + (1 - alpha) * out[rows, cols].astype(np.float32)
    out[rows, cols] = (mixed + 0.5).clip(0, 255).astype(np.uint8)
    return Image.fromarray(out)


def cell_logits(features: torch.Tensor, head: nn.Linear) -> torch.Tensor:
    """B x K x h x w logits of each cell of the last stage: the head applied before pooling (fp32)."""
    return torch.einsum("bchw,kc->bkhw", features.float(), head.weight.float()) + head.bias.float()[None, :, None, None]


def no_class_loss(logits: torch.Tensor) -> torch.Tensor:
    """Per row, KL(uniform || softmax(logits)): 0 when the model names no class."""
    return -logits.float().log_softmax(dim=1).mean(dim=1) - math.log(logits.shape[1])


def grounding_loss(cells: torch.Tensor, labels: torch.Tensor, masks: torch.Tensor,
                   annotated: torch.Tensor) -> torch.Tensor:
    """Mean over annotated images of inside + outside (module docstring); 0 when none is annotated."""
    annotated = annotated == ANNOTATED
    if not bool(annotated.any()):
        return cells.new_zeros(())
    cells, labels, masks = cells[annotated], labels[annotated], masks[annotated]
    b, k, h, w = cells.shape
    coverage = F.adaptive_avg_pool2d(masks[:, None].float(), (h, w)).flatten(1)     # B x hw, in [0, 1]
    target = coverage / coverage.amax(dim=1, keepdim=True).clamp_min(EPS)
    true = cells[torch.arange(b), labels].flatten(1)                               # B x hw
    inside = -torch.log((true.softmax(dim=1) * target).sum(dim=1) + EPS)
    off = (coverage <= 0).float()                                                  # cells the region misses
    neutral = -(cells.flatten(2).log_softmax(dim=1).mean(dim=1)) - math.log(k)     # KL(uniform || cell), B x hw
    outside = (neutral * off).sum(dim=1) / off.sum(dim=1).clamp_min(1.0)
    return (inside + outside).mean()


@contextmanager
def capture_features(net: nn.Module):
    """Yield a list that receives the last stage's output on each forward (the head's input).

    A forward hook rather than calling forward_features: DistributedDataParallel must see the call of
    the wrapped module to synchronise gradients. Training runs one forward at a time, so one hook is safe.
    """
    store: list[torch.Tensor] = []
    layer = net.get_submodule(net.feature_info[-1]["module"])
    handle = layer.register_forward_hook(lambda module, inputs, output: store.append(output))
    try:
        yield store
    finally:
        handle.remove()


def annotated_share(annotations: Annotations, split: Split) -> tuple[int, int]:
    """(annotated, total) images of a split."""
    return sum(annotations.get(p) is not None for p in split.paths), len(split)

