"""The quantised ab gamut, soft encoding, class rebalancing and the colour-distribution head."""

from __future__ import annotations

import math
import time
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from conftest import ROOT, color_head, compose

from hintcolor.build import build_backbone, build_module, plain
from hintcolor.checkpoints import check_stored_config, load_backbone, load_network_weights
from hintcolor.config import ConfigError, check_train_config
from hintcolor.data.color import AB_SCALE, rgb_to_lab
from hintcolor.models.backbones import ResUNet
from hintcolor.models.color_distribution import (
    ColorDistributionLoss,
    ab_gamut_bins,
    dense_distribution,
    gaussian_smoothing,
    rebalance_weights,
    soft_encode,
)
from hintcolor.models.color_head import ColorDistributionHead
from hintcolor.models.hint_prior import PushPullResidual, push_pull

GRID = 10.0


def _random_srgb_ab(n: int, seed: int = 0) -> torch.Tensor:
    """(n, 2) ab (Lab units) of random sRGB colours, saturated ones included."""
    g = torch.Generator().manual_seed(seed)
    rgb = torch.rand(3, n, 1, generator=g)
    rgb[:, : n // 4] = (rgb[:, : n // 4] > 0.5).float() * 0.8 + rgb[:, : n // 4] * 0.2  # vivid
    return rgb_to_lab(rgb)[1:, :, 0].T


def _loss_module(rebalance: bool = False) -> ColorDistributionLoss:
    return ColorDistributionLoss(GRID, 5, 5.0, rebalance, 0.5, 5.0)


def test_gamut_bins_are_the_grid_cells_srgb_reaches() -> None:
    start = time.perf_counter()
    bins = ab_gamut_bins(GRID)
    # Zhang et al. keep 313 bins at grid 10; sRGB with the standard D65 conversion reaches 262
    # (the comment in _gamut_bins says why the two differ).
    assert len(bins) == 262
    assert abs(len(bins) - 313) < 0.2 * 313
    assert time.perf_counter() - start < 5  # computed at first use
    assert torch.equal(bins, torch.round(bins / GRID) * GRID)  # on the grid
    assert len(torch.unique(bins, dim=0)) == len(bins)
    assert bins[:, 0].min() == -90 and bins[:, 0].max() == 100  # a* of sRGB: -86 .. 98
    assert bins[:, 1].min() == -110 and bins[:, 1].max() == 90  # b*: -108 .. 94
    # every sRGB colour quantises to a kept bin, and (nearly) every bin is used
    ab = _random_srgb_ab(200_000)
    cells = torch.round(ab / GRID) * GRID
    kept = {tuple(b) for b in bins.tolist()}
    reached = {tuple(c) for c in cells.tolist()}
    assert reached <= kept
    assert len(reached) > 0.9 * len(bins)
    assert not ({(100.0, 100.0), (-110.0, 110.0)} & kept)  # no colour there
    assert torch.equal(ab_gamut_bins(GRID), bins)  # deterministic
    assert len(ab_gamut_bins(20.0)) < len(bins) / 3


def test_soft_encoding_sums_to_one_and_peaks_at_the_nearest_bin() -> None:
    bins = ab_gamut_bins(GRID)
    ab = _random_srgb_ab(300).T.reshape(1, 2, 15, 20)
    index, weight = soft_encode(ab, bins, neighbours=5, sigma=5.0)
    assert index.shape == weight.shape == (1, 5, 15, 20)
    torch.testing.assert_close(weight.sum(1), torch.ones(1, 15, 20))
    assert (weight[:, :-1] >= weight[:, 1:]).all()  # nearest first, heaviest first
    flat = ab[0].reshape(2, -1).T
    nearest = torch.cdist(flat, bins).argmin(1)
    assert torch.equal(index[0, 0].flatten(), nearest)
    dense = dense_distribution(index, weight, len(bins))
    torch.testing.assert_close(dense.sum(1), torch.ones(1, 15, 20))
    assert torch.equal(dense.argmax(1).flatten(), nearest)
    # on a bin centre: Gaussian weights of the centre (d=0) and its 4 neighbours (d=10)
    centre = torch.tensor([[20.0], [-30.0]]).view(1, 2, 1, 1)
    index, weight = soft_encode(centre, bins, neighbours=5, sigma=5.0)
    expected = 1 / (1 + 4 * math.exp(-(10**2) / (2 * 5**2)))
    assert bins[index[0, 0, 0, 0]].tolist() == [20.0, -30.0]
    assert weight[0, 0, 0, 0].item() == pytest.approx(expected, rel=1e-5)


def test_rebalancing_weights_have_mean_one_under_the_prior_and_favour_rare_colours() -> None:
    bins = ab_gamut_bins(GRID)
    smoothing = gaussian_smoothing(bins, 5.0)
    torch.testing.assert_close(smoothing.sum(0), torch.ones(len(bins)))  # keeps the mass
    prior = torch.rand(len(bins), generator=torch.Generator().manual_seed(0)) ** 4
    weights = rebalance_weights(prior, smoothing, 0.5)
    smoothed = smoothing @ (prior / prior.sum())
    assert (smoothed * weights).sum().item() == pytest.approx(1.0, abs=1e-5)
    order = smoothed.argsort()
    assert (weights[order][:-1] >= weights[order][1:] - 1e-6).all()  # rarer: heavier
    assert weights.max() / weights.min() > 1.5
    torch.testing.assert_close(rebalance_weights(prior, smoothing, 1.0), torch.ones(len(bins)))


def test_running_prior_is_the_mean_of_every_training_target_and_survives_float16() -> None:
    g = torch.Generator().manual_seed(0)
    batches = [torch.rand(2, 2, 12, 16, generator=g) * 0.8 - 0.4 for _ in range(3)]
    loss = _loss_module()
    logits = torch.zeros(2, loss.num_bins, 3, 4)
    for target in batches:
        loss(logits, target, update_prior=True)
    loss(logits, batches[0], update_prior=False)  # validation: not counted
    index, weight = loss.encode(torch.cat(batches))
    expected = dense_distribution(index, weight, loss.num_bins).mean((0, 2, 3))
    torch.testing.assert_close(loss.prior, expected, rtol=1e-5, atol=1e-7)
    assert int(loss.prior_pixels) == 6 * 3 * 4
    state = loss.state_dict()
    assert set(state) == {"prior", "prior_pixels"}  # the bins are rebuilt, not stored
    restored = _loss_module()
    packed = {k: v.half() if v.is_floating_point() else v for k, v in state.items()}
    restored.load_state_dict(packed)  # as scripts/release_model.py packs a model
    assert torch.isfinite(restored.prior).all() and restored.prior_pixels == loss.prior_pixels
    torch.testing.assert_close(restored.prior, loss.prior, rtol=1e-3, atol=1e-6)


def test_loss_is_the_cross_entropy_to_the_soft_targets_at_quarter_resolution() -> None:
    loss = _loss_module()
    target = torch.rand(1, 2, 13, 18, generator=torch.Generator().manual_seed(1)) * 0.6 - 0.3
    index, weight = loss.encode(target)
    assert index.shape[-2:] == (4, 5)  # ceil(13 / 4), ceil(18 / 4)
    # the border cells average only the real pixels
    torch.testing.assert_close(
        F.avg_pool2d(target, 4, ceil_mode=True)[..., -1, -1], target[..., 12:, 16:].mean((-2, -1))
    )
    soft = dense_distribution(index, weight, loss.num_bins)
    best = torch.log(soft.clamp(min=1e-30))  # logits whose softmax is the target itself
    entropy = -(soft * best).sum(1).mean()
    assert loss(best, target).item() == pytest.approx(entropy.item(), rel=1e-4)
    assert loss(torch.zeros_like(best), target) > loss(best, target) + 1  # uniform: log 262
    assert loss(torch.zeros_like(best), target).item() == pytest.approx(math.log(262), rel=1e-5)
    # rebalancing weighs a pixel by its bin's weight; before any prior every weight is 1
    balanced = _loss_module(rebalance=True)
    assert balanced(best, target).item() == pytest.approx(entropy.item(), rel=1e-4)
    balanced(best, target, update_prior=True)
    weights = balanced.class_weights()[index[:, 0]]
    expected = (-(soft * torch.log_softmax(best, 1)).sum(1) * weights).mean()
    assert balanced(best, target).item() == pytest.approx(expected.item(), rel=1e-4)


def _tiny_resunet(in_channels: int = 4) -> ResUNet:
    return ResUNet(in_channels=in_channels, widths=(8, 16, 32), bridge=32)


def test_head_forward_is_the_networks_and_one_pass_gives_both() -> None:
    torch.manual_seed(0)
    network = PushPullResidual(_tiny_resunet(6), 0.5, edge_sweeps=2).eval()
    head = color_head(network, width=16).eval()
    x = torch.rand(2, 4, 37, 29) - 0.5
    with torch.no_grad():
        ab = head(x)
        ab2, logits = head.forward_with_distribution(x)
        assert torch.equal(ab, network(x)) and torch.equal(ab2, ab)
        assert logits.shape == (2, 262, 10, 8)
        # the features are the inner backbone's, given the prior-augmented input
        prior = push_pull(x[:, 1:3], x[:, 3:4], luma=x[:, :1] + 0.5, edge_sweeps=2)
        inner = network.backbone.forward_features(torch.cat([x, prior], 1))
        torch.testing.assert_close(network.forward_features(x), inner)
    assert head.stride == network.stride == 8
    assert isinstance(head.network, PushPullResidual)


def test_head_and_hint_prior_compose_from_config_and_round_trip_a_safe_checkpoint(
    tmp_path: Path,
) -> None:
    overrides = [
        "color_head=default",
        "color_head.width=16",
        "hint_prior=guided",
        "model.backbone.widths=[8,16,32]",
        "model.backbone.bridge=32",
        "loss.distribution=1.0",
        "logger=none",
    ]
    cfg = compose("train", overrides, tmp_path)
    torch.manual_seed(0)
    net = build_backbone(cfg)
    assert isinstance(net, ColorDistributionHead)
    assert isinstance(net.network, PushPullResidual) and net.network.edge_sweeps == 4
    assert isinstance(net.network.backbone, ResUNet) and net.network.backbone.in_channels == 6
    module = build_module(cfg, net)
    batch_target = torch.rand(2, 2, 32, 32) * 0.4 - 0.2
    logits = net.forward_with_distribution(torch.rand(2, 4, 32, 32))[1]
    net.distribution_loss(logits, batch_target, update_prior=True)  # a prior to store
    path = tmp_path / "head.ckpt"
    torch.save({"state_dict": module.state_dict(), "hintcolor_config": module.config}, path)
    loaded, stored = load_backbone(path)
    assert stored.color_head.width == 16
    assert isinstance(loaded, ColorDistributionHead)
    for key, value in net.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    assert int(loaded.distribution.prior_pixels) == 2 * 8 * 8
    x = torch.rand(1, 4, 40, 24) - 0.5
    net.eval().to(memory_format=torch.contiguous_format)  # the module made it channels-last
    with torch.no_grad():
        got, expected = loaded.forward_with_distribution(x), net.forward_with_distribution(x)
    for a, b in zip(got, expected, strict=True):
        assert torch.equal(a, b)
    # only this package's model classes may be built from a stored color_head
    for target in ("hintcolor.models.module.ColorizationModule", "builtins.exec"):
        config = plain(cfg)
        config["color_head"]["_target_"] = target
        with pytest.raises(ConfigError, match="refused"):
            check_stored_config(config, "x.ckpt")
    # checkpoints from before the group (no color_head key) still pass, and so do empty
    # group options (they are stored as {}: hint_prior=none was refused before)
    config = plain(cfg)
    del config["color_head"]
    check_stored_config(config, "old.ckpt")
    check_stored_config(plain(compose("train", ["hint_prior=none"], tmp_path)), "none.ckpt")


def test_distribution_weight_and_freezing_without_a_head_fail_at_config_time(
    tmp_path: Path,
) -> None:
    for overrides, message in (
        (["loss.distribution=1"], "loss.distribution=1.*color_head=default"),
        (["freeze_backbone=true"], "freeze_backbone=true.*color_head=default"),
        (["color_head=default", "freeze_backbone=true"], "set loss.distribution=1"),
        (["init_from=/nowhere.ckpt"], "init_from: checkpoint /nowhere.ckpt does not exist"),
    ):
        cfg = compose("train", ["logger=none", *overrides], tmp_path)
        with pytest.raises(ConfigError, match=message) as info:
            check_train_config(cfg, 32)
        assert "\n" not in str(info.value)
    check_train_config(
        compose("train", ["logger=none", "color_head=default", "loss.distribution=1"], tmp_path),
        32,
    )


def test_init_from_a_checkpoint_without_head_fills_the_network_only(tmp_path: Path) -> None:
    torch.manual_seed(0)
    trained = _tiny_resunet()
    path = tmp_path / "plain.ckpt"
    state = {f"backbone.{k}": v.half() for k, v in trained.state_dict().items()}
    torch.save({"state_dict": state, "hintcolor_config": {}}, path)
    head = color_head(_tiny_resunet(), width=8)
    before = {k: v.clone() for k, v in head.state_dict().items() if not k.startswith("network.")}
    assert "network" in load_network_weights(head, path)
    for key, value in trained.state_dict().items():
        torch.testing.assert_close(head.network.state_dict()[key], value.half().to(value.dtype))
    for key, value in before.items():
        assert torch.equal(head.state_dict()[key], value), key
    with pytest.raises(ConfigError, match="weights of another model"):
        load_network_weights(color_head(ResUNet(widths=(8, 16), bridge=16), width=8), path)


def test_export_has_the_distribution_output(tmp_path: Path) -> None:
    # ~10 s on 2 busy cores without a hint prior (31 s with push_pull: the exporter traces its
    # pyramid), so not marked slow; the prior's export has its own slow test
    import json

    import onnx

    ort = pytest.importorskip("onnxruntime")
    from hintcolor.export import export_onnx

    torch.manual_seed(0)
    model = color_head(ResUNet(widths=(4, 8), bridge=8), width=8)
    path = export_onnx(model.eval(), tmp_path / "head.onnx", example_size=64)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [o.name for o in session.get_outputs()] == ["ab", "ab_distribution"]
    x = torch.rand(1, 4, 37, 91) - 0.5  # not the traced size, not a multiple of 4
    ab, distribution = session.run(None, {"input": x.numpy()})
    with torch.no_grad():
        expected_ab, logits = model.forward_with_distribution(x)
    assert abs(ab - expected_ab.numpy()).max() < 1e-4
    assert distribution.shape == (1, 262, 10, 23)
    assert abs(distribution - logits.softmax(1).numpy()).max() < 1e-5
    bins = json.loads({p.key: p.value for p in onnx.load(str(path)).metadata_props}["ab_bins"])
    assert torch.equal(torch.tensor(bins), model.bins)


def test_ab_scale_matches_the_bins_units() -> None:
    # the loss takes normalised ab; its bins are in Lab units: a target on a bin centre
    loss = _loss_module()
    target = torch.zeros(1, 2, 4, 4)
    target[:, 0], target[:, 1] = 50 / AB_SCALE, -20 / AB_SCALE
    index, _ = loss.encode(target)
    assert loss.bins[index[0, 0, 0, 0]].tolist() == [50.0, -20.0]


@pytest.mark.slow  # a real (debug=fast) training run: ~20 s on 2 cores
def test_a_head_trains_on_the_frozen_shipped_model_end_to_end(tmp_path, photo_folders) -> None:
    from hintcolor.training import train

    shipped = ROOT / "models" / "hintcolor-v1" / "model.ckpt"
    overrides = [
        "debug=fast",
        "callbacks.progress_bar=null",
        "logger=csv",
        "data.image_size=64",
        f"data.train_dir={photo_folders['train']}",
        f"data.val_dir={photo_folders['val']}",
        "hint_prior=guided",
        "color_head=default",
        "loss.huber=0",
        "loss.distribution=1",
        f"init_from={shipped}",
        "freeze_backbone=true",
    ]
    metrics = train(compose("train", overrides, tmp_path / "run"))
    assert 0 < metrics["val/distribution"] < math.log(262) + 0.5
    run_state = torch.load(tmp_path / "run/checkpoints/last.ckpt", weights_only=True)["state_dict"]
    shipped_state = torch.load(shipped, weights_only=True)["state_dict"]
    for key, value in shipped_state.items():  # the network, BN statistics included, untouched
        new = run_state[key.replace("backbone.", "backbone.network.", 1)]
        assert torch.equal(new, value.to(new.dtype)), key
    loaded, _ = load_backbone(tmp_path / "run/checkpoints/last.ckpt")
    assert isinstance(loaded, ColorDistributionHead)
