"""Non-learned references that every evaluation reports beside the model."""

from __future__ import annotations

import torch
from torch import Tensor

from hintcolor.data.hints import Hints
from hintcolor.levin import levin_colorize


def gray_baseline(l_norm: Tensor) -> Tensor:
    """ab = 0 everywhere: the grayscale image itself."""
    b, _, h, w = l_norm.shape
    return l_norm.new_zeros(b, 2, h, w)


def idw_baseline(hints: Hints, shape: tuple[int, int, int, int], power: float = 2.0) -> Tensor:
    """Inverse-distance-weighted interpolation of the hint colours (Shepard's method).

    Each pixel gets sum_i w_i c_i / sum_i w_i with w_i = 1 / d_i^power, d_i the distance to
    hint i's patch centre; hinted pixels keep their hint colour. No hints: ab = 0.
    Written out rather than taken from scipy because it runs batched on torch tensors,
    on whatever device the hints live.
    """
    b, _, h, w = shape
    device = hints.ab.device
    out = torch.zeros(b, 2, h, w, device=device)
    ys = torch.arange(h, device=device, dtype=torch.float32)
    xs = torch.arange(w, device=device, dtype=torch.float32)
    for i in range(b):
        mine = hints.centers[:, 0] == i
        if not bool(mine.any()):
            continue
        centers = hints.centers[mine, 1:].float()
        colors = hints.colors[mine].float()
        # squared distances as (y part) + (x part): H*N + W*N subtractions instead of H*W*N,
        # and for the usual power 2 a reciprocal rather than a square root and a power
        dist2 = (ys[:, None] - centers[:, 0]).square()[:, None, :]
        dist2 = (dist2 + (xs[:, None] - centers[:, 1]).square()[None]).clamp_min(1e-6)
        weights = dist2.reciprocal_() if power == 2.0 else dist2.pow_(-power / 2)
        weights = weights.reshape(h * w, -1)  # (HW, N)
        ab = (weights @ colors) / weights.sum(dim=1, keepdim=True)
        out[i] = ab.T.reshape(2, h, w)
    mask = hints.mask.bool().expand_as(out)
    return torch.where(mask, hints.ab.float(), out)


def levin_baseline(l_norm: Tensor, hints: Hints, weights: Tensor | None = None) -> Tensor:
    """Levin et al. 2004, "Colorization using Optimization": neighbours of similar intensity
    get similar colours (see :mod:`hintcolor.levin`). ``weights``: the images'
    :func:`~hintcolor.levin.levin_weights`, to reuse them across hint counts."""
    return levin_colorize(l_norm, hints.ab, hints.mask, weights=weights)
