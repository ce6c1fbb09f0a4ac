"""Colour suggestions from the colour-distribution head: ranking, gamut, the starting swatch."""

from __future__ import annotations

import math
import re

import pytest
import torch
import torch.nn.functional as F
from conftest import color_head
from kornia.color import lab_to_rgb

from hintcolor.models.backbones import ResUNet
from hintcolor.models.color_distribution import ab_gamut_bins
from hintcolor.models.hint_prior import PushPullResidual
from hintcolor.suggestions import (
    VIVID_CHROMA,
    Suggestion,
    has_color_distribution,
    in_srgb,
    point_distribution,
    rank_suggestions,
    starting_index,
    suggest_colors,
)

BINS = ab_gamut_bins(10.0)
HEX = re.compile(r"^#[0-9a-f]{6}$")


def _bin(a: float, b: float) -> int:
    return int(((BINS - torch.tensor([a, b])).abs().sum(1) == 0).nonzero())


def _distribution(masses: dict[tuple[float, float], float]) -> torch.Tensor:
    p = torch.zeros(len(BINS))
    for (a, b), mass in masses.items():
        p[_bin(a, b)] = mass
    return p


def _network(logits: torch.Tensor | None = None, seed: int = 0) -> torch.nn.Module:
    """A tiny head model; with ``logits`` its distribution is those logits everywhere."""
    torch.manual_seed(seed)
    net = color_head(PushPullResidual(ResUNet(in_channels=6, widths=(8, 16), bridge=16)), width=8)
    if logits is not None:
        with torch.no_grad():
            net.classifier.weight.zero_()
            net.classifier.bias.copy_(logits)
    return net.eval()


def _input(h: int = 43, w: int = 64, lightness: float = 55.0) -> torch.Tensor:
    x = torch.zeros(1, 4, h, w)
    x[:, 0] = (lightness - 50) / 100 + 0.1 * torch.linspace(-1, 1, w)  # some structure
    x[:, 1:3, 10:14, 20:24] = torch.tensor([0.3, 0.2]).view(1, 2, 1, 1)
    x[:, 3, 10:14, 20:24] = 1
    return x


def test_suggestions_are_sorted_in_gamut_valid_colours_of_the_distribution() -> None:
    logits = torch.randn(len(BINS), generator=torch.Generator().manual_seed(3)) * 3
    net = _network(logits)
    x = _input()
    suggestions, start = suggest_colors(net, x, 30, 20, count=8)
    assert has_color_distribution(net)
    assert len(suggestions) == 8 and 0 <= start < 8
    probs = [s.probability for s in suggestions]
    assert probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1 + 1e-6
    lightness = float(x[0, 0, 20, 30]) * 100 + 50
    for s in suggestions:
        assert HEX.match(s.color), s
        lab = torch.tensor([lightness, *s.ab]).view(1, 3, 1, 1)
        assert in_srgb(lab_to_rgb(lab, clip=False).view(1, 3)).all(), s
        rgb = lab_to_rgb(lab, clip=True).flatten()
        assert s.color == "#" + "".join(f"{round(float(c) * 255):02x}" for c in rgb)
    # the top suggestion holds at least the mass of the most probable in-gamut bin
    lab = torch.cat([torch.full((len(BINS), 1), lightness), BINS], 1).T.reshape(1, 3, -1, 1)
    in_gamut = in_srgb(lab_to_rgb(lab, clip=False)[0, :, :, 0].T)
    assert suggestions[0].probability >= logits.softmax(0)[in_gamut].max().item() - 1e-6
    assert not in_gamut.all()  # some bins were dropped at this lightness
    # stopping once no further group can enter the top ones changes nothing
    probs = point_distribution(net, x, 30, 20)
    many = rank_suggestions(probs, BINS, lightness, 40, merge_radius=10 * math.sqrt(2))
    assert rank_suggestions(probs, BINS, lightness, 3, merge_radius=10 * math.sqrt(2)) == many[:3]


def test_point_distribution_is_the_heads_map_read_bilinearly() -> None:
    net = _network(seed=1)  # random head weights: the distribution varies over the image
    x = _input(37, 50)
    with torch.no_grad():
        _, logits = net.forward_with_distribution(x)
        full = F.interpolate(logits.softmax(1), scale_factor=4, mode="bilinear")
        for px, py in ((0, 0), (49, 36), (17, 9), (30, 22), (2, 35)):
            got = point_distribution(net, x, px, py)
            torch.testing.assert_close(got, full[0, :, py, px], rtol=1e-4, atol=1e-6)
            assert got.sum().item() == pytest.approx(1.0, abs=1e-5)


def test_adjacent_bins_merge_and_out_of_gamut_bins_are_dropped() -> None:
    # a blue mode spread over 3 adjacent bins, an orange one, a little gray
    blue = {(0, -40): 0.3, (10, -40): 0.15, (0, -30): 0.1}
    p = _distribution({**blue, (30, 60): 0.25, (0, 0): 0.05})
    s = rank_suggestions(p, BINS, 60.0, count=8, merge_radius=10 * math.sqrt(2))
    assert [round(x.probability, 6) for x in s[:3]] == [0.55, 0.25, 0.05]
    mean = ((10 * 0.15) / 0.55, (-40 * 0.45 - 30 * 0.1) / 0.55)  # probability-weighted
    assert s[0].ab == pytest.approx(mean)
    assert len(s) == 8 and all(x.probability == 0 for x in s[3:])  # the rest: empty bins
    # at L = 95 a saturated blue is outside sRGB: its bins go, the mass is not re-assigned
    bright = rank_suggestions(
        _distribution({(70, -100): 0.6, (0, 10): 0.4}), BINS, 95.0, 3, merge_radius=14.2
    )
    assert bright[0].ab == (0.0, 10.0) and bright[0].probability == pytest.approx(0.4)
    assert all(x.ab != (70.0, -100.0) for x in bright)
    # black and white still get a (gray) suggestion
    for lightness in (0.0, 100.0):
        (only,) = rank_suggestions(_distribution({(0, 0): 1.0}), BINS, lightness, 1, 14.2)
        assert only.color == ("#000000" if lightness == 0 else "#ffffff")


def _s(a: float, b: float, p: float) -> Suggestion:
    return Suggestion(color="#808080", ab=(a, b), probability=p)


def test_the_hint_starts_at_the_most_likely_vivid_suggestion_unless_it_is_negligible() -> None:
    gray, tinted = _s(0, 0, 0.5), _s(10, 10, 0.2)  # chroma 0 and 14.1: not vivid
    assert math.hypot(*tinted.ab) < VIVID_CHROMA <= math.hypot(0, 20)
    assert starting_index([gray, tinted, _s(0, -30, 0.15), _s(40, 40, 0.14)]) == 2
    assert starting_index([gray, _s(0, -30, 0.1)]) == 0  # 0.1 < 0.25 x 0.5: negligible
    assert starting_index([_s(30, 20, 0.4), _s(0, -30, 0.3)]) == 0  # the top is vivid
    assert starting_index([gray, tinted]) == 0  # nothing vivid
    assert starting_index([]) == 0
    # from the network: a gray top with a strong blue alternative starts at the blue
    logits = torch.full((len(BINS),), -20.0)
    logits[_bin(0, 0)], logits[_bin(0, -40)] = 2.0, 1.5
    suggestions, start = suggest_colors(_network(logits), _input(), 10, 30, count=6)
    assert suggestions[0].ab == pytest.approx((0.0, 0.0), abs=1e-3)
    assert suggestions[start].ab == pytest.approx((0.0, -40.0), abs=1e-3) and start == 1


def test_no_head_or_a_point_outside_is_a_clear_error() -> None:
    plain = PushPullResidual(ResUNet(in_channels=6, widths=(8, 16), bridge=16))
    assert not has_color_distribution(plain)
    with pytest.raises(ValueError, match="no colour-distribution head"):
        suggest_colors(plain, _input(), 1, 1)
    with pytest.raises(ValueError, match="outside"):
        suggest_colors(_network(), _input(43, 64), 64, 0)
    with pytest.raises(ValueError, match=r"\(1, 4, h, w\)"):
        suggest_colors(_network(), _input()[:, :3], 0, 0)


def test_bf16_gives_the_same_top_suggestions() -> None:
    net = _network(torch.randn(len(BINS), generator=torch.Generator().manual_seed(5)) * 3)
    fp32, _ = suggest_colors(net, _input(), 40, 12, count=3)
    bf16, _ = suggest_colors(net, _input(), 40, 12, count=3, bf16=True)
    for a, b in zip(bf16, fp32, strict=True):  # bf16 logits: means move a fraction of a unit
        assert a.ab == pytest.approx(b.ab, abs=0.5)
        assert a.probability == pytest.approx(b.probability, abs=0.02)
