"""Device and numeric precision: which device ``auto`` means, and when ``precision = "auto"`` trains in bf16.

bf16 autocast pays only where the hardware multiplies bf16 natively: CUDA GPUs with bf16, and CPUs with
AVX-512 BF16 or AMX. Elsewhere oneDNN emulates it and it is far slower than fp32, so ``auto`` keeps fp32.
"""

from __future__ import annotations

import contextlib
import warnings

import torch

from rosetta.hardware import cpu_flags_have_native_bf16, cpu_has_native_bf16  # noqa: F401 (re-exported)

PRECISIONS = ("auto", "fp32", "bf16")


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def use_bf16(device: torch.device, precision: str) -> bool:
    """Whether ``precision`` means bf16 autocast on ``device``; ``auto`` picks bf16 where the hardware
    computes it natively (CUDA with bf16 support, CPUs with AVX-512 BF16 / AMX) and fp32 elsewhere."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if precision != "auto":
        if precision == "bf16" and device.type == "cpu" and not cpu_has_native_bf16():
            warnings.warn("precision bf16 on a CPU without AVX-512 BF16/AMX is emulated and much slower than "
                          "fp32; use precision = \"auto\" or \"fp32\"", stacklevel=2)
        return precision == "bf16"
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return device.type == "cpu" and cpu_has_native_bf16()


def autocast_for(device: torch.device, precision: str):
    """bf16 autocast if ``use_bf16(device, precision)``; float32 otherwise."""
    if not use_bf16(device, precision):
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
