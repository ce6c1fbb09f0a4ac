"""Tests for the push-pull hint prior and the residual wrapper around a backbone."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir

from hintcolor.baselines import idw_baseline
from hintcolor.build import build_backbone
from hintcolor.data.hints import FixedHints
from hintcolor.models.backbones import ResUNet
from hintcolor.models.hint_prior import (
    PushPullResidual,
    edge_guide,
    luminance_weights,
    push_pull,
)


def _hints(b: int = 2, h: int = 37, w: int = 53) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.zeros(b, 2, h, w), torch.zeros(b, 1, h, w)


def test_no_hints_give_zero_and_one_hint_colours_everything() -> None:
    ab, mask = _hints()
    ab[0, :, 5, 7] = torch.tensor([0.3, -0.2])
    mask[0, :, 5, 7] = 1
    filled = push_pull(ab, mask)
    assert torch.allclose(filled[0], torch.tensor([0.3, -0.2]).view(2, 1, 1).expand(2, 37, 53))
    assert filled[1].abs().max() == 0


def test_hinted_pixels_keep_their_colour_and_the_rest_lies_between() -> None:
    ab, mask = _hints(1, 40, 40)
    ab[0, :, 2, 2], mask[0, :, 2, 2] = torch.tensor([0.5, 0.1]), 1
    ab[0, :, 37, 37], mask[0, :, 37, 37] = torch.tensor([-0.5, -0.1]), 1
    filled = push_pull(ab, mask)
    assert torch.allclose(filled[0, :, 2, 2], torch.tensor([0.5, 0.1]))
    assert torch.allclose(filled[0, :, 37, 37], torch.tensor([-0.5, -0.1]))
    assert filled[0, 0].min() >= -0.5 - 1e-6 and filled[0, 0].max() <= 0.5 + 1e-6
    # the nearer hint dominates, and colour changes monotonically between them
    assert filled[0, 0, 5, 5] > filled[0, 0, 20, 20] > filled[0, 0, 34, 34]
    assert filled[0, 0, 5, 5] > 0.1 and filled[0, 0, 34, 34] < -0.1


def test_push_pull_is_as_close_to_the_truth_as_idw_on_smooth_colour() -> None:
    """On a smooth colour field, interpolating 50 hint patches recovers it about as well as IDW."""
    h = w = 64
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, h), torch.linspace(-1, 1, w), indexing="ij")
    ab = torch.stack([0.4 * torch.sin(2 * xx), 0.3 * torch.cos(3 * yy)]).unsqueeze(0)
    hints = FixedHints(k=50, patch_size=2, location="uniform", seed=0)(ab, torch.tensor([0]))
    err_pp = (push_pull(hints.ab, hints.mask) - ab).abs().mean()
    err_idw = (idw_baseline(hints, tuple(ab.shape)) - ab).abs().mean()
    err_zero = ab.abs().mean()
    assert err_pp < 0.25 * err_zero
    assert err_pp < 1.5 * err_idw


def test_residual_wrapper_starts_from_the_prior_and_is_built_from_config() -> None:
    torch.manual_seed(0)
    backbone = ResUNet(in_channels=6, widths=(4, 8), bridge=8)
    wrapper = PushPullResidual(backbone)
    for p in backbone.head.parameters():  # a backbone that predicts no correction
        torch.nn.init.zeros_(p)
    x = torch.zeros(1, 4, 20, 28)
    x[0, 1:3, 3, 4], x[0, 3, 3, 4] = torch.tensor([0.2, 0.4]), 1
    out = wrapper(x)
    assert out.shape == (1, 2, 20, 28)
    assert torch.allclose(out, push_pull(x[:, 1:3], x[:, 3:4]))
    assert wrapper.stride == backbone.stride

    conf = Path(__file__).resolve().parents[1] / "conf"
    with initialize_config_dir(config_dir=str(conf), version_base="1.3"):
        cfg = compose("train", overrides=["model=unet", "model.backbone.base_width=4"])
        plain = compose("train", overrides=["model=unet", "hint_prior=none"])
    built = build_backbone(cfg)
    assert isinstance(built, PushPullResidual)
    assert built.backbone.in_channels == 6
    assert not isinstance(build_backbone(plain), PushPullResidual)


@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
def test_wrapper_trains_under_bf16_autocast(layout: torch.memory_format) -> None:
    torch.manual_seed(0)
    wrapper = PushPullResidual(ResUNet(in_channels=6, widths=(4, 8), bridge=8))
    wrapper.to(memory_format=layout)
    x = torch.rand(2, 4, 32, 32).contiguous(memory_format=layout)
    x[:, 3] = (x[:, 3] > 0.9).float()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = wrapper(x)
    assert out.dtype == torch.float32
    out.square().mean().backward()
    assert wrapper.backbone.head.weight.grad is not None


def test_zero_gain_is_the_prior_exactly_and_old_checkpoints_load_with_gain_one() -> None:
    backbone = ResUNet(in_channels=6, widths=[8, 8, 16, 16, 16], bridge=16)
    model = PushPullResidual(backbone, initial_gain=0.0).eval()
    ab, mask = _hints(1, 64, 64)
    ab[0, :, 10, 20], mask[0, :, 10, 20] = torch.tensor([0.4, -0.3]), 1
    x = torch.cat([torch.rand(1, 1, 64, 64), ab, mask], dim=1)
    with torch.no_grad():
        assert torch.equal(model(x), push_pull(ab, mask).clamp(-1, 1))
    old = {k: v for k, v in model.state_dict().items() if k != "gain"}  # before the gain
    model.load_state_dict(old)
    assert torch.equal(model.gain, torch.ones(1, 2, 1, 1))


# ---- edge-aware (guided) push-pull ---------------------------------------------------------


def _step_edge(h: int = 48, w: int = 64) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Dark left half, bright right half; a saturated hint on the left and a neutral (ab = 0)
    hint far on the right."""
    luma = torch.full((1, 1, h, w), 0.2)
    luma[..., w // 2 :] = 0.8
    ab, mask = _hints(1, h, w)
    ab[0, :, 20:24, 4:8], mask[0, :, 20:24, 4:8] = torch.tensor([0.6, -0.4]).view(2, 1, 1), 1
    mask[0, :, 40:44, 58:62] = 1
    return luma, ab, mask


def test_guided_push_pull_stops_colour_at_an_edge() -> None:
    luma, ab, mask = _step_edge()
    plain = push_pull(ab, mask)
    guided = push_pull(ab, mask, luma=luma, edge_sweeps=4)
    right = (slice(None), slice(None), slice(None), slice(36, None))  # beyond the edge at 32
    left = (slice(None), slice(None), slice(None), slice(None, 28))
    chroma = lambda x, side: x[side].norm(dim=1).mean()  # noqa: E731
    assert chroma(guided, right) < 0.5 * chroma(plain, right)
    assert chroma(guided, left) > chroma(plain, left)  # ...and stays on its own side
    # the hints are kept exactly
    assert torch.equal(guided[0, :, 20:24, 4:8], ab[0, :, 20:24, 4:8])
    assert guided[0, :, 40:44, 58:62].abs().max() == 0


def test_guided_push_pull_on_flat_luma_spreads_one_hint_everywhere() -> None:
    ab, mask = _hints(1, 37, 53)
    ab[0, :, 5, 7], mask[0, :, 5, 7] = torch.tensor([0.3, -0.2]), 1
    guided = push_pull(ab, mask, luma=torch.full((1, 1, 37, 53), 0.5), edge_sweeps=4)
    expected = torch.tensor([0.3, -0.2]).view(1, 2, 1, 1).expand_as(guided)
    assert torch.allclose(guided, expected, atol=1e-6)


def test_zero_sweeps_is_plain_push_pull_and_weights_are_levins() -> None:
    torch.manual_seed(0)
    ab, mask = torch.randn(2, 2, 30, 41) * 0.3, (torch.rand(2, 1, 30, 41) < 0.05).float()
    luma = torch.rand(2, 1, 30, 41)
    assert torch.equal(push_pull(ab, mask, luma=luma, edge_sweeps=0), push_pull(ab, mask))
    w = luminance_weights(luma)
    assert w.shape == (2, 9, 30, 41)
    assert torch.allclose(w.sum(1), torch.ones(2, 30, 41)) and w[:, 4].abs().max() == 0
    assert w[:, :3, 0].abs().max() == 0  # no neighbours above the first row
    # one pixel by hand: exp(-(Y_r - Y_s)^2 / (2 var_r)) over its 3x3 window, normalised
    window = luma[0, 0, 9:12, 19:22].double()
    raw = torch.exp(-((window - window[1, 1]) ** 2) / (2 * window.var(unbiased=False)))
    raw[1, 1] = 0
    assert torch.allclose(w[0, :, 10, 20].double(), (raw / raw.sum()).flatten(), atol=1e-5)


def test_guided_wrapper_is_built_from_config_and_runs_under_autocast() -> None:
    conf = Path(__file__).resolve().parents[1] / "conf"
    with initialize_config_dir(config_dir=str(conf), version_base="1.3"):
        cfg = compose("train", overrides=["hint_prior=guided", "model.backbone.widths=[4,8]"])
    model = build_backbone(cfg)
    assert isinstance(model, PushPullResidual) and model.edge_sweeps == 4
    luma, ab, mask = _step_edge()
    x = torch.cat([luma - 0.5, ab, mask], dim=1)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(x)
    # gain 0: the untrained model is the edge-aware fill, computed in float32
    assert torch.allclose(out, push_pull(ab, mask, luma=luma, edge_sweeps=4), atol=1e-6)


def test_edge_guide_computed_beforehand_gives_the_same_fill() -> None:
    luma, ab, mask = _step_edge()
    expected = push_pull(ab, mask, luma=luma, edge_sweeps=3)
    assert torch.equal(push_pull(ab, mask, edge_sweeps=3, guide=edge_guide(luma)), expected)


def test_one_photos_guide_is_reused_in_inference_and_never_mixed_up() -> None:
    """The page's clicks on one photo: the guide is computed once, found again only for the
    very same luma, and a model in training (or a batch) never keeps one."""
    torch.manual_seed(0)
    model = PushPullResidual(ResUNet(in_channels=6, widths=(4, 8), bridge=8), 0.5, edge_sweeps=2)
    luma, ab, mask = _step_edge()
    x = torch.cat([luma - 0.5, ab, mask], dim=1)
    other = x.clone()
    other[:, :1, :, :3] += 0.1  # another photo of the same size: three columns differ
    with torch.no_grad():
        fresh = [model.eval()(v) for v in (x, other)]  # the first time: computed
        assert len(model._guides.entries) == 2
        again = [model(v) for v in (x, other, x)]  # found again, output bit-identical
        assert len(model._guides.entries) == 2
        assert torch.equal(again[0], fresh[0]) and torch.equal(again[2], fresh[0])
        assert torch.equal(again[1], fresh[1]) and not torch.equal(fresh[0], fresh[1])
        model(torch.cat([x, other]))  # a batch: not kept
        assert len(model._guides.entries) == 2
    model.train()(x)
    assert len(model._guides.entries) == 2
    import copy
    import pickle

    assert copy.deepcopy(model)._guides.entries == []
    assert pickle.loads(pickle.dumps(model))._guides.entries == []


@pytest.mark.slow  # the exporter traces every level's sweeps: minutes on 2 cores
def test_guided_prior_exports_to_onnx_with_the_network(tmp_path) -> None:
    ort = pytest.importorskip("onnxruntime")
    from hintcolor.export import export_onnx

    torch.manual_seed(0)
    model = PushPullResidual(ResUNet(in_channels=6, widths=(4, 8), bridge=8), 0.5, edge_sweeps=4)
    path = export_onnx(model, tmp_path / "guided.onnx", example_size=64)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for h, w in ((48, 64), (37, 91)):  # sizes the graph was not traced at
        luma, ab, mask = _step_edge(h, w)
        x = torch.cat([luma - 0.5, ab, mask], dim=1)
        with torch.no_grad():
            expected = model.eval()(x).numpy()
        (got,) = session.run(["ab"], {"input": x.numpy()})
        assert abs(got - expected).max() < 1e-4
