"""A download's full-resolution colour conversions (hintcolor.lab_tables) against the float
conversions every other part of the project uses (kornia's)."""

from __future__ import annotations

import numpy as np
import torch

from hintcolor import lab_tables
from hintcolor.data.color import normalized_lab_to_rgb, rgb_uint8_to_normalized_lab
from hintcolor.inference import to_tensor, to_uint8


def test_lightness_from_tables_is_the_float_conversion() -> None:
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (300, 400, 3), dtype=np.uint8)
    rgb[0, :256] = np.arange(256)[:, None]  # every gray
    expected, _ = rgb_uint8_to_normalized_lab(to_tensor(rgb))
    got = lab_tables.lightness(rgb)
    assert got.shape == expected.shape and got.dtype == torch.float32
    assert (got - expected).abs().max() < 1e-6


def test_srgb_from_tables_is_within_one_level_of_the_float_conversion() -> None:
    rng = np.random.default_rng(1)
    l_norm = torch.from_numpy(rng.uniform(-0.5, 0.5, (1, 1, 200, 300))).float()
    ab_norm = torch.from_numpy(rng.uniform(-1, 1, (1, 2, 200, 300))).float()  # out of gamut too
    ab_norm[..., :20, :] *= 0.05  # near gray, where the dark end of the sRGB curve is steepest
    expected = to_uint8(normalized_lab_to_rgb(l_norm, ab_norm)).astype(int)
    got = lab_tables.to_srgb8(l_norm, ab_norm)
    assert got.shape == expected.shape and got.dtype == np.uint8
    difference = np.abs(got.astype(int) - expected)
    assert difference.max() <= 1 and (difference > 0).mean() < 0.01
