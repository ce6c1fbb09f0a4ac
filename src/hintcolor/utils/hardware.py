"""What the machine can do fast."""

from __future__ import annotations

import functools
import platform
from pathlib import Path

import torch


@functools.lru_cache
def cpu_has_native_bf16() -> bool:
    """True on x86 CPUs with AVX512-BF16 or AMX, where bf16 matmuls run about 2x fp32."""
    if platform.system() != "Linux" or platform.machine() not in ("x86_64", "AMD64"):
        return False
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def fast_precision(accelerator: str = "auto") -> str:
    """Lightning's ``precision`` for ``precision: auto``: the fastest safe one here.

    bf16-mixed keeps fp32 weights and fp32 range, so unlike fp16 it needs no loss scaling.
    """
    use_gpu = accelerator in ("auto", "gpu", "cuda") and torch.cuda.is_available()
    if use_gpu:
        return "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"
    return "bf16-mixed" if cpu_has_native_bf16() else "32-true"
