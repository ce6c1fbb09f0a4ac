"""The Lightning module and its loss, on a fixed batch of real photos."""

import pytest
import torch
from conftest import color_head
from hydra.utils import instantiate
from torchmetrics.image import PeakSignalNoiseRatio, StructuralSimilarityIndexMeasure

from hintcolor.data import FixedHints, make_batch
from hintcolor.data.color import normalized_lab_to_rgb
from hintcolor.metrics import psnr_per_image, ssim_per_image
from hintcolor.models import ColorizationLoss, ColorizationModule
from hintcolor.models.backbones import ResUNet
from hintcolor.models.hint_prior import PushPullResidual
from hintcolor.models.registry import compared_backbones, quick_backbone


def _batch(kodak_files, size=48):
    from hintcolor.data.images import load_rgb

    crops = [
        torch.from_numpy(load_rgb(f)[:size, :size].copy()).permute(2, 0, 1) for f in kodak_files[:4]
    ]
    return make_batch(torch.stack(crops), FixedHints(k=5, patch_size=3), torch.arange(4))


def _module(**kw):
    return ColorizationModule(
        backbone=ResUNet(widths=(8, 16, 32), bridge=32),
        loss=kw.pop("loss", {"huber": 1.0, "l1": 0.5, "ssim": 0.1}),
        optimizer={"_target_": "torch.optim.Adam", "_partial_": True, "lr": 3e-3},
        scheduler=None,
        **kw,
    )


def test_optimisation_steps_lower_the_loss(kodak_files):
    torch.manual_seed(0)
    module = _module(channels_last=True)
    batch = _batch(kodak_files)
    opt = module.configure_optimizers()["optimizer"]
    module.train()

    def loss():
        return module.criterion(module(batch["input"]), batch["ab"], batch["l"])["loss"]

    before = loss().item()
    for _ in range(5):
        opt.zero_grad()
        loss().backward()
        opt.step()
    assert loss().item() < before


def test_loss_terms_and_weights():
    pred = torch.zeros(2, 2, 16, 16)
    target = torch.full((2, 2, 16, 16), 0.2)
    l_norm = torch.zeros(2, 1, 16, 16)
    terms = ColorizationLoss(huber=1, l1=2, mse=0, ssim=1)(pred, target, l_norm)
    assert set(terms) == {"huber", "l1", "ssim", "loss"}
    assert torch.isclose(terms["l1"], torch.tensor(0.2))
    assert torch.isclose(terms["loss"], terms["huber"] + 2 * terms["l1"] + terms["ssim"])
    same = ColorizationLoss(huber=0, mse=1)(target, target, l_norm)
    assert same["loss"] == 0 and set(same) == {"mse", "loss"}
    with pytest.raises(ValueError):
        ColorizationLoss(huber=0)
    with pytest.raises(ValueError):
        ColorizationLoss(l1=-1)


def test_loss_is_fp32_under_bf16_autocast():
    pred = torch.rand(2, 2, 16, 16) - 0.5
    target = torch.rand(2, 2, 16, 16) - 0.5
    l_norm = torch.rand(2, 1, 16, 16) - 0.5
    crit = ColorizationLoss(huber=1, ssim=1)
    ref = crit(pred, target, l_norm)["loss"]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = crit(pred, target, l_norm)["loss"]
    assert out.dtype == torch.float32 and torch.isclose(out, ref, atol=1e-6)


def test_forward_returns_float_ab(kodak_files):
    module = _module().eval()
    batch = _batch(kodak_files)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = module(batch["input"])
    assert out.dtype == torch.float32 and out.shape == batch["ab"].shape


@pytest.mark.parametrize("stage", ["val", "test"])
def test_logged_metrics_are_the_metrics_modules_values(kodak_files, stage):
    """val/psnr (what checkpoints and sweeps select on) is the mean per-image PSNR of
    hintcolor.metrics - and the value torchmetrics gave before, as for SSIM."""
    torch.manual_seed(0)
    module = _module().eval()
    batch = _batch(kodak_files)
    logged = {}
    module.log = lambda key, value, **kw: logged.__setitem__(key, value)
    with torch.no_grad():
        getattr(module, {"val": "validation_step", "test": "test_step"}[stage])(batch, 0)
        rgb = normalized_lab_to_rgb(batch["l"], module(batch["input"])).clamp(0, 1)
    psnr, ssim = logged[f"{stage}/psnr"].compute(), logged[f"{stage}/ssim"].compute()
    assert torch.allclose(psnr, psnr_per_image(rgb, batch["rgb"]).mean(), rtol=0, atol=1e-5)
    assert torch.allclose(ssim, ssim_per_image(rgb, batch["rgb"]).mean(), rtol=0, atol=1e-6)
    before = PeakSignalNoiseRatio(data_range=1.0, reduction="elementwise_mean", dim=(1, 2, 3))
    assert torch.allclose(psnr, before(rgb, batch["rgb"]), rtol=0, atol=1e-4)
    before = StructuralSimilarityIndexMeasure(data_range=1.0)
    assert torch.allclose(ssim, before(rgb, batch["rgb"]), rtol=0, atol=2e-5)


HEAD_BACKBONES = {
    name: (lambda c, name=name: instantiate(quick_backbone(name), in_channels=c))
    for name in compared_backbones()
}


def _head_module(network, loss, **kw):
    return ColorizationModule(
        backbone=color_head(network, width=16),
        loss=loss,
        optimizer={"_target_": "torch.optim.Adam", "_partial_": True, "lr": 3e-3},
        scheduler=None,
        **kw,
    )


@pytest.mark.parametrize("prior", [False, True], ids=["alone", "push_pull"])
@pytest.mark.parametrize("name", list(HEAD_BACKBONES))
def test_a_training_step_with_the_colour_head_on_every_backbone(kodak_files, name, prior):
    torch.manual_seed(0)
    network = HEAD_BACKBONES[name](6 if prior else 4)
    if prior:
        network = PushPullResidual(network, 0.5)
    module = _head_module(network, {"huber": 1.0, "distribution": 1.0})
    batch = _batch(kodak_files, size=40)
    opt = module.configure_optimizers()["optimizer"]
    module.train()
    logged = {}
    module.log = lambda key, value, **kw: logged.__setitem__(key, value)
    loss = module.training_step(batch, 0)
    assert torch.isfinite(loss) and "train/distribution" in logged and "train/huber" in logged
    assert logged["train/distribution"] > 1  # an untrained head: near log(262) = 5.6
    loss.backward()
    head_grad = module.backbone.classifier.weight.grad
    assert head_grad is not None and head_grad.abs().sum() > 0
    first = next(p for p in network.parameters() if p.ndim == 4)
    assert first.grad is not None and first.grad.abs().sum() > 0  # trained jointly
    opt.step()
    assert all(torch.isfinite(p).all() for p in module.parameters())
    assert int(module.backbone.distribution.prior_pixels) == 4 * 10 * 10


def test_a_distribution_weight_without_a_head_is_refused():
    with pytest.raises(ValueError, match="colour-distribution head"):
        _module(loss={"huber": 1.0, "distribution": 1.0})


def test_frozen_network_keeps_its_output_and_batch_norm_statistics(kodak_files):
    torch.manual_seed(0)
    network = PushPullResidual(ResUNet(in_channels=6, widths=(8, 16, 32), bridge=32), 0.5)
    module = _head_module(
        network, {"huber": 0.0, "distribution": 1.0}, freeze_backbone=True, channels_last=True
    )
    batch = _batch(kodak_files, size=40)
    x = batch["input"]
    with torch.no_grad():
        before = network(x).clone()
    stats = {k: v.clone() for k, v in network.state_dict().items()}
    head = module.backbone.classifier.weight.clone()
    opt = module.configure_optimizers()["optimizer"]
    assert all(p.requires_grad for group in opt.param_groups for p in group["params"])
    module.train()  # what Lightning does before every epoch
    assert not network.training and module.backbone.classifier.training
    module.log = lambda *a, **kw: None
    losses = []
    for _ in range(3):
        opt.zero_grad()
        loss = module.training_step(batch, 0)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]
    assert not torch.equal(module.backbone.classifier.weight, head)  # the head trained
    assert all(p.grad is None for p in network.parameters())
    for key, value in network.state_dict().items():
        assert torch.equal(value, stats[key]), key  # weights and BN running stats
    with torch.no_grad():
        assert torch.equal(network(x), before)
