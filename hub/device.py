"""Where a model runs and in which precision: the one home of the device and autocast rules.

`pick_device("auto")` prefers CUDA, then Apple MPS, then the CPU. `autocast_dtype` is bf16 on GPUs
that support it (Ampere and newer), else fp16; on the CPU it is bf16 only where the CPU runs bf16
natively (AVX512-BF16 / AMX), because elsewhere CPU autocast emulates bf16 and is slower than fp32.
"""
from __future__ import annotations

import contextlib

import torch

from hub.errors import DeviceError


def pick_device(device: str | torch.device | None = "auto") -> torch.device:
    """'auto' (or None) picks CUDA, then Apple MPS, then CPU; a named device must exist here (DeviceError)."""
    if device is None or str(device) == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        chosen = torch.device(device)
    except (RuntimeError, TypeError):
        raise DeviceError(f"--device {device}: not a device; use auto, cpu, cuda, cuda:N or mps") from None
    if chosen.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise DeviceError(f"--device {device}: no CUDA GPU is available here; use --device auto or cpu")
        if chosen.index is not None and chosen.index >= count:
            raise DeviceError(f"--device {device}: this machine has {count} CUDA GPU(s), cuda:0 to cuda:{count - 1}")
    elif chosen.type == "mps" and not mps_available():
        raise DeviceError(f"--device {device}: Apple MPS is not available here; use --device auto or cpu")
    elif chosen.type not in ("cpu", "cuda", "mps"):
        raise DeviceError(f"--device {device}: not supported; use auto, cpu, cuda, cuda:N or mps")
    return chosen


def mps_available() -> bool:
    """Whether Apple's Metal backend can run here."""
    return bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())


def cpu_supports_bf16() -> bool:
    """Whether this CPU runs bf16 convolutions natively (AVX512-BF16 / AMX), i.e. faster than fp32."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def autocast_dtype(device: torch.device | str) -> torch.dtype | None:
    """The reduced precision worth using on `device`: bf16 or fp16 on CUDA, bf16 on bf16-native CPUs, else None."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device.type == "cpu" and cpu_supports_bf16():
        return torch.bfloat16
    return None


def autocast(device: torch.device | str, dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    """torch.autocast on `device` in `dtype`; a no-op for None (full precision)."""
    device = torch.device(device)
    return torch.autocast(device.type, dtype=dtype) if dtype is not None else contextlib.nullcontext()


def needs_grad_scaler(device: torch.device | str, dtype: torch.dtype | None) -> bool:
    """fp16 gradients underflow without loss scaling; bf16 has fp32's range and needs none."""
    return torch.device(device).type == "cuda" and dtype == torch.float16
