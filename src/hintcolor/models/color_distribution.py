"""Colour as a distribution over the quantised ab gamut (Zhang, Isola & Efros 2016, "Colorful
Image Colorization"; used as the side output of Zhang et al. 2017).

- **Gamut**: the ab plane on a grid (10 Lab units), keeping the bins that some sRGB colour
  quantises to (:func:`ab_gamut_bins`).
- **Soft encoding**: a target ab becomes a distribution over its 5 nearest bins, weighted by a
  Gaussian of sigma 5 Lab units (:func:`soft_encode`).
- **Class rebalancing** (optional): each pixel's cross-entropy is weighted by
  ``1 / ((1 - lambda) p~ + lambda / Q)`` of its nearest bin, ``p~`` the Gaussian-smoothed
  empirical colour prior, normalised so the weight's mean under ``p~`` is 1
  (:func:`rebalance_weights`). The prior is a running histogram of the training targets,
  kept in a persistent buffer: no extra pass over the data, and checkpoints keep it.
- **Loss** (:class:`ColorDistributionLoss`): that (weighted) cross-entropy between predicted
  logits and the soft targets, at 1/4 resolution (targets average-pooled x4 first), as Zhang
  et al. compute the distribution at 1/4 of the input size.

Everything here works in Lab units (a*, b*); the network's normalised ab is ``ab / 110``
(:mod:`hintcolor.data.color`).
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from hintcolor.data.color import AB_SCALE, rgb_to_lab

# the distribution is predicted at 1/4 of the input resolution (Zhang et al. 2016, 2017)
DISTRIBUTION_STRIDE = 4


@functools.lru_cache(maxsize=4)
def _gamut_bins(grid: float) -> Tensor:
    # Every ab of the sRGB gamut (over all L) is the projection of a point of the RGB cube's
    # surface (a line along L through it enters and leaves the solid through the surface), so
    # the surface suffices; its edges, where the most saturated colours lie, are sampled much
    # more densely, so a bin the gamut only grazes is found whatever the face density.
    # Measured (grid 10): faces at 32 x 32 + edges at 1024 points give 262 bins, the same as
    # faces at 128 x 128 + edges at 262,144 points. A dense L x a x b grid checked with
    # lab_to_rgb finds 257 (1-unit steps) or 260 (0.5-unit steps): it misses grazed cells.
    # Zhang et al. keep 313 bins at grid 10: more than sRGB reaches with the standard D65
    # conversion (the convex hull of the sRGB ab projection covers only ~231 bins of area), so
    # their set includes ~50 bins no sRGB colour quantises to; ours holds only reachable ones.
    v = torch.linspace(0.0, 1.0, 32, dtype=torch.float64)
    u, w = (t.flatten() for t in torch.meshgrid(v, v, indexing="ij"))
    t = torch.linspace(0.0, 1.0, 1024, dtype=torch.float64)
    points = []
    for axis in range(3):
        for value in (0.0, 1.0):  # the two faces across this axis
            face = [u, w]
            face.insert(axis, torch.full_like(u, value))
            points.append(torch.stack(face))
        for a in (0.0, 1.0):  # the four edges along this axis
            for b in (0.0, 1.0):
                edge = [torch.full_like(t, a), torch.full_like(t, b)]
                edge.insert(axis, t)
                points.append(torch.stack(edge))
    rgb = torch.cat(points, dim=1).float()  # (3, N)
    ab = rgb_to_lab(rgb.view(1, 3, -1, 1))[0, 1:, :, 0].T  # (N, 2)
    cells = torch.unique(torch.round(ab / grid).long(), dim=0)  # sorted by a, then b
    return cells.float() * grid


def ab_gamut_bins(grid: float = 10.0) -> Tensor:
    """(Q, 2) centres (a*, b*) of the ab bins on a ``grid`` that some sRGB colour quantises
    to (its nearest grid point); 262 for grid 10. Sorted by a*, then b*; computed once."""
    if grid <= 0:
        raise ValueError(f"grid must be > 0 Lab units, got {grid}")
    return _gamut_bins(float(grid)).clone()


def soft_encode(ab: Tensor, bins: Tensor, neighbours: int, sigma: float) -> tuple[Tensor, Tensor]:
    """Soft-encode ab (B, 2, H, W, Lab units) on ``bins`` (Q, 2): the ``neighbours`` nearest
    bins of every pixel, nearest first, and Gaussian weights (``sigma``, Lab units) that sum
    to 1. Returns (index (B, k, H, W) long, weight (B, k, H, W) float32)."""
    b, _, h, w = ab.shape
    flat = ab.float().permute(0, 2, 3, 1).reshape(-1, 2)
    # |x - c|^2 = |x|^2 - 2 x.c + |c|^2 : one matrix product, no (N, Q, 2) difference tensor
    dist2 = (flat.square().sum(1, keepdim=True) - 2 * flat @ bins.T + bins.square().sum(1)).clamp(
        min=0
    )
    nearest, index = dist2.topk(neighbours, dim=1, largest=False)  # sorted: nearest first
    # softmax of -d^2 / (2 sigma^2) = Gaussian weights normalised, stable far from every bin
    weight = torch.softmax(-nearest / (2 * sigma**2), dim=1)
    shape = (b, h, w, neighbours)
    return (
        index.view(shape).permute(0, 3, 1, 2),
        weight.view(shape).permute(0, 3, 1, 2),
    )


def dense_distribution(index: Tensor, weight: Tensor, num_bins: int) -> Tensor:
    """The soft encoding as a (B, Q, H, W) distribution (zeros outside the nearest bins)."""
    b, _, h, w = index.shape
    out = torch.zeros(b, num_bins, h, w, dtype=weight.dtype, device=weight.device)
    return out.scatter_(1, index, weight)


def gaussian_smoothing(bins: Tensor, sigma: float) -> Tensor:
    """(Q, Q) column-normalised Gaussian kernel between bin centres: ``K @ p`` smooths a
    distribution ``p`` over the bins in the ab plane and keeps its sum."""
    dist2 = torch.cdist(bins.double(), bins.double()).square()
    kernel = torch.exp(-dist2 / (2 * sigma**2))
    return (kernel / kernel.sum(0, keepdim=True)).to(bins.dtype)


def rebalance_weights(prior: Tensor, smoothing: Tensor, rebalance_lambda: float) -> Tensor:
    """(Q,) per-bin loss weights ``1 / ((1 - lambda) p~ + lambda / Q)``, ``p~`` the smoothed
    ``prior``; scaled so that their mean under ``p~`` is 1 (Zhang et al. 2016, eq. 4)."""
    smoothed = smoothing @ (prior / prior.sum().clamp(min=1e-12))
    weights = 1.0 / ((1 - rebalance_lambda) * smoothed + rebalance_lambda / prior.numel())
    return weights / (smoothed * weights).sum()


class ColorDistributionLoss(nn.Module):
    """Cross-entropy between predicted bin logits and soft-encoded targets at 1/4 resolution.

    Buffers: ``bins`` (Q, 2) Lab (rebuilt from ``grid``, not stored), ``prior`` (Q,) the
    running mean of the training targets' soft encodings and ``prior_pixels`` (int64, how many
    target pixels it averages), both stored in checkpoints. The prior is a mean rather than
    counts so that float16 packing (``scripts/release_model.py``) cannot overflow it.
    """

    def __init__(
        self,
        grid: float,
        neighbours: int,
        sigma: float,
        rebalance: bool,
        rebalance_lambda: float,
        prior_sigma: float,
    ) -> None:
        super().__init__()
        if not 0 <= rebalance_lambda <= 1:
            raise ValueError(f"rebalance_lambda must be in [0, 1], got {rebalance_lambda}")
        bins = ab_gamut_bins(grid)
        if not 1 <= neighbours <= len(bins):
            raise ValueError(f"neighbours must be in 1..{len(bins)}, got {neighbours}")
        if sigma <= 0 or prior_sigma <= 0:
            raise ValueError(f"sigma and prior_sigma must be > 0, got {sigma}, {prior_sigma}")
        self.grid = float(grid)
        self.neighbours = int(neighbours)
        self.sigma = float(sigma)
        self.rebalance = bool(rebalance)
        self.rebalance_lambda = float(rebalance_lambda)
        self.register_buffer("bins", bins, persistent=False)
        self.register_buffer("smoothing", gaussian_smoothing(bins, prior_sigma), persistent=False)
        self.register_buffer("prior", torch.zeros(len(bins)))
        self.register_buffer("prior_pixels", torch.zeros((), dtype=torch.long))

    @property
    def num_bins(self) -> int:
        return self.bins.shape[0]

    def encode(self, ab_norm: Tensor) -> tuple[Tensor, Tensor]:
        """Soft encoding of normalised ab (B, 2, H, W) at 1/4 resolution (ceil: every 4x4
        cell that overlaps the image, border cells averaging only their real pixels)."""
        quarter = F.avg_pool2d(ab_norm.float(), DISTRIBUTION_STRIDE, ceil_mode=True)
        return soft_encode(quarter * AB_SCALE, self.bins, self.neighbours, self.sigma)

    @torch.no_grad()
    def update_prior(self, index: Tensor, weight: Tensor) -> None:
        """Fold a batch's soft targets into the running mean ``prior``."""
        batch = torch.zeros_like(self.prior).index_add_(0, index.flatten(), weight.flatten())
        pixels = index.shape[0] * index.shape[2] * index.shape[3]
        total = self.prior_pixels + pixels
        self.prior.add_((batch / pixels - self.prior) * (pixels / total))
        self.prior_pixels.copy_(total)

    def class_weights(self) -> Tensor:
        """(Q,) loss weights of the bins: rebalancing's, or ones (also before any prior)."""
        if not self.rebalance or int(self.prior_pixels) == 0:
            return torch.ones_like(self.prior)
        return rebalance_weights(self.prior, self.smoothing, self.rebalance_lambda)

    def forward(self, logits: Tensor, target_ab: Tensor, update_prior: bool = False) -> Tensor:
        """Mean (weighted) cross-entropy; ``logits`` (B, Q, ceil(H/4), ceil(W/4)), target
        normalised ab (B, 2, H, W). ``update_prior``: a training batch (folds into the prior
        first, so the first batch is already weighted by what it shows)."""
        with torch.autocast(logits.device.type, enabled=False):
            index, weight = self.encode(target_ab)
            if update_prior:
                self.update_prior(index, weight)
            log_probs = F.log_softmax(logits.float(), dim=1)
            cross_entropy = -(weight * log_probs.gather(1, index)).sum(1)  # (B, h, w)
            if self.rebalance:
                # the weight of the pixel's nearest bin (Zhang et al. 2016: of its argmax)
                cross_entropy = cross_entropy * self.class_weights()[index[:, 0]]
            return cross_entropy.mean()
