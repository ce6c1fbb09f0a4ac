import math

import pytest
import torch

from hintcolor.config import ParameterError
from hintcolor.data.hints import (
    DensityHints,
    FixedHints,
    Patches,
    UniformHints,
    Zhang17Hints,
    render_patches,
)


def _ab(b=2, h=48, w=64, seed=0):
    return torch.rand(b, 2, h, w, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def test_zhang17_count_follows_geometric_law():
    sim = Zhang17Hints(p=0.125)
    g = torch.Generator().manual_seed(1)
    counts = torch.tensor([sim.sample(64, 64, g).y.numel() for _ in range(6000)]).float()
    assert abs(counts.mean().item() - 7.0) < 0.4  # (1-p)/p
    for k in range(4):  # P(k) = (1-p)^k p
        expected = (1 - 0.125) ** k * 0.125
        assert abs((counts == k).float().mean().item() - expected) < 0.02


def test_zhang17_sizes_and_gaussian_locations():
    sim = Zhang17Hints(p=0.05, patch_sizes=[1, 3, 9])
    g = torch.Generator().manual_seed(2)
    patches = [sim.sample(100, 60, g) for _ in range(300)]
    sizes = torch.cat([p.size for p in patches])
    assert set(sizes.tolist()) == {1, 3, 9}
    ys = torch.cat([p.y for p in patches])
    xs = torch.cat([p.x for p in patches])
    assert (ys >= 0).all() and (ys + sizes <= 100).all()
    assert (xs >= 0).all() and (xs + sizes <= 60).all()
    centre_y = (ys + (sizes - 1) / 2).float()
    assert abs(centre_y.mean().item() - 50) < 2  # centred
    assert abs(centre_y.std().item() - 25) < 3  # std = a quarter of the side


def test_uniform_location_law_spreads_out():
    sim = Zhang17Hints(p=0.05, patch_sizes=[1], location="uniform")
    g = torch.Generator().manual_seed(3)
    ys = torch.cat([sim.sample(100, 100, g).y for _ in range(200)]).float()
    assert abs(ys.mean().item() - 49.5) < 3
    assert abs(ys.std().item() - 100 / math.sqrt(12)) < 3


def test_patch_colour_is_patch_mean_and_mask_exact():
    ab = _ab(1)
    patches = [Patches(torch.tensor([5]), torch.tensor([7]), torch.tensor([4]))]
    hints = render_patches(ab, patches)
    expected = ab[0, :, 5:9, 7:11].mean(dim=(1, 2))
    assert torch.allclose(hints.ab[0, :, 5:9, 7:11], expected[:, None, None].expand(2, 4, 4))
    mask = torch.zeros(1, 1, 48, 64)
    mask[0, 0, 5:9, 7:11] = 1
    assert torch.equal(hints.mask, mask)
    assert torch.equal(hints.ab * (1 - hints.mask), torch.zeros_like(ab))
    assert torch.allclose(hints.colors[0], expected)
    assert torch.allclose(hints.centers[0], torch.tensor([0.0, 6.5, 8.5]))


@pytest.mark.parametrize(
    "sim",
    [
        Zhang17Hints(p=0.05),
        DensityHints(rates=[0.01]),
        UniformHints(max_hints=40),
        FixedHints(k=12),
    ],
    ids=["zhang17", "density", "uniform", "fixed"],
)
def test_mask_is_exactly_the_union_of_patches(sim):
    ab = _ab(3)
    patches = [sim.sample(48, 64, sim.generator_for(i)) for i in range(3)]
    hints = render_patches(ab, patches)
    union = torch.zeros(3, 1, 48, 64)
    for i, p in enumerate(patches):
        for y, x, s in zip(p.y.tolist(), p.x.tolist(), p.size.tolist(), strict=True):
            union[i, 0, y : y + s, x : x + s] = 1
        assert hints.count(3)[i] == p.y.numel()
    assert torch.equal(hints.mask, union)
    for b, cy, cx in hints.centers.tolist():  # every hint centre lies in the mask
        assert hints.mask[int(b), 0, int(cy), int(cx)] == 1
    assert hints.mask.sum() > 0


def test_non_overlapping_patches_carry_their_mean():
    ab = _ab(1)
    sim = UniformHints(max_hints=60, cell=2)  # distinct cells never overlap
    p = sim.sample(48, 64, sim.generator_for(5))
    hints = render_patches(ab, [p])
    for y, x in zip(p.y.tolist(), p.x.tolist(), strict=True):
        assert y % 2 == 0 and x % 2 == 0
        mean = ab[0, :, y : y + 2, x : x + 2].mean(dim=(1, 2))
        assert torch.allclose(hints.ab[0, :, y, x], mean)


def test_density_reveals_each_pixel_with_probability_rho():
    ab = _ab(4, 128, 128)
    hints = DensityHints(rates=[0.03])(ab)
    assert abs(hints.mask.mean().item() - 0.03) < 0.004
    assert torch.equal(hints.ab, ab * hints.mask)  # 1x1 patches: the pixel's own colour


def test_uniform_count_law():
    sim = UniformHints(max_hints=10)
    g = torch.Generator().manual_seed(4)
    counts = torch.tensor([sim.sample(32, 32, g).y.numel() for _ in range(3000)])
    assert counts.min() == 0 and counts.max() == 10
    freq = torch.bincount(counts, minlength=11).float() / 3000
    assert (freq - 1 / 11).abs().max() < 0.025


def test_fixed_gives_exactly_k():
    hints = FixedHints(k=7, patch_size=6)(_ab(5), indices=range(5))
    assert hints.count(5).tolist() == [7] * 5


@pytest.mark.parametrize(
    "sim", [Zhang17Hints(p=0.05), DensityHints(), UniformHints(), FixedHints()]
)
def test_eval_hints_are_deterministic_per_image(sim):
    ab = _ab(4)
    first = sim(ab, indices=[0, 1, 2, 3])
    again = sim(ab, indices=[0, 1, 2, 3])
    assert torch.equal(first.mask, again.mask) and torch.equal(first.ab, again.ab)
    # the same image gets the same hints wherever it sits in a batch
    shuffled = sim(ab[[2, 0]], indices=[2, 0])
    assert torch.equal(shuffled.mask[0], first.mask[2]) and torch.equal(
        shuffled.mask[1], first.mask[0]
    )
    # different images (indices) get different hints; training draws are fresh each time
    assert not torch.equal(first.mask[0], first.mask[1])
    torch.manual_seed(0)
    a, b = sim(ab), sim(ab)
    assert not torch.equal(a.mask, b.mask)


def test_seed_changes_eval_hints():
    ab = _ab(2)
    a = FixedHints(k=5, seed=0)(ab, indices=[0, 1])
    b = FixedHints(k=5, seed=1)(ab, indices=[0, 1])
    assert not torch.equal(a.mask, b.mask)


def test_bad_parameters_raise():
    with pytest.raises(ValueError):
        Zhang17Hints(p=0)
    with pytest.raises(ValueError):
        Zhang17Hints(patch_sizes=[])
    with pytest.raises(ValueError):
        DensityHints(rates=[1.5])
    with pytest.raises(ValueError, match="location"):
        FixedHints(k=1, location="nowhere")(_ab(1))


def test_no_hints_gives_empty_render():
    hints = Zhang17Hints(p=1.0)(_ab(2))
    assert hints.mask.sum() == 0 and hints.centers.shape == (0, 3)


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: Zhang17Hints(p=2), r"hints\.p must be in \(0, 1\] .*got 2$"),
        (lambda: Zhang17Hints(p="abc"), r"hints\.p must be in \(0, 1\]"),
        (lambda: Zhang17Hints(patch_sizes=[0, 3]), r"hints\.patch_sizes must be a non-empty"),
        (lambda: Zhang17Hints(max_hints=-1), r"hints\.max_hints must be an integer >= 0"),
        (lambda: Zhang17Hints(location="centre"), r"hints\.location must be 'gaussian' or"),
        (lambda: DensityHints(rates=[0.1, 1.5]), r"hints\.rates must be a non-empty list"),
        (lambda: UniformHints(cell=0), r"hints\.cell must be an integer >= 1, got 0"),
        (lambda: FixedHints(k=2.5), r"hints\.k must be an integer >= 0, got 2\.5"),
        (lambda: FixedHints(seed="x"), r"hints\.seed must be an integer"),
    ],
)
def test_bad_parameter_names_its_config_key(build, message):
    with pytest.raises(ParameterError, match=message) as info:
        build()
    assert info.value.under("eval_hints").args[0].startswith("eval_hints.")
