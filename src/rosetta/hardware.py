"""What this machine's hardware computes natively: read once, used by training (``precision = "auto"``) and
decoding (``for_inference``) alike. A leaf module: imports nothing from rosetta."""

from __future__ import annotations

import functools
from pathlib import Path

import torch


def cpu_flags_have_native_bf16(cpuinfo: str) -> bool:
    """True when ``cpuinfo`` (the text of /proc/cpuinfo) lists AVX-512 BF16 or AMX-BF16 among the CPU flags:
    the hardware that multiplies bf16 matrices natively. A pure function of the text, so testable anywhere."""
    flags = set()
    for line in cpuinfo.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() == "flags":
            flags.update(value.split())
    return bool(flags & {"avx512_bf16", "amx_bf16"})


@functools.cache
def cpu_has_native_bf16() -> bool:
    """True when this CPU multiplies bf16 matrices in hardware (AVX-512 BF16 or AMX). Without it, oneDNN
    emulates bf16 and autocast runs ~30x slower than fp32 (measured on an AVX2-only EPYC). Read once."""
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text()
    except OSError:  # not Linux: ask oneDNN (which also says yes for emulated bf16 on plain AVX-512)
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    return cpu_flags_have_native_bf16(cpuinfo)
