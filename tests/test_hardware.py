"""What the machine can do, and the guard against oneDNN's strided 1x1 bug."""

from __future__ import annotations

import os
import platform
import signal
import subprocess
import sys
import textwrap

import pytest
import torch
from torch import nn

from hintcolor.models.backbones import ResUNet
from hintcolor.utils import hardware
from hintcolor.utils.hardware import avoid_onednn_strided_1x1_bug

# Without the guard, on torch 2.13.0+cpu, this crashes (1 thread) or spins forever (2 threads)
# in oneDNN's jit_avx2_1x1_convolution_bwd_weights (AVX2 kernels, from 32 px) or its AVX-512
# fp32 and bf16 counterparts (from 64 px).
FORMERLY_HANGING = textwrap.dedent(
    """
    import sys
    import torch
    from hintcolor.utils.hardware import avoid_onednn_strided_1x1_bug

    size, bf16 = int(sys.argv[1]), sys.argv[2] == "bf16"
    conv = torch.nn.Conv2d(4, 8, 1, stride=2, bias=False).to(memory_format=torch.channels_last)
    assert avoid_onednn_strided_1x1_bug(conv) == 1
    x = torch.randn(8, 4, size, size).contiguous(memory_format=torch.channels_last)
    for _ in range(10):
        conv.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            y = conv(x)
        y.float().square().sum().backward()
    if not bf16:
        y = torch.einsum("nchw,oc->nohw", x[:, :, ::2, ::2], conv.weight[:, :, 0, 0].detach())
        expected = torch.einsum("nohw,nchw->oc", 2 * y, x[:, :, ::2, ::2])
        torch.testing.assert_close(conv.weight.grad[:, :, 0, 0], expected, rtol=1e-4, atol=1e-3)
    print("finished", torch.backends.cpu.get_cpu_capability())
    """
)
AVX2 = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2"}


@pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64"), reason="x86 kernels")
@pytest.mark.parametrize(
    ("kernels", "size", "precision"),
    [("avx2", 32, "fp32"), ("native", 128, "fp32"), ("native", 128, "bf16")],
)
def test_formerly_hanging_convolution_finishes(kernels: str, size: int, precision: str) -> None:
    env = {**os.environ, **(AVX2 if kernels == "avx2" else {})}
    env["OMP_NUM_THREADS"] = "2"  # the hang needs a thread team (1 thread: a crash)
    # own session: on a hang the whole process group is killed, no orphan spins on
    proc = subprocess.Popen(
        [sys.executable, "-c", FORMERLY_HANGING, str(size), precision],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        out, _ = proc.communicate(timeout=120)  # takes seconds; the bound only detects a hang
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        pytest.fail(f"the 1x1 stride-2 convolution's backward hung ({kernels} kernels)")
    assert proc.returncode == 0, out
    assert "finished" in out


def test_guard_changes_only_the_affected_convolutions(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hardware.platform, "machine", lambda: "x86_64")
    model = ResUNet(6, 2, widths=[4, 8, 16], bridge=16).to(memory_format=torch.channels_last)
    reference = ResUNet(6, 2, widths=[4, 8, 16], bridge=16).to(memory_format=torch.channels_last)
    reference.load_state_dict(model.state_dict())
    # only the 4 -> 8 and 8 -> 16 stride-2 shortcuts: the 16 -> 16 bridge has enough channels
    assert avoid_onednn_strided_1x1_bug(model) == 2
    assert avoid_onednn_strided_1x1_bug(model) == 0  # idempotent
    shortcut = model.encoder[0].shortcut[0]
    assert type(shortcut) is not nn.Conv2d and shortcut.stride == (2, 2)
    assert type(model.bridge.shortcut[0]) is nn.Conv2d
    assert shortcut.extra_repr() == reference.encoder[0].shortcut[0].extra_repr()
    x = torch.randn(2, 6, 19, 23)
    for layout in (torch.channels_last, torch.contiguous_format):
        xl = x.contiguous(memory_format=layout)
        torch.testing.assert_close(model(xl), reference(xl))


def test_guard_is_a_no_op_off_x86(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hardware.platform, "machine", lambda: "aarch64")
    conv = nn.Conv2d(4, 8, 1, stride=2)
    assert avoid_onednn_strided_1x1_bug(conv) == 0
    assert type(conv) is nn.Conv2d


@pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64"), reason="x86 kernels")
@pytest.mark.parametrize("isa", ["AVX2", "avx2_vnni", "AVX", "SSE41"])
def test_onednn_isa_below_avx512_is_honoured(monkeypatch: pytest.MonkeyPatch, isa: str) -> None:
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", isa)
    assert hardware.onednn_below_avx512()
