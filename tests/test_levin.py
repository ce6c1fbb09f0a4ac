"""Levin et al. 2004 reference: the iterative solver against the method's properties and
against scipy's direct solve."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from hintcolor import levin
from hintcolor.baselines import idw_baseline
from hintcolor.data.color import rgb_uint8_to_normalized_lab
from hintcolor.data.hints import FixedHints, Hints


def _point_hints(h: int, w: int, points: list[tuple[int, int, float, float]]) -> Hints:
    ab, mask = torch.zeros(1, 2, h, w), torch.zeros(1, 1, h, w)
    for y, x, a, b in points:
        ab[0, :, y, x] = torch.tensor([a, b])
        mask[0, 0, y, x] = 1
    centers = torch.tensor([[0.0, y, x] for y, x, _, _ in points])
    colors = torch.tensor([[a, b] for _, _, a, b in points])
    return Hints(ab, mask, centers, colors)


def _photo_crop(kodak_files: list[Path], h: int = 40, w: int = 52) -> torch.Tensor:
    rgb = np.asarray(Image.open(kodak_files[3]).convert("RGB"))[200 : 200 + h, 300 : 300 + w]
    return torch.from_numpy(rgb.copy()).permute(2, 0, 1)[None]


def test_weights_are_row_normalised_and_follow_the_intensity() -> None:
    luma = torch.rand(2, 1, 9, 11, dtype=torch.float64)
    w = levin.levin_weights(luma)
    assert w.shape == (2, 9, 9, 11)
    assert torch.allclose(w.sum(1), torch.ones(2, 9, 11, dtype=torch.float64))
    assert (w[:, levin.CENTRE] == 0).all()
    assert (w[:, :3, 0] == 0).all() and (w[:, 6:, -1] == 0).all()  # outside the image
    step = torch.zeros(1, 1, 5, 6, dtype=torch.float64)
    step[..., 3:] = 1.0
    w = levin.levin_weights(step)
    # across the edge: exp(-1 / (0.6 * 2/9)) = 5.5e-4 of a neighbour along the dark side
    assert w[0, 5, 2, 2] < 1e-3 * w[0, 3, 2, 2]
    # one pixel by hand, as the authors' code computes it
    luma = torch.rand(1, 1, 5, 5, dtype=torch.float64)
    window = luma[0, 0, 1:4, 1:4]
    d2 = (window - window[1, 1]).pow(2)
    csig = max(0.6 * float(window.var(unbiased=False)), float(d2[d2 > 0].min()) / np.log(100))
    raw = torch.exp(-d2 / max(csig, 2e-6))
    raw[1, 1] = 0
    expected = (raw / raw.sum()).flatten()
    assert torch.allclose(levin.levin_weights(luma)[0, :, 2, 2], expected)


def test_flat_image_one_hint_colours_everything() -> None:
    hints = _point_hints(24, 30, [(7, 9, 0.3, -0.2)])
    l_norm = torch.full((1, 1, 24, 30), 0.1)
    out = levin.levin_colorize(l_norm, hints.ab, hints.mask, tol=1e-6)
    expected = torch.tensor([0.3, -0.2]).view(1, 2, 1, 1).expand_as(out)
    assert (out - expected).abs().max() < 1e-4


def test_an_edge_holds_the_colour_back_where_idw_does_not() -> None:
    """A step in L (dark left, bright right), a saturated 6x6 hint on the left and a neutral
    one on the right: the far side stays much less saturated than IDW leaves it."""
    h, w = 32, 48
    step = torch.full((1, 1, h, w), -0.3)
    step[..., w // 2 :] = 0.3
    patch = [(y, x) for y in range(13, 19) for x in range(6)]
    hints = _point_hints(
        h, w, [(y, x + 2, 0.5, 0.4) for y, x in patch] + [(y, x + 40, 0.0, 0.0) for y, x in patch]
    )
    idw = idw_baseline(hints, (1, 2, h, w))
    out, flat = (
        levin.levin_colorize(l_norm, hints.ab, hints.mask, tol=1e-6)
        for l_norm in (step, torch.zeros_like(step))
    )

    def right(ab: torch.Tensor) -> float:  # saturation beyond the edge
        return float(ab[..., w // 2 + 1 : w - 4].norm(dim=1).mean())

    assert right(out) < 0.2 * right(idw) and right(out) < 0.2 * right(flat)
    left = out[..., 1 : w // 2 - 1].norm(dim=1).mean()
    assert left > 0.9 * torch.tensor([0.5, 0.4]).norm()  # ...and the hinted side keeps it


def test_hinted_pixels_keep_their_colour_and_no_hints_give_gray(kodak_files) -> None:
    rgb = _photo_crop(kodak_files).repeat(2, 1, 1, 1)
    l_norm, ab = rgb_uint8_to_normalized_lab(rgb)
    hints = FixedHints(k=5, patch_size=3)(ab, torch.tensor([0, 1]))
    hints.ab[1], hints.mask[1] = 0, 0
    out = levin.levin_colorize(l_norm, hints.ab, hints.mask)
    m = hints.mask[:1].bool().expand(1, 2, -1, -1)
    assert torch.equal(out[:1][m], hints.ab[:1][m])
    assert (out[1] == 0).all()


def test_matches_the_direct_solve_on_a_photo_crop(kodak_files) -> None:
    rgb = _photo_crop(kodak_files)  # 40x52: padded to a multiple of 4 internally
    l_norm, ab = rgb_uint8_to_normalized_lab(rgb)
    hints = FixedHints(k=6, patch_size=3, location="uniform")(ab, torch.tensor([0]))
    direct = levin.levin_direct(l_norm, hints.ab, hints.mask)
    fast = levin.levin_colorize(l_norm, hints.ab, hints.mask, tol=1e-6)
    assert (fast - direct).abs().max() < 1e-3
    default = levin.levin_colorize(l_norm, hints.ab, hints.mask)
    assert (default - direct).abs().max() < 1e-2
    # the direct solution does solve the system; the fast one to its tolerance
    stencil = levin.levin_stencil(levin.levin_weights(levin.luma_from_l(l_norm)), hints.mask)
    b = hints.ab * hints.mask
    assert levin.relative_residual(stencil, b, direct) < 1e-5
    assert levin.relative_residual(stencil, b, fast) < 1e-5


def test_a_system_that_does_not_converge_falls_back_to_the_direct_solve(kodak_files) -> None:
    rgb = _photo_crop(kodak_files, 24, 24)
    l_norm, ab = rgb_uint8_to_normalized_lab(rgb)
    hints = FixedHints(k=3, patch_size=2, location="uniform")(ab, torch.tensor([0]))
    before = levin.stats["fallbacks"]
    out = levin.levin_colorize(l_norm, hints.ab, hints.mask, tol=1e-9, max_iter=1)
    assert levin.stats["fallbacks"] == before + 1
    direct = levin.levin_direct(l_norm, hints.ab, hints.mask)
    assert (out - direct).abs().max() < 1e-6
