"""A colour-distribution head beside any network's ab regression (``color_head=default``).

:class:`ColorDistributionHead` holds the network (a backbone, or a hint prior wrapping one)
and a small head: 3x3 conv + ReLU + 1x1 conv to the gamut's bins
(:mod:`hintcolor.models.color_distribution`), at 1/4 resolution, on the backbone's last
feature map (average-pooled, or upsampled for the ViT's 1/16 tokens) together with the
network's own ab prediction and the input's L, both average-pooled. ``forward`` is the
network's own, so evaluation, colorize and the page run it unchanged;
:meth:`forward_with_distribution` gives ab and the bin logits in one pass of the network
(training, export).

Why ab and L too: with the hint prior, the network's ab is the interpolated hints plus the
backbone's correction, and the backbone's features carry the interpolation only indirectly.
Measured on the frozen shipped model (80 batches of the release data, features cached, 800
head steps, 10 validation batches): validation cross-entropy 2.68 nats from the features
alone, 2.57 with ab and L (width 128 instead of 64: 2.64; a second 3x3 layer on top of ab
and L: 2.52 for 2.3x the parameters); for scale, the soft targets' own entropy is 1.25, a
constant colour prior 3.26, uniform 5.57.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from hintcolor.models.color_distribution import DISTRIBUTION_STRIDE, ColorDistributionLoss


def quarter_size(n: int) -> int:
    """ceil(n / 4): the 1/4-resolution cells that overlap ``n`` pixels."""
    # (n + 3) // 4, not -(-n // 4): exported graphs divide integers towards zero
    return (n + DISTRIBUTION_STRIDE - 1) // DISTRIBUTION_STRIDE


class ColorDistributionHead(nn.Module):
    """``network`` + a head predicting the distribution of ab over the quantised gamut.

    ``network`` must offer ``forward_with_features`` and ``forward_features`` with
    ``feature_channels`` and ``feature_stride`` (every backbone here, and the hint prior
    wrapping one). ``width``: the head's hidden channels. ``grid``, ``neighbours``, ``sigma``,
    ``rebalance``, ``rebalance_lambda``, ``prior_sigma``: the bins, the soft encoding and the
    class rebalancing of :class:`ColorDistributionLoss` (held as :attr:`distribution`, so the
    running colour prior lives in the model's checkpoints).
    """

    def __init__(
        self,
        network: nn.Module,
        grid: float,
        width: int,
        neighbours: int,
        sigma: float,
        rebalance: bool,
        rebalance_lambda: float,
        prior_sigma: float,
    ) -> None:
        super().__init__()
        for needed in ("forward_with_features", "feature_channels", "feature_stride"):
            if not hasattr(network, needed):
                raise TypeError(
                    f"{type(network).__name__} has no {needed}: the colour-distribution head "
                    "needs a backbone split into forward_features / forward_output"
                )
        if width < 1:
            raise ValueError(f"color_head.width must be >= 1, got {width}")
        self.network = network
        self.stride: int = network.stride
        self.feature_stride = int(network.feature_stride)
        self.distribution = ColorDistributionLoss(
            grid, neighbours, sigma, rebalance, rebalance_lambda, prior_sigma
        )
        # features + the network's ab (2) + L (1)
        self.hidden = nn.Conv2d(network.feature_channels + 3, width, 3, padding=1)
        self.classifier = nn.Conv2d(width, self.distribution.num_bins, 1)

    @property
    def bins(self) -> Tensor:
        """(Q, 2) the bins' (a*, b*) in Lab units."""
        return self.distribution.bins

    def forward(self, x: Tensor) -> Tensor:
        """The network's ab, exactly as without the head."""
        return self.network(x)

    def forward_with_distribution(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(ab (B, 2, H, W), bin logits (B, Q, ceil(H/4), ceil(W/4))) in one pass."""
        ab, features = self.network.forward_with_features(x)
        return ab, self.classifier(F.relu(self.hidden(self.head_input(x, ab, features))))

    def head_input(self, x: Tensor, ab: Tensor, features: Tensor) -> Tensor:
        """(B, feature_channels + 3, ceil(H/4), ceil(W/4)): the features, the network's ab
        and the input's L at 1/4 resolution (border cells average the real pixels only)."""
        rows, cols = quarter_size(x.shape[-2]), quarter_size(x.shape[-1])
        features = self.quarter_features(features)[..., :rows, :cols]
        # ab is information for the head, not something its loss may pull on: detached
        pixels = torch.cat([ab.detach().to(features.dtype), x[:, :1].to(features.dtype)], dim=1)
        pooled = F.avg_pool2d(pixels, DISTRIBUTION_STRIDE, ceil_mode=True)
        return torch.cat([features, pooled], dim=1)

    def quarter_features(self, features: Tensor) -> Tensor:
        """The network's features at 1/4 of the (padded) input resolution."""
        s = self.feature_stride
        if s == DISTRIBUTION_STRIDE:
            return features
        if DISTRIBUTION_STRIDE % s == 0:  # finer: average every (4/s)^2 cells
            return F.avg_pool2d(features, DISTRIBUTION_STRIDE // s, ceil_mode=True)
        # coarser (ViT tokens): bilinear to the 1/4 grid, then the 3x3 conv refines
        size = (quarter_size(features.shape[-2] * s), quarter_size(features.shape[-1] * s))
        return F.interpolate(features, size=size, mode="bilinear", align_corners=False)

    def window_logits(self, inputs: Tensor, top: int, left: int, rows: int, cols: int) -> Tensor:
        """Logits of the ``rows`` x ``cols`` cells from (``top``, ``left``) of the 1/4 map,
        from :meth:`head_input`'s ``inputs`` of those cells' 3x3 neighbourhoods only (the same
        numbers as the full map's, a fraction of its cost: what a suggestion at one point
        needs)."""
        # the 3x3 conv's zero padding, made explicit so the window can be cut first
        window = F.pad(inputs, (1, 1, 1, 1))[..., top : top + rows + 2, left : left + cols + 2]
        hidden = F.conv2d(window, self.hidden.weight, self.hidden.bias)
        return self.classifier(F.relu(hidden))

    def distribution_loss(self, logits: Tensor, target_ab: Tensor, update_prior: bool) -> Tensor:
        """Cross-entropy of ``logits`` against soft-encoded normalised ``target_ab``."""
        return self.distribution(logits, target_ab, update_prior=update_prior)
