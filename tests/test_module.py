"""The Lightning module and its loss, on a fixed batch of real photos."""

import pytest
import torch

from hintcolor.data import FixedHints, make_batch
from hintcolor.models import ColorizationLoss, ColorizationModule
from hintcolor.models.backbones import ResUNet


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
