"""What keeps the page fast: the fast preview (the network at the interactive size), the last
prediction reused, and heavy work's threads only on free cores."""

from __future__ import annotations

import subprocess
import sys
import time

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import KODAK
from PIL import Image
from torch import nn

from hintcolor.app.cores import CpuWatch
from hintcolor.inference import Colorizer
from hintcolor.models.backbones import ResUNet
from hintcolor.models.hint_prior import PushPullResidual
from hintcolor.user_hints import parse_hints


def tiny_network() -> nn.Module:
    """A small random-init network with the guided prior (the page tests share it)."""
    torch.manual_seed(0)
    return PushPullResidual(
        ResUNet(in_channels=6, widths=(8, 16), bridge=16), initial_gain=1.0, edge_sweeps=2
    )


class Counting(nn.Module):
    def __init__(self, network: nn.Module) -> None:
        super().__init__()
        self.network, self.calls = network, []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls.append(tuple(x.shape))
        return self.network(x)


@pytest.fixture(scope="module")
def rgb() -> np.ndarray:
    return np.asarray(Image.open(sorted((KODAK / "val").glob("*.jpg"))[0]).convert("RGB"))


def test_a_fast_preview_runs_the_network_small_and_keeps_the_working_size(rgb) -> None:
    network = Counting(tiny_network())
    colorizer = Colorizer(network, working_size=128, interactive_size=64, precision="32-true")
    photo = colorizer.prepare(rgb)
    hints = parse_hints([{"x": 100, "y": 100, "color": "#d02020", "size": 24}])
    fast = colorizer.predict_ab(photo, hints, fast=True)
    assert network.calls == [(1, 4, 43, 64)] and fast.shape == (1, 2, 85, 128)
    # its colours are the small network's, upsampled; the hinted square keeps its colour
    small = network.network(colorizer.model_input(photo, hints, 64)[0])
    up = F.interpolate(small, size=(85, 128), mode="bilinear", align_corners=False)
    _, mask = colorizer.model_input(photo, hints)[1:]
    assert torch.allclose(fast[~mask.bool().expand_as(fast)], up[~mask.bool().expand_as(up)])
    assert colorizer.preview(photo, hints, fast=True).shape == (85, 128, 3)


def test_the_last_prediction_is_reused_for_the_same_hints_and_size(rgb) -> None:
    network = Counting(tiny_network())
    colorizer = Colorizer(network, working_size=96, interactive_size=48, precision="32-true")
    photo = colorizer.prepare(rgb)
    hints = parse_hints([{"x": 100, "y": 100, "color": "#d02020"}])
    first = colorizer.predict_ab(photo, hints)
    colorizer.suggest(photo, hints, 300, 200)  # the no-head suggestion reads the prediction
    same = parse_hints([{"x": 100, "y": 100, "color": "#d02020"}])  # equal, not the same list
    assert torch.equal(colorizer.predict_ab(photo, same), first)
    assert len(network.calls) == 1
    colorizer.predict_ab(photo, hints, fast=True)  # another size
    colorizer.predict_ab(photo, [])  # other hints
    assert len(network.calls) == 3


def test_jobs_use_every_core_only_while_no_other_process_needs_one() -> None:
    watch = CpuWatch(2, period=0.1)
    try:
        for others, threads in ((0.0, 2), (0.2, 2), (0.3, 1), (1.0, 1), (2.0, 1)):
            watch.others = others
            assert watch.threads() == threads, others
        spin = "import time\nt = time.time()\nwhile time.time() - t < 3: pass"
        busy = subprocess.Popen([sys.executable, "-c", spin])
        try:
            deadline, seen = time.time() + 2.5, 0.0
            while time.time() < deadline:  # another process keeps a core busy
                time.sleep(0.1)
                seen = max(seen, watch.others)
            assert seen > 0.6
        finally:
            busy.kill()
            busy.wait()
    finally:
        watch.stop()
