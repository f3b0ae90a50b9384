"""A classifier seen as two pieces around its target layer: trunk (input -> activations) and head.

CAM methods need the target layer's activations and, for Grad-CAM, gradients that stop there.
For timm models whose `forward_features` ends at the last feature stage (ResNet: `layer4`) we run
`forward_features` and `forward_head` separately: no hooks, so one model can be explained from
many threads at once, and the trunk never records an autograd graph.

Any other layer (or a model without that split) is reached with a forward hook. Hooks live on the
shared module, so that path holds a per-model lock for the whole explanation, only ever acts for
the thread that registered it, and is removed by a context manager even when the pass fails.
"""
from __future__ import annotations

import threading
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Optional, Union

import torch
from torch import nn

# One lock per model for the hook path; weak keys so a dropped model frees its lock.
_HOOK_LOCKS: weakref.WeakKeyDictionary[nn.Module, threading.RLock] = weakref.WeakKeyDictionary()
_HOOK_LOCKS_GUARD = threading.Lock()


def feature_layer_name(model: nn.Module) -> Optional[str]:
    """Name of the model's last feature stage from timm's `feature_info` (ResNet: 'layer4')."""
    info = getattr(model, "feature_info", None)
    if isinstance(info, (list, tuple)) and info and isinstance(info[-1], dict):
        return info[-1].get("module")
    return None


def _model_lock(model: nn.Module) -> threading.RLock:
    with _HOOK_LOCKS_GUARD:
        return _HOOK_LOCKS.setdefault(model, threading.RLock())


class ModelSplit:
    """Shared interface: `run(x, grad)` -> (activation grid BxCxhxw, logits, leaf for gradients)."""

    model: nn.Module
    layer: str

    @contextmanager
    def session(self) -> Iterator[ModelSplit]:
        """Hold whatever the split needs while one explanation runs (nothing by default)."""
        yield self

    def run(self, x: torch.Tensor, grad: bool = False):
        """One pass: activations as a grid, logits, and the tensor to differentiate against."""
        raise NotImplementedError

    def grid(self, t: torch.Tensor) -> torch.Tensor:
        """The raw target-layer tensor (or its gradient) as B x C x h x w: NCHW as is, NHWC
        (e.g. Swin) permuted when the width is known, tokens (ViT) reshaped to their square grid."""
        channels = getattr(self, "channels", None)
        if t.ndim == 4 and channels and t.shape[1] != channels and t.shape[-1] == channels:
            t = t.permute(0, 3, 1, 2)
        elif t.ndim == 3:
            prefix = int(getattr(self.model, "num_prefix_tokens", 0))
            tokens = t[:, prefix:]
            side = int(round(tokens.shape[1] ** 0.5))
            if side * side != tokens.shape[1]:
                raise ValueError(f"cannot arrange {tokens.shape[1]} tokens on a square grid; "
                                 "pass layer= with a convolutional layer")
            t = tokens.reshape(t.shape[0], side, side, -1).permute(0, 3, 1, 2)
        elif t.ndim != 4:
            raise ValueError(f"layer {self.layer!r} gives a {t.ndim}-d output, not a spatial map; "
                             "pass layer= with a convolutional layer")
        if min(t.shape[-2:]) < 2:
            raise ValueError(f"layer {self.layer!r} gives a {t.shape[-2]}x{t.shape[-1]} map at this model's input "
                             "size: too coarse to point anywhere; use a model trained at a larger --img-size "
                             "or pass layer= an earlier stage")
        return t


class FeatureSplit(ModelSplit):
    """timm's `forward_features` / `forward_head`: hook-free and thread-safe."""

    def __init__(self, model: nn.Module, layer: str, channels: int):
        self.model, self.layer, self.channels = model, layer, channels

    def run(self, x: torch.Tensor, grad: bool = False):
        """Trunk without autograd; with `grad`, the head runs on a leaf so backward stops here."""
        with torch.no_grad():
            raw = self.model.forward_features(x)
        if grad:
            raw = raw.detach().requires_grad_(True)
        with torch.set_grad_enabled(grad):
            logits = self.model.forward_head(raw)
        return self.grid(raw), logits, raw


class HookSplit(ModelSplit):
    """Any named submodule, reached with a forward hook under the model's lock."""

    def __init__(self, model: nn.Module, layer: str):
        self.model, self.layer = model, layer
        try:
            self.module = model.get_submodule(layer)
        except AttributeError:
            raise ValueError(f"{type(model).__name__} has no submodule {layer!r}") from None

    @contextmanager
    def session(self) -> Iterator[HookSplit]:
        """Serialise explanations of this model: hooks on a shared module are not thread-safe."""
        with _model_lock(self.model):
            yield self

    @contextmanager
    def hooked(self, grad: bool) -> Iterator[list]:
        """Register the capturing hook; always removed on exit, exception or not."""
        owner, captured = threading.get_ident(), []

        def hook(module, inputs, output):
            if threading.get_ident() != owner or captured:
                return None  # another thread's pass, or a second call of a reused module
            if not grad:
                captured.append(output)
                return None
            # Replace the output by a leaf and switch autograd on only from here: the backward
            # pass then ends at this layer and the trunk before it records nothing.
            leaf = output.detach().requires_grad_(True)
            torch.set_grad_enabled(True)
            captured.append(leaf)
            return leaf

        handle = self.module.register_forward_hook(hook)
        try:
            yield captured
        finally:
            handle.remove()

    def run(self, x: torch.Tensor, grad: bool = False):
        """A full forward with the hook in place; the hook catches the target layer's output."""
        with self.hooked(grad) as captured, torch.no_grad():
            logits = self.model(x)
        if not captured:
            raise RuntimeError(f"layer {self.layer!r} was not called in the model's forward pass")
        return self.grid(captured[0]), logits, captured[0]


def split_model(model: nn.Module, layer: Union[str, nn.Module, None] = None) -> ModelSplit:
    """The split for `model` at `layer` (default: the last feature stage)."""
    if isinstance(layer, nn.Module):
        names = [n for n, m in model.named_modules() if m is layer]
        if not names:
            raise ValueError("layer is not a submodule of the model")
        layer = names[0]
    default = feature_layer_name(model)
    channels = getattr(model, "num_features", None)
    info_channels = model.feature_info[-1].get("num_chs") if default else None
    has_split = hasattr(model, "forward_features") and hasattr(model, "forward_head")
    # forward_features ends at the last feature stage when their widths agree (ResNet, ConvNeXt,
    # ViT); EfficientNet adds a conv head after it, so its last stage needs the hook.
    if has_split and (layer is None or layer == default) and channels and channels == info_channels:
        return FeatureSplit(model, default, channels)
    layer = layer or default
    if not layer:
        raise ValueError(f"{type(model).__name__} has no feature_info to find its last feature "
                         "stage; pass layer= (the name of a convolutional submodule)")
    return HookSplit(model, layer)
