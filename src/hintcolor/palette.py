"""Colours to offer for a new hint when the model has no colour distribution to suggest from.

A regression model predicts the mean of the plausible colours, which is near gray wherever
several are plausible; a hint started there needs a trip to the colour picker every time. So
the page offers the predicted colour and a ladder of its hue at the pixel's lightness, from
pale to the most saturated one sRGB can show there, and starts the hint at a clearly coloured
one. (With a colour-distribution head, :mod:`hintcolor.suggestions` gives the
model's likeliest colours instead.)
"""

from __future__ import annotations

import math

import torch
from kornia.color import lab_to_rgb

# chroma (Lab units) searched for the edge of the gamut, in steps of CHROMA_STEP: no sRGB
# colour has a chroma above ~134 (blue at L* 32)
MAX_CHROMA = 140.0
CHROMA_STEP = 0.25
# a prediction below this chroma has no meaningful hue; it gets NEUTRAL_HUE (orange-brown,
# the hue of skin, wood and earth: the commonest colour of things a model is unsure about)
MIN_HUE_CHROMA = 1.0
NEUTRAL_HUE = math.radians(60.0)
# a new hint starts at this fraction of the hue's gamut edge, or at the prediction if that is
# more saturated: vivid, but not the garish edge itself
START_FRACTION = 0.6
# offered colours closer than this in chroma are the same colour to the eye
MIN_CHROMA_GAP = 3.0
GAMUT_TOLERANCE = 1e-4


def lab_to_hex(lightness: float, ab: list[tuple[float, float]]) -> list[str]:
    """``"#rrggbb"`` of each (a*, b*) at L* ``lightness`` (clipped to sRGB), in one conversion."""
    lab = torch.tensor([[lightness, a, b] for a, b in ab]).T[:, None, :]  # (3, 1, N)
    rgb = (lab_to_rgb(lab, clip=True)[:, 0].T * 255).round().int().tolist()
    return ["#" + "".join(f"{v:02x}" for v in colour) for colour in rgb]


def max_chroma(lightness: float, hue: float) -> float:
    """The largest chroma of hue ``hue`` (radians) at ``lightness`` that sRGB can show.

    Along a hue at a fixed lightness the gamut is one segment from gray outwards, so the edge
    is where the first out-of-gamut step begins.
    """
    chroma = torch.arange(0.0, MAX_CHROMA, CHROMA_STEP)
    lab = torch.stack(
        [torch.full_like(chroma, lightness), chroma * math.cos(hue), chroma * math.sin(hue)]
    )
    rgb = lab_to_rgb(lab[:, None, :], clip=False)[:, 0]  # (3, steps)
    inside = ((rgb >= -GAMUT_TOLERANCE) & (rgb <= 1 + GAMUT_TOLERANCE)).all(0)
    outside = (~inside).nonzero()
    return float(chroma[outside[0, 0] - 1]) if len(outside) and outside[0, 0] > 0 else 0.0


def prediction_palette(
    lightness: float, a: float, b: float, count: int = 8
) -> tuple[list[tuple[str, tuple[float, float]]], int]:
    """The predicted colour (a*, b*) at L* ``lightness``, then up to ``count`` - 1 versions of
    its hue from pale to the gamut's edge in even steps of chroma, as ``(hex, (a, b))``; and
    the index a new hint starts with: the first at least START_FRACTION of the way to the
    edge, or the prediction when it is that saturated already.
    """
    if count < 1:
        raise ValueError(f"count must be >= 1, got {count}")
    lightness = min(max(lightness, 0.0), 100.0)
    chroma = math.hypot(a, b)
    hue = math.atan2(b, a) if chroma >= MIN_HUE_CHROMA else NEUTRAL_HUE
    edge = max_chroma(lightness, hue)
    chroma = min(chroma, edge)  # a prediction outside the gamut shows as its edge anyway
    levels = [chroma]
    for k in range(1, count):
        level = edge * k / (count - 1)
        if all(abs(level - other) >= MIN_CHROMA_GAP for other in levels):
            levels.append(level)
    ab = [(round(c * math.cos(hue), 2), round(c * math.sin(hue), 2)) for c in levels]
    colours = list(zip(lab_to_hex(lightness, ab), ab, strict=True))
    if chroma >= START_FRACTION * edge:
        return colours, 0
    start = min(
        range(1, len(levels)),
        key=lambda i: (levels[i] < START_FRACTION * edge, levels[i]),
        default=0,
    )
    return colours, start
