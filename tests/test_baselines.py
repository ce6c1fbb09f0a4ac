"""The non-learned references of the evaluation (hintcolor.baselines): known answers on tiny
inputs, and each against its definition."""

from __future__ import annotations

import pytest
import torch

from hintcolor import levin
from hintcolor.baselines import gray_baseline, idw_baseline, levin_baseline
from hintcolor.data.hints import FixedHints, Hints


def _point_hints(batch: int, h: int, w: int, points: list[tuple[int, int, int, float, float]]):
    """Single-pixel hints (image, y, x, a, b) as the hint laws render them."""
    ab, mask = torch.zeros(batch, 2, h, w), torch.zeros(batch, 1, h, w)
    for i, y, x, a, b in points:
        ab[i, :, y, x] = torch.tensor([a, b])
        mask[i, 0, y, x] = 1
    centers = torch.tensor([[i, y, x] for i, y, x, _, _ in points], dtype=torch.long)
    colors = torch.tensor([[a, b] for *_, a, b in points])
    return Hints(ab, mask, centers.reshape(-1, 3), colors.reshape(-1, 2))


def test_gray_is_zero_ab_of_the_image_size() -> None:
    l_norm = torch.rand(3, 1, 5, 7, dtype=torch.float64) - 0.5
    out = gray_baseline(l_norm)
    assert out.shape == (3, 2, 5, 7) and out.dtype == torch.float64
    assert (out == 0).all()


def test_idw_of_one_hint_is_its_colour_everywhere() -> None:
    hints = _point_hints(1, 4, 5, [(0, 1, 3, 0.3, -0.2)])
    out = idw_baseline(hints, (1, 2, 4, 5))
    assert torch.allclose(out, torch.tensor([0.3, -0.2]).view(1, 2, 1, 1).expand(1, 2, 4, 5))


def test_idw_weighs_by_inverse_distance_to_the_power() -> None:
    # hints at x=0 and x=3 of a 1x4 row: pixel x=1 is 1 and 2 away, pixel x=2 is 2 and 1 away
    hints = _point_hints(1, 1, 4, [(0, 0, 0, 1.0, 0.0), (0, 0, 3, 0.0, 1.0)])
    for power in (2.0, 3.0):
        near, far = 1.0, 2.0**-power  # 1 / d^power for d = 1, 2
        out = idw_baseline(hints, (1, 2, 1, 4), power)
        expected_x1 = torch.tensor([near, far]) / (near + far)  # (a, b) at x=1
        assert torch.allclose(out[0, :, 0, 1], expected_x1)
        assert torch.allclose(out[0, :, 0, 2], expected_x1.flip(0))
        assert torch.equal(out[0, :, 0, 0], torch.tensor([1.0, 0.0]))  # hinted: kept


def test_idw_without_hints_is_gray_and_images_do_not_mix() -> None:
    # image 0 has a hint, image 1 none: image 1 stays gray, not image 0's colour
    hints = _point_hints(2, 3, 3, [(0, 1, 1, 0.5, 0.5)])
    out = idw_baseline(hints, (2, 2, 3, 3))
    assert torch.allclose(out[0], torch.full((2, 3, 3), 0.5))
    assert (out[1] == 0).all()


@pytest.mark.parametrize("power", [2.0, 3.0])
def test_idw_matches_shepards_formula(power: float) -> None:
    ab = torch.rand(2, 2, 23, 31) * 2 - 1
    hints = FixedHints(k=7, patch_size=3, seed=1)(ab, torch.arange(2))
    out = idw_baseline(hints, tuple(ab.shape), power)
    ys, xs = torch.meshgrid(torch.arange(23.0), torch.arange(31.0), indexing="ij")
    for i in range(2):
        mine = hints.centers[:, 0] == i
        centers, colors = hints.centers[mine, 1:].float(), hints.colors[mine].float()
        d2 = (ys[..., None] - centers[:, 0]) ** 2 + (xs[..., None] - centers[:, 1]) ** 2
        w = d2.clamp_min(1e-6) ** (-power / 2)
        expected = torch.einsum("hwn,nc->chw", w, colors) / w.sum(-1)
        expected = torch.where(hints.mask[i].bool(), hints.ab[i], expected)
        assert torch.allclose(out[i], expected, atol=1e-5)


def test_levin_on_a_flat_image_spreads_one_hint_everywhere() -> None:
    hints = _point_hints(1, 8, 10, [(0, 2, 3, 0.3, -0.2)])
    out = levin_baseline(torch.full((1, 1, 8, 10), 0.1), hints)
    expected = torch.tensor([0.3, -0.2]).view(1, 2, 1, 1).expand_as(out)
    assert (out - expected).abs().max() < 1e-3


def test_levin_with_precomputed_weights_is_levin_colorize() -> None:
    torch.manual_seed(0)
    l_norm = torch.rand(1, 1, 12, 12) - 0.5
    hints = _point_hints(1, 12, 12, [(0, 2, 2, 0.4, 0.1), (0, 9, 8, -0.3, 0.2)])
    weights = levin.levin_weights(levin.luma_from_l(l_norm.double())).float()
    given = levin_baseline(l_norm, hints, weights)
    assert torch.equal(given, levin.levin_colorize(l_norm, hints.ab, hints.mask, weights=weights))
    assert torch.allclose(given, levin_baseline(l_norm, hints), atol=1e-3)
    assert (levin_baseline(l_norm, _point_hints(1, 12, 12, [])) == 0).all()
