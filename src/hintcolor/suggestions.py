"""Colour suggestions for one point of a photo, read from the colour-distribution head.

What ideepcolor's palette shows (Zhang et al. 2017): the colours the network finds likely at
the clicked point, most likely first, so a hint can start from a plausible colour instead of
the regression's near-gray mean. :func:`suggest_colors` runs the network's trunk once and
the head only on the 2x2 cells of the 1/4-resolution map around the point; the rest is pure
(:func:`rank_suggestions`, :func:`starting_index`) and tested on constructed distributions.
"""

from __future__ import annotations

import contextlib
import functools
import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from kornia.color import lab_to_rgb
from torch import Tensor, nn

from hintcolor.data.color import L_CENTER, L_SCALE
from hintcolor.models.color_distribution import DISTRIBUTION_STRIDE
from hintcolor.models.color_head import ColorDistributionHead, quarter_size

# "Vivid": chroma (|ab|, Lab units) of at least 15. On the 10-unit grid this leaves out the
# achromatic bin and its 8 neighbours (chroma 0, 10 and 14.1): the tinted grays that the
# regression's mean already gives, which is what a click should not start from.
VIVID_CHROMA = 15.0
# A vivid suggestion starts the hint if it holds at least a quarter of the top suggestion's
# probability: then the network sees it as a real alternative (a gray-or-colour point), not a
# tail colour; below that it is confident the point is gray (a road, a white wall).
VIVID_RATIO = 0.25
# RGB slack when testing a bin's colour for the gamut at the pixel's lightness: the
# achromatic bin at L = 100 converts to 1 + 1e-7
GAMUT_TOLERANCE = 1e-3


@dataclass(frozen=True)
class Suggestion:
    color: str  # "#rrggbb": the suggestion's ab at the pixel's lightness, in sRGB
    ab: tuple[float, float]  # CIE a*, b* (Lab units)
    probability: float


def has_color_distribution(network: nn.Module) -> bool:
    """Whether ``network`` (as :func:`hintcolor.checkpoints.load_backbone` returns it) has a
    colour-distribution head to suggest colours from."""
    return isinstance(network, ColorDistributionHead)


def suggest_colors(
    network: nn.Module,
    model_input: Tensor,
    x: int,
    y: int,
    count: int = 8,
    bf16: bool = False,
) -> tuple[list[Suggestion], int]:
    """The ``count`` most likely colours at pixel (``x``, ``y``) of ``model_input`` (1, 4, h, w)
    = normalised L, hint a, hint b, mask (what the page gives the network), most likely first,
    and the index of the one a new hint should start with (:func:`starting_index`).

    Bins whose colour is outside sRGB at the pixel's lightness are dropped; adjacent bins are
    merged into one suggestion (:func:`rank_suggestions`). Raises ValueError if the network
    has no colour-distribution head, or for a point outside the input.
    """
    if not has_color_distribution(network):
        raise ValueError(
            "this model has no colour-distribution head, so it cannot suggest colours "
            "(train one: python src/train.py experiment=release_head)"
        )
    if model_input.ndim != 4 or tuple(model_input.shape[:2]) != (1, 4):
        raise ValueError(f"model_input must be (1, 4, h, w), got {tuple(model_input.shape)}")
    h, w = model_input.shape[-2:]
    if not (0 <= x < w and 0 <= y < h):
        raise ValueError(f"point ({x}, {y}) is outside the {w}x{h} input")
    if count < 1:
        raise ValueError(f"count must be >= 1, got {count}")
    device = model_input.device.type
    autocast = torch.autocast(device, dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
    with torch.inference_mode(), autocast:
        probabilities = point_distribution(network, model_input, x, y)
    lightness = float(model_input[0, 0, y, x]) * L_SCALE + L_CENTER
    suggestions = rank_suggestions(
        probabilities.float().cpu(),
        network.bins.cpu(),
        lightness,
        count,
        merge_radius=network.distribution.grid * math.sqrt(2),
    )
    return suggestions, starting_index(suggestions)


def point_distribution(
    network: ColorDistributionHead, model_input: Tensor, x: int, y: int
) -> Tensor:
    """(Q,) probabilities of the bins at pixel (``x``, ``y``): the head's softmax at the 2x2
    cells of the 1/4-resolution map around it, interpolated bilinearly (cell ``i`` covers
    pixels ``4i .. 4i + 3``, as ``F.interpolate(scale_factor=4, mode="bilinear")`` reads it).
    Only those cells go through the head."""
    h, w = model_input.shape[-2:]
    rows, cols = quarter_size(h), quarter_size(w)
    ab, features = network.network.forward_with_features(model_input)
    inputs = network.head_input(model_input, ab, features)
    u = min(max((x + 0.5) / DISTRIBUTION_STRIDE - 0.5, 0.0), cols - 1)
    v = min(max((y + 0.5) / DISTRIBUTION_STRIDE - 0.5, 0.0), rows - 1)
    c0, r0 = int(u), int(v)
    c1, r1 = min(c0 + 1, cols - 1), min(r0 + 1, rows - 1)
    logits = network.window_logits(inputs, r0, c0, r1 - r0 + 1, c1 - c0 + 1)
    p = F.softmax(logits[0].float(), dim=0)  # (Q, 1 or 2, 1 or 2)
    fx, fy = u - c0, v - r0
    top = p[:, 0, 0] * (1 - fx) + p[:, 0, -1] * fx
    bottom = p[:, -1, 0] * (1 - fx) + p[:, -1, -1] * fx
    return top * (1 - fy) + bottom * fy


def _lab_to_srgb(lightness: float, ab: Tensor) -> Tensor:
    """(N, 3) sRGB, not clipped, of the (N, 2) ab at one lightness."""
    lab = torch.cat([torch.full_like(ab[:, :1], lightness), ab], dim=1)
    return lab_to_rgb(lab.T.reshape(1, 3, -1, 1), clip=False)[0, :, :, 0].T


def in_srgb(rgb: Tensor) -> Tensor:
    """(N,) whether each of the (N, 3) unclipped RGB colours is inside sRGB (with slack)."""
    return ((rgb >= -GAMUT_TOLERANCE) & (rgb <= 1 + GAMUT_TOLERANCE)).all(dim=1)


def _hex(rgb: Tensor) -> str:
    r, g, b = (round(float(c) * 255) for c in rgb.clamp(0, 1))
    return f"#{r:02x}{g:02x}{b:02x}"


@functools.lru_cache(maxsize=4)
def _neighbourhood_matrix(centres: bytes, count: int, radius: float) -> np.ndarray:
    points = np.frombuffer(centres, dtype=np.float64).reshape(count, 2)
    return np.linalg.norm(points[:, None] - points[None], axis=-1) <= radius + 1e-6


def _neighbourhoods(centres: np.ndarray, radius: float) -> np.ndarray:
    """(Q, Q) whether two bins are within ``radius`` (computed once per set of bins)."""
    return _neighbourhood_matrix(centres.tobytes(), len(centres), float(radius))


def rank_suggestions(
    probabilities: Tensor,
    bins: Tensor,
    lightness: float,
    count: int,
    merge_radius: float,
) -> list[Suggestion]:
    """The ``count`` most probable colours of a distribution over ``bins`` (Q, 2 Lab) at
    ``lightness`` (L*, 0..100), most probable first.

    Bins outside sRGB at that lightness are dropped. Then, greedily from the most probable
    bin, each takes the still-free bins within ``merge_radius`` (its 8 grid neighbours at
    ``grid * sqrt(2)``): a mode of the distribution spans several adjacent bins, and 8 shades
    of one blue would crowd out the alternatives. A suggestion's probability is its bins' sum
    (so the total is <= 1), its ab their probability-weighted mean (the peak bin's if the mean
    falls outside sRGB). ideepcolor clusters samples of the distribution with k-means to the
    same end; this is deterministic and takes about a millisecond.
    """
    lightness = min(max(lightness, 0.0), 100.0)
    in_gamut = in_srgb(_lab_to_srgb(lightness, bins)).numpy()
    p = probabilities.detach().double().cpu().numpy()
    centres = bins.double().numpy()
    near = _neighbourhoods(centres, merge_radius)
    free = in_gamut.copy()
    left = float(p[free].sum())  # the mass no group holds yet
    groups: list[tuple[float, np.ndarray]] = []
    for q in np.argsort(-p, kind="stable"):
        if not free[q]:
            continue
        if len(groups) >= count and left <= groups[count - 1][0]:
            # a later group holds at most `left`, and a tie sorts after the earlier groups:
            # none can enter the top `count`, so the rest need not be formed
            break
        members = free & near[q]
        free &= ~members
        mass = float(p[members].sum())
        left -= mass
        mean = (centres[members] * p[members, None]).sum(0) / mass if mass > 0 else centres[q]
        groups.append((mass, np.stack([mean, centres[q]])))
        groups.sort(key=lambda g: -g[0])  # stable: ties keep the order of their peaks
    chosen = groups[:count]
    if not chosen:
        return []
    candidates = torch.from_numpy(np.concatenate([g[1] for g in chosen])).float()  # mean, peak
    rgb = _lab_to_srgb(lightness, candidates).view(len(chosen), 2, 3)
    ab = candidates.view(len(chosen), 2, 2)
    out = []
    for i, (mass, _) in enumerate(chosen):
        j = 0 if bool(in_srgb(rgb[i, :1])) else 1  # the mean, else the peak bin
        out.append(
            Suggestion(
                color=_hex(rgb[i, j]),
                ab=(float(ab[i, j, 0]), float(ab[i, j, 1])),
                probability=mass,
            )
        )
    return out


def starting_index(
    suggestions: list[Suggestion],
    min_chroma: float = VIVID_CHROMA,
    min_ratio: float = VIVID_RATIO,
) -> int:
    """Index of the suggestion a new hint starts with: the most likely vivid one (chroma >=
    ``min_chroma``) if its probability is at least ``min_ratio`` times the top one's, else 0
    (``suggestions`` sorted, most likely first)."""
    for i, s in enumerate(suggestions):
        if math.hypot(*s.ab) >= min_chroma:
            return i if s.probability >= min_ratio * suggestions[0].probability else 0
    return 0
