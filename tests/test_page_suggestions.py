"""The colours the page offers a new hint: the model's colour distribution where it has a head,
and otherwise the predicted colour and a ladder of its hue (hintcolor.palette)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from conftest import KODAK, color_head
from kornia.color import lab_to_rgb
from PIL import Image
from test_page_speed import tiny_network

from hintcolor.inference import Colorizer
from hintcolor.palette import MIN_CHROMA_GAP, START_FRACTION, max_chroma, prediction_palette
from hintcolor.suggestions import suggest_colors
from hintcolor.user_hints import parse_hints


def srgb(lightness: float, ab: tuple[float, float]) -> np.ndarray:
    lab = torch.tensor([lightness, *ab]).view(3, 1, 1)
    return lab_to_rgb(lab, clip=False).flatten().numpy()


@pytest.mark.parametrize(
    ("lightness", "a", "b"),
    [(50, 3, 2), (57, 67, 60), (70, -20, 40), (35, -5, -30), (85, 0, 0), (20, 10, 1)],
)
def test_prediction_palette_is_the_prediction_then_its_hue_up_to_the_gamut(lightness, a, b):
    colours, start = prediction_palette(lightness, a, b, count=8)
    assert 1 <= len(colours) <= 8 and 0 <= start < len(colours)
    chroma = [math.hypot(*ab) for _, ab in colours]
    hue = math.atan2(b, a) if math.hypot(a, b) >= 1 else math.radians(60)
    edge = max_chroma(lightness, hue)
    assert chroma[0] == pytest.approx(min(math.hypot(a, b), edge), abs=0.02)  # the prediction
    assert chroma[1:] == sorted(chroma[1:])
    # the ladder ends at the edge, unless the prediction is (nearly) there already
    assert max(chroma) == pytest.approx(edge, abs=MIN_CHROMA_GAP)
    for hex_color, ab in colours:
        rgb = srgb(lightness, ab)
        assert rgb.min() > -1e-3 and rgb.max() < 1 + 1e-3  # shown as chosen, not clipped
        assert hex_color == "#" + "".join(f"{round(float(v) * 255):02x}" for v in rgb.clip(0, 1))
        if math.hypot(*ab) > 0.5:
            assert abs(math.remainder(math.atan2(ab[1], ab[0]) - hue, math.tau)) < 0.01
    # a new hint starts clearly coloured: at the prediction if it is vivid, else up the ladder
    assert chroma[start] >= min(START_FRACTION * edge, chroma[0]) - 0.01
    if chroma[0] < START_FRACTION * edge:
        assert start > 0 and chroma[start] >= START_FRACTION * edge - 0.01
        assert chroma[start] >= 20  # mid lightness: far from gray


def test_max_chroma_is_the_edge_of_the_gamut() -> None:
    for lightness, hue in ((50, 0.7), (30, -1.6), (90, 1.8), (60, 3.0)):
        edge = max_chroma(lightness, hue)
        inside = srgb(lightness, (edge * math.cos(hue), edge * math.sin(hue)))
        outside = srgb(lightness, ((edge + 1) * math.cos(hue), (edge + 1) * math.sin(hue)))
        assert inside.min() > -1e-3 and inside.max() < 1 + 1e-3
        assert outside.min() < 0 or outside.max() > 1
    assert max_chroma(100, 0.5) < 1  # white: nothing but gray


def test_prediction_palette_edge_cases() -> None:
    colours, start = prediction_palette(100.0, 0.0, 0.0)
    assert colours == [("#ffffff", (0.0, 0.0))] and start == 0
    assert len(prediction_palette(50, 5, 5, count=1)[0]) == 1
    assert len(prediction_palette(50, 5, 5, count=4)[0]) <= 4
    with pytest.raises(ValueError, match="count"):
        prediction_palette(50, 0, 0, count=0)


@pytest.fixture(scope="module")
def photo_rgb() -> np.ndarray:
    return np.asarray(Image.open(sorted((KODAK / "val").glob("*.jpg"))[0]).convert("RGB"))


def test_colorizer_suggest_without_a_head_reads_the_prediction(photo_rgb) -> None:
    colorizer = Colorizer(tiny_network(), working_size=96, precision="32-true")
    photo = colorizer.prepare(photo_rgb)
    hints = parse_hints([{"x": 40, "y": 40, "color": "#2050d0", "size": 30}])
    colorizer.predict_ab(photo, hints)  # a settled preview of these hints: its prediction read
    found = colorizer.suggest(photo, hints, 300.0, 200.0)
    assert found.source == "prediction" and 6 <= len(found.colors) <= 8
    assert all(math.isnan(s.probability) for s in found.colors)
    # the first is the prediction at that pixel (the full working size), at its lightness
    l_small = photo.lightness[96]
    px, py = int(300 * 96 / 512), int(200 * l_small.shape[-2] / 341)
    assert found.lightness == pytest.approx(float(l_small[0, 0, py, px]) * 100 + 50)
    a, b = (colorizer.predict_ab(photo, hints)[0, :, py, px] * 110).tolist()
    edge = max_chroma(found.lightness, math.atan2(b, a))
    first = found.colors[0].ab
    assert math.hypot(*first) == pytest.approx(min(math.hypot(a, b), edge), abs=0.02)
    assert math.atan2(first[1], first[0]) == pytest.approx(math.atan2(b, a), abs=1e-3)
    palette, start = prediction_palette(found.lightness, a, b)
    assert [s.color for s in found.colors] == [hex_color for hex_color, _ in palette]
    assert found.start == start


def test_without_that_prediction_a_suggestion_reads_the_fast_one(photo_rgb) -> None:
    """A selected hint's suggestions are given the other hints, whose prediction is not the
    settled one: the fast one is enough for a palette and keeps the lane free for a drag."""
    colorizer = Colorizer(tiny_network(), working_size=96, interactive_size=48, precision="32-true")
    photo = colorizer.prepare(photo_rgb)
    colorizer.predict_ab(photo, [])  # settled with no hints; now the suggestion is given one
    hints = parse_hints([{"x": 40, "y": 40, "color": "#2050d0", "size": 30}])
    found = colorizer.suggest(photo, hints, 300.0, 200.0)
    px, py = int(300 * 96 / 512), int(200 * photo.lightness[96].shape[-2] / 341)
    a, b = (colorizer.predict_ab(photo, hints, fast=True)[0, :, py, px] * 110).tolist()
    assert found.colors == colorizer.suggest(photo, hints, 300.0, 200.0).colors
    assert math.atan2(*found.colors[0].ab[::-1]) == pytest.approx(math.atan2(b, a), abs=1e-3)


def test_colorizer_suggest_with_a_head_reads_the_distribution(photo_rgb) -> None:
    network = color_head(tiny_network(), width=8)
    colorizer = Colorizer(network, working_size=96, precision="32-true")
    photo = colorizer.prepare(photo_rgb)
    found = colorizer.suggest(photo, [], 100.0, 100.0, count=6)
    assert found.source == "distribution" and 1 <= len(found.colors) <= 6
    probabilities = [s.probability for s in found.colors]
    assert probabilities == sorted(probabilities, reverse=True) and sum(probabilities) <= 1 + 1e-6
    assert 0 <= found.start < len(found.colors)


def test_a_click_after_a_settled_preview_reads_its_distribution(photo_rgb) -> None:
    """The settled preview keeps the head's distribution; a new hint's suggestions read it at
    the point: the same as the head gives for that point on its own, without another pass."""
    network = color_head(tiny_network(), width=8)
    colorizer = Colorizer(network, working_size=96, interactive_size=48, precision="32-true")
    photo = colorizer.prepare(photo_rgb)
    hints = parse_hints([{"x": 40, "y": 40, "color": "#2050d0", "size": 30}])
    colorizer.predict_ab(photo, hints)  # the settled preview
    calls, trunk = [], network.network.forward_with_features
    network.network.forward_with_features = lambda x: calls.append(1) or trunk(x)
    for x, y in ((300.0, 200.0), (0.0, 0.0), (511.0, 340.0), (123.4, 56.7)):
        found = colorizer.suggest(photo, hints, x, y, count=6)
        px, py = int(x * 96 / 512), int(y * 64 / 341)
        alone, start = suggest_colors(network, colorizer.model_input(photo, hints)[0], px, py, 6)
        assert [s.color for s in found.colors] == [s.color for s in alone]
        assert [s.probability for s in found.colors] == pytest.approx(
            [s.probability for s in alone],
            abs=2e-3,  # kept as float16
        )
        assert found.start == start and found.source == "distribution"
    assert calls == [1] * 4  # only the suggest_colors calls above ran the network
