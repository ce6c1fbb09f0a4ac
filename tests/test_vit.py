"""The Vision-Transformer backbone: sizes, any input size, global reach, training, timm loading."""

from __future__ import annotations

import pytest
import torch

from hintcolor.models.backbones import ViT
from hintcolor.models.backbones.vit import RelativePositionBias
from hintcolor.models.registry import model_yaml


def small(**kwargs) -> ViT:
    torch.manual_seed(0)
    return ViT(**{"patch": 8, "dim": 32, "depth": 2, "heads": 2, **kwargs})


@pytest.mark.parametrize(
    ("name", "millions"), [("vit_tiny", 6), ("vit_small", 22), ("vit_base", 86)]
)
def test_configured_sizes(name: str, millions: float) -> None:
    cfg = model_yaml(name)["backbone"]  # vit_small and vit_base: vit_tiny's keys + their own
    kwargs = {k: v for k, v in cfg.items() if k != "_target_"}
    with torch.device("meta"):  # counts parameters without allocating 86 M floats
        model = ViT(**kwargs)
    n = sum(p.numel() for p in model.parameters()) / 1e6
    assert n == pytest.approx(millions, rel=0.05)


def test_sizes_divisible_or_padded_and_cropped() -> None:
    model = small().eval()
    with torch.no_grad():
        for h, w in ((64, 64), (32, 96), (37, 50), (5, 3)):
            y = model(torch.randn(2, 4, h, w))
            assert y.shape == (2, 2, h, w) and y.abs().max() < 1


def test_relative_bias_is_the_same_function_of_offset_at_any_grid_size() -> None:
    bias = RelativePositionBias(heads=2, max_relative=3)
    small_grid = bias(2, 3)  # tokens (row, col) -> index row * w + col
    large_grid = bias(6, 9)
    # offset (+1, +2) between tokens (0,0) and (1,2) in both grids
    assert torch.equal(small_grid[:, 0, 1 * 3 + 2], large_grid[:, 0, 1 * 9 + 2])
    # offsets beyond max_relative share the clipped entry
    assert torch.equal(large_grid[:, 0, 5 * 9 + 8], large_grid[:, 0, 3 * 9 + 3])


def test_a_hint_changes_the_prediction_at_the_opposite_corner() -> None:
    model = small().eval()
    x = torch.zeros(1, 4, 64, 64)
    x[:, 0] = torch.linspace(-0.5, 0.5, 64)
    hinted = x.clone()
    hinted[:, 1:3, :4, :4] = torch.tensor([0.5, -0.3]).view(1, 2, 1, 1)
    hinted[:, 3, :4, :4] = 1
    with torch.no_grad():
        change = (model(hinted) - model(x)).abs()
    assert change[..., -8:, -8:].max() > 1e-4  # the far corner, 7 patches away


def test_one_optimisation_step_lowers_the_loss() -> None:
    model = small()
    x = torch.randn(4, 4, 32, 32)
    target = torch.rand(4, 2, 32, 32) * 0.6 - 0.3
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(2):
        loss = torch.nn.functional.mse_loss(model(x), target)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[1] < losses[0]


def test_bf16_forward_matches_fp32() -> None:
    model = small().eval()
    x = torch.randn(2, 4, 48, 40)
    with torch.no_grad():
        ref = model(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = model(x)
    assert (out.float() - ref).abs().max() < 0.05


def test_pretrained_tensors_with_matching_names_and_shapes_are_copied(tmp_path) -> None:
    source = small(in_channels=3)  # like a timm RGB ViT: its patch embedding cannot match
    path = tmp_path / "timm_vit.pth"
    torch.save({"model": source.state_dict()}, path)
    model = small(in_channels=6, pretrained_path=str(path))
    torch.testing.assert_close(model.blocks[1].attn.qkv.weight, source.blocks[1].attn.qkv.weight)
    assert not torch.equal(model.head.weight[:1], torch.zeros_like(model.head.weight[:1]))
    assert model.patch_embed.proj.weight.shape[1] == 6
    copied = model.load_pretrained(path)
    assert copied == len(source.state_dict()) - 1  # all but the patch embedding's weight
    with pytest.raises(FileNotFoundError, match="pretrained_path"):
        small(pretrained_path=str(tmp_path / "missing.pth"))
