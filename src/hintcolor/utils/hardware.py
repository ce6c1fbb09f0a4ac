"""What the machine can do fast."""

from __future__ import annotations

import functools
import os
import platform
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def onednn_below_avx512() -> bool:
    """True on x86 where oneDNN runs its AVX2 (or older) kernels, not its AVX-512 ones.

    That is a CPU without AVX-512, or one made to act like it: ``ATEN_CPU_CAPABILITY=avx2``
    (torch's own kernels) or ``ONEDNN_MAX_CPU_ISA=AVX2`` (oneDNN's), how such a CPU is emulated.
    """
    if platform.machine() not in ("x86_64", "AMD64"):
        return False
    isa = os.environ.get("ONEDNN_MAX_CPU_ISA", os.environ.get("DNNL_MAX_CPU_ISA", "ALL")).upper()
    if isa in ("SSE41", "AVX") or isa.startswith("AVX2"):
        return True
    return torch.backends.cpu.get_cpu_capability() not in ("AVX512", "AMX")


@functools.lru_cache
def cpu_has_native_bf16() -> bool:
    """True on x86 CPUs with AVX512-BF16 or AMX, where bf16 matmuls run about 2x fp32.

    The kernels torch may use count, not only the CPU's flags: ``ATEN_CPU_CAPABILITY=avx2``
    or ``ONEDNN_MAX_CPU_ISA=AVX2`` (how a machine without bf16 is emulated) means no bf16.
    """
    if platform.system() != "Linux" or platform.machine() not in ("x86_64", "AMD64"):
        return False
    if onednn_below_avx512():
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


class _SubsampledPointwiseConv2d(nn.Conv2d):
    """A strided 1x1 convolution computed on CPU as a stride-1 one on every stride-th pixel.

    The same function and parameters (and state dict); see :func:`avoid_onednn_strided_1x1_bug`.
    """

    def _conv_forward(self, input: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
        if input.device.type != "cpu":
            return super()._conv_forward(input, weight, bias)
        sh, sw = self.stride
        return F.conv2d(input[..., ::sh, ::sw], weight, bias, 1, 0, 1, self.groups)


def avoid_onednn_strided_1x1_bug(model: nn.Module) -> int:
    """Keep ``model`` clear of a oneDNN bug of x86 CPUs; returns the number of layers changed.

    oneDNN's 1x1 weight-gradient kernels (torch 2.13.0+cpu: ``jit_avx2_1x1``,
    ``jit_avx512_common_1x1`` and ``jit_avx512_core_bf16_1x1_convolution_bwd_weights``) corrupt
    memory for a 1x1 convolution with stride > 1 on a channels-last input of fewer channels than
    one vector register holds (8 floats with AVX2 kernels, 16 with AVX-512) and batch > 1,
    e.g. ResUNet's 4 -> 8 stride-2 shortcut with ``widths=[4, ...]``. The weight gradient comes
    out wrong, then the process crashes in ``free()`` or, with 2+ threads, spins forever in the
    kernel's thread barrier, deaf to SIGTERM (AVX2: from 32 px crops; AVX-512: from 64 px).
    Their "reduce to unit stride" copy of the strided input is the path at fault: a stride-1
    1x1 convolution of ``x[..., ::s, ::s]``, the same function, does not take it. Layers with
    16 or more input channels (every default backbone) are left as they are.
    """
    if platform.machine() not in ("x86_64", "AMD64"):
        return 0
    changed = 0
    for module in model.modules():
        if (
            type(module) is nn.Conv2d
            and module.kernel_size == (1, 1)
            and module.stride != (1, 1)
            and module.padding in ((0, 0), "valid")
            and module.in_channels < 16
        ):
            module.__class__ = _SubsampledPointwiseConv2d
            changed += 1
    return changed
