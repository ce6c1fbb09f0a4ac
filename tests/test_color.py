import torch

from hintcolor.data.color import (
    denormalize_lab,
    lab_to_rgb,
    normalize_lab,
    normalized_lab_to_rgb,
    rgb_to_lab,
    rgb_uint8_to_normalized_lab,
)


def test_rgb_lab_round_trip_below_1e_3():
    rgb = torch.rand(8, 3, 37, 53, generator=torch.Generator().manual_seed(0))
    assert (lab_to_rgb(rgb_to_lab(rgb)) - rgb).abs().max() < 1e-3


def test_known_colours():
    white = torch.ones(1, 3, 1, 1)
    lab = rgb_to_lab(white).flatten()
    assert abs(lab[0] - 100) < 1e-2 and lab[1:].abs().max() < 1e-2
    red = torch.tensor([1.0, 0.0, 0.0]).view(1, 3, 1, 1)
    lightness, a, b = rgb_to_lab(red).flatten().tolist()
    # CIE Lab of sRGB red (D65): L=53.24, a=80.09, b=67.20
    assert abs(lightness - 53.24) < 0.1 and abs(a - 80.09) < 0.2 and abs(b - 67.20) < 0.2


def test_normalisation_as_zhang17():
    lab = torch.tensor([100.0, 110.0, -55.0]).view(1, 3, 1, 1)
    l_norm, ab = normalize_lab(lab)
    assert torch.allclose(l_norm, torch.tensor(0.5))
    assert torch.allclose(ab.flatten(), torch.tensor([1.0, -0.5]))
    assert torch.allclose(denormalize_lab(l_norm, ab), lab)


def test_uint8_batch_pipeline_round_trip():
    rgb = torch.randint(0, 256, (2, 3, 16, 16), dtype=torch.uint8)
    l_norm, ab = rgb_uint8_to_normalized_lab(rgb)
    assert l_norm.shape == (2, 1, 16, 16) and ab.shape == (2, 2, 16, 16)
    back = normalized_lab_to_rgb(l_norm, ab)
    assert (back * 255 - rgb.float()).abs().max() < 0.5
