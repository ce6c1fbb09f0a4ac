"""The backbone contract (hintcolor.models.backbones' docstring), checked on every backbone of
conf/model/ at its quick size (hintcolor.models.registry), so the file stays fast on CPU."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from itertools import pairwise

import pytest
import torch
import torch.nn.functional as F
from hydra.utils import instantiate
from torch import nn

from hintcolor.models.backbones import SIGGRAPH17, ResUNet, UNet, ViT
from hintcolor.models.backbones.common import crop_to, pad_to_multiple
from hintcolor.models.registry import backbone_names, quick_backbone


def _distinct_quick_backbones() -> list[str]:
    """The backbones of conf/model/ that differ at their quick size (a size variant, such as
    resunet_large, is its base network there: tested once)."""
    seen: list[dict] = []
    names = []
    for name in backbone_names():
        if quick_backbone(name) not in seen:
            seen.append(quick_backbone(name))
            names.append(name)
    return names


BACKBONES = _distinct_quick_backbones()
SMALL_MODELS: dict[str, Callable[[], nn.Module]] = {
    **{name: partial(instantiate, quick_backbone(name)) for name in BACKBONES},
    # constructor options that no conf/model/ YAML uses
    "siggraph17_cls": lambda: SIGGRAPH17(width_mult=0.125, classification_head=True),
    "unet_bilinear": lambda: UNet(depth=3, base_width=8, bilinear=True),
    "vit_patch8_clipped_bias": lambda: ViT(patch=8, dim=32, depth=2, heads=2, max_relative=3),
}
SIZES = [(1, 1), (17, 23), (33, 65), (64, 64), (31, 8)]


@pytest.fixture(params=list(SMALL_MODELS), ids=list(SMALL_MODELS))
def model(request: pytest.FixtureRequest) -> nn.Module:
    torch.manual_seed(0)
    return SMALL_MODELS[request.param]()


def _n_params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def _input(h: int = 24, w: int = 20, b: int = 2) -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    x = torch.rand(b, 4, h, w, generator=g) * 2 - 1
    x[:, 3] = (x[:, 3] > 0.8).float()  # binary hint mask
    x[:, 1:3] *= x[:, 3:4]  # hints only where the mask is set
    return x


def _first_conv(m: nn.Module) -> nn.Conv2d:
    return next(mod for mod in m.modules() if isinstance(mod, nn.Conv2d))


def test_pad_and_crop_roundtrip() -> None:
    x = torch.randn(2, 3, 5, 9)
    padded, size = pad_to_multiple(x, 8)
    assert padded.shape == (2, 3, 8, 16)
    assert size == (5, 9)
    assert torch.equal(crop_to(padded, size), x)
    assert torch.equal(padded[:, :, 7, :9], x[:, :, 4, :])  # replicate, not zeros
    one, _ = pad_to_multiple(torch.randn(1, 1, 1, 1), 16)  # reflect would fail here
    assert one.shape == (1, 1, 16, 16)
    same, _ = pad_to_multiple(x, 1)
    assert same is x


@pytest.mark.parametrize("name", BACKBONES)
def test_takes_in_channels_and_sets_a_stride(name: str) -> None:
    """What a hint prior needs: more input channels; what the config check needs: ``stride``."""
    model = instantiate(quick_backbone(name), in_channels=6).eval()
    assert isinstance(model.stride, int) and model.stride >= 1
    x = torch.cat([_input(19, 21), torch.rand(2, 2, 19, 21) - 0.5], dim=1)
    with torch.no_grad():
        assert model(x).shape == (2, 2, 19, 21)


def test_stride_attribute() -> None:
    assert ResUNet(widths=(8, 16, 32), bridge=64).stride == 8
    assert ResUNet(widths=(8, 16, 32, 64), bridge=64).stride == 16
    assert SIGGRAPH17(width_mult=0.125).stride == 8
    assert UNet(depth=3, base_width=8).stride == 8
    assert ViT(patch=16, dim=32, depth=1, heads=2).stride == 16


@pytest.mark.parametrize("size", SIZES, ids=[f"{h}x{w}" for h, w in SIZES])
def test_output_shape_and_range(model: nn.Module, size: tuple[int, int]) -> None:
    h, w = size
    model.eval()
    with torch.no_grad():
        y = model(_input(h, w))
    assert y.shape == (2, 2, h, w)
    assert y.dtype == torch.float32
    assert torch.isfinite(y).all()
    assert y.abs().max() < 1


def test_channels_last_matches_contiguous(model: nn.Module) -> None:
    model.eval()
    x = _input(33, 27)
    with torch.no_grad():
        ref = model(x)
        out = model(x.to(memory_format=torch.channels_last))
        model.to(memory_format=torch.channels_last)
        out_cl_model = model(x.to(memory_format=torch.channels_last))
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(out_cl_model, ref, rtol=1e-4, atol=1e-5)


def test_bf16_autocast_close_to_fp32(model: nn.Module) -> None:
    model.eval()
    x = _input(32, 40)
    with torch.no_grad():
        ref = model(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = model(x)
    assert out.shape == ref.shape
    assert torch.isfinite(out).all()
    err = (out.float() - ref).abs()
    assert err.max() < 0.1
    assert err.mean() < 0.02


def test_gradient_reaches_first_layer(model: nn.Module) -> None:
    model.train()
    y = model(_input(19, 21))
    y.square().mean().backward()
    grad = _first_conv(model).weight.grad
    assert grad is not None
    assert torch.isfinite(grad).all()
    assert grad.abs().sum() > 0


@pytest.mark.parametrize("channel", [1, 2, 3], ids=["hint_a", "hint_b", "mask"])
def test_hint_channels_change_output(model: nn.Module, channel: int) -> None:
    model.eval()
    x = _input(24, 24)
    x2 = x.clone()
    x2[:, channel, 8:16, 8:16] = 0.7 if channel < 3 else 1.0 - x2[:, 3, 8:16, 8:16]
    with torch.no_grad():
        diff = (model(x) - model(x2)).abs()
    assert diff.max() > 1e-6


def test_siggraph17_classification_logits() -> None:
    torch.manual_seed(0)
    m = SIGGRAPH17(width_mult=0.125, classification_head=True).eval()
    x = _input(17, 23)
    with torch.no_grad():
        ab, logits = m.forward_with_logits(x)
        ab_plain = m(x)
    assert logits is not None
    assert logits.shape == (2, 529, 5, 6)  # ceil(17/4), ceil(23/4)
    torch.testing.assert_close(ab, ab_plain)
    _, none_logits = SIGGRAPH17(width_mult=0.125).forward_with_logits(x)
    assert none_logits is None


def _unet_param_count(cin: int, cout: int, depth: int, base: int) -> int:
    """Closed form for UNet(bilinear=False): bias-free convs + BN (2 params/channel)."""

    def double(a: int, b: int) -> int:
        return 9 * a * b + 9 * b * b + 4 * b

    widths = [base * 2**i for i in range(depth + 1)]
    n = double(cin, widths[0])
    n += sum(double(a, b) for a, b in pairwise(widths))
    for a, b in zip(widths[:0:-1], widths[-2::-1], strict=True):
        n += 4 * a * b + b  # ConvTranspose2d(a, b, 2, 2) with bias
        n += double(2 * b, b)
    return n + widths[0] * cout + cout


def test_default_parameter_counts() -> None:
    resunet = _n_params(ResUNet())
    siggraph = _n_params(SIGGRAPH17())
    siggraph_cls = _n_params(SIGGRAPH17(classification_head=True))
    unet = _n_params(UNet())
    assert 7_000_000 <= resunet <= 9_500_000, resunet
    assert 30_000_000 <= siggraph <= 36_000_000, siggraph
    assert siggraph_cls - siggraph == 256 * 529 + 529  # 1x1 conv 256 -> 529 bins with bias
    assert unet == _unet_param_count(4, 2, depth=4, base=64)
    assert 30_000_000 <= unet <= 32_000_000, unet


# The forward passes as they were written before the backbones were split into
# forward_features / forward_output: the split must give exactly the same bits, so every
# trained checkpoint predicts what it did.
def _resunet_before_split(m: ResUNet, x: torch.Tensor) -> torch.Tensor:
    x, size = pad_to_multiple(x, m.stride)
    skips = [m.stem(x)]
    for unit in m.encoder:
        skips.append(unit(skips[-1]))
    x = m.bridge(skips[-1])
    for unit, skip in zip(m.decoder, reversed(skips), strict=True):
        x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
        x = unit(torch.cat([x, skip], dim=1))
    return crop_to(torch.tanh(m.head(x)), size)


def _unet_before_split(m: UNet, x: torch.Tensor) -> torch.Tensor:
    x, size = pad_to_multiple(x, m.stride)
    skips = [m.stem(x)]
    for block in m.down:
        skips.append(block(m.pool(skips[-1])))
    x = skips.pop()
    for block in m.up:
        x = block(x, skips.pop())
    return crop_to(torch.tanh(m.head(x)), size)


def _siggraph17_before_split(m: SIGGRAPH17, x: torch.Tensor) -> torch.Tensor:
    x, (h, w) = pad_to_multiple(x, m.stride)
    conv1 = m.conv1(x)
    conv2 = m.conv2(conv1[:, :, ::2, ::2])
    conv3 = m.conv3(conv2[:, :, ::2, ::2])
    x = m.conv4(conv3[:, :, ::2, ::2])
    x = m.conv7(m.conv6(m.conv5(x)))
    conv8 = m.conv8(m.conv8_up(x) + m.conv3_short8(conv3))
    x = m.conv9(m.conv9_up(conv8) + m.conv2_short9(conv2))
    x = m.conv10(m.conv10_up(x) + m.conv1_short10(conv1))
    return crop_to(m.head(x).tanh(), (h, w))


def _vit_before_split(m: ViT, x: torch.Tensor) -> torch.Tensor:
    x, size = pad_to_multiple(x, m.patch)
    b = x.shape[0]
    tokens, grid = m.patch_embed(x)
    for block in m.blocks:
        tokens = block(tokens, grid)
    out = m.head(m.norm(tokens))
    gh, gw = grid
    out = out.transpose(1, 2).reshape(b, m.out_channels * m.patch**2, gh, gw)
    return crop_to(torch.tanh(F.pixel_shuffle(out, m.patch)), size)


BEFORE_SPLIT = {
    ResUNet: _resunet_before_split,
    UNet: _unet_before_split,
    SIGGRAPH17: _siggraph17_before_split,
    ViT: _vit_before_split,
}


def before_split(m: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The pre-split forward of any backbone here (also used by the shipped-model test)."""
    for cls, forward in BEFORE_SPLIT.items():
        if isinstance(m, cls):
            return forward(m, x)
    raise TypeError(type(m))


@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
def test_forward_is_bit_identical_to_the_code_before_the_split(
    model: nn.Module, layout: torch.memory_format
) -> None:
    if not isinstance(model, tuple(BEFORE_SPLIT)):
        pytest.skip("a backbone written after the split: no earlier forward to match")
    model.eval().to(memory_format=layout)
    x = _input(37, 29).contiguous(memory_format=layout)
    with torch.no_grad():
        assert torch.equal(model(x), before_split(model, x))
        out, features = model.forward_with_features(x)
        assert torch.equal(out, before_split(model, x))
        assert torch.equal(features, model.forward_features(x))


@pytest.mark.parametrize("size", [(37, 29), (8, 8)])
def test_forward_features_shape(model: nn.Module, size: tuple[int, int]) -> None:
    h, w = size
    with torch.no_grad():
        features = model.eval().forward_features(_input(h, w))
    padded = [-(-n // model.stride) * model.stride for n in size]
    expected = (2, model.feature_channels, *(n // model.feature_stride for n in padded))
    assert features.shape == expected
    assert model.feature_channels > 2  # a feature map, not the 2-channel output
