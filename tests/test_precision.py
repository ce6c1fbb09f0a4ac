"""A precision setting -> Lightning's precision, the autocast dtype and the context."""

from __future__ import annotations

import pytest
import torch

from hintcolor import precision
from hintcolor.precision import autocast, autocast_dtype, resolve_precision


@pytest.mark.parametrize(
    ("setting", "dtype"),
    [
        ("bf16-mixed", torch.bfloat16),
        ("bf16-true", torch.bfloat16),
        ("16-mixed", torch.float16),
        (16, torch.float16),
        ("32-true", None),
        (32, None),
        ("64-true", None),
    ],
)
def test_autocast_dtype_of_lightnings_settings(setting, dtype) -> None:
    assert autocast_dtype(setting) == dtype


def test_auto_is_the_fastest_safe_precision_of_the_device(monkeypatch) -> None:
    asked = []

    def fast(accelerator: str) -> str:
        asked.append(accelerator)
        return "bf16-mixed"

    monkeypatch.setattr(precision, "fast_precision", fast)
    assert resolve_precision("auto", "cpu") == "bf16-mixed"
    assert resolve_precision("auto") == "bf16-mixed" and asked == ["cpu", "auto"]
    assert resolve_precision("32-true", "cuda") == "32-true" and len(asked) == 2  # as set


def test_autocast_runs_a_layer_in_the_resolved_dtype(monkeypatch) -> None:
    layer, x = torch.nn.Linear(4, 3), torch.randn(2, 4)
    with autocast("bf16-mixed", "cpu"):
        assert layer(x).dtype == torch.bfloat16
    with autocast("32-true", torch.device("cpu")):
        assert layer(x).dtype == torch.float32
    monkeypatch.setattr(precision, "fast_precision", lambda accelerator: "bf16-mixed")
    with autocast("auto", "cpu"):
        assert layer(x).dtype == torch.bfloat16
    monkeypatch.setattr(precision, "fast_precision", lambda accelerator: "32-true")
    with autocast("auto", "cpu"):
        assert layer(x).dtype == torch.float32


def test_the_colorizer_runs_at_its_precision_setting(monkeypatch) -> None:
    from hintcolor.inference import Colorizer

    network = torch.nn.Conv2d(4, 2, 1)
    monkeypatch.setattr(precision, "fast_precision", lambda accelerator: "bf16-mixed")
    fast = Colorizer(network, precision="auto")
    assert fast.bf16 and fast.precision == "bf16-mixed"
    with fast.autocast():
        assert network(torch.randn(1, 4, 3, 3)).dtype == torch.bfloat16
    exact = Colorizer(network, precision="32-true")
    assert not exact.bf16
    with exact.autocast():
        assert network(torch.randn(1, 4, 3, 3)).dtype == torch.float32
    with pytest.raises(ValueError, match="16-mixed"):
        Colorizer(network, precision="16-mixed")
