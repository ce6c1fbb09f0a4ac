"""Shared helpers for the colorization backbones."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn


def pad_to_multiple(x: Tensor, multiple: int) -> tuple[Tensor, tuple[int, int]]:
    """Pad ``x`` (B, C, H, W) on the bottom/right so H and W are multiples of ``multiple``.

    Returns the padded tensor and the original (H, W) for :func:`crop_to`. Replicate padding is
    used because, unlike reflect, it works for any input size (including 1x1) and avoids the
    artificial zero border that constant padding would give the hint channels.
    """
    if multiple < 1:
        raise ValueError(f"multiple must be >= 1, got {multiple}")
    h, w = x.shape[-2:]
    pad_h = (-h) % multiple
    pad_w = (-w) % multiple
    if isinstance(h, int) and isinstance(w, int) and not (pad_h or pad_w):
        return x, (h, w)
    # sizes are symbolic while exporting (ONNX, dynamic H/W): always pad, or the graph would
    # keep whichever branch the example size took
    return F.pad(x, (0, pad_w, 0, pad_h), mode="replicate"), (h, w)


def crop_to(x: Tensor, size: tuple[int, int]) -> Tensor:
    """Crop ``x`` (..., H, W) to the top-left ``size`` = (H, W), undoing :func:`pad_to_multiple`."""
    h, w = size
    return x[..., :h, :w]


class Backbone(nn.Module):
    """A backbone split in two explicit halves, so a side head can share its features:
    :meth:`forward_features` (the input padded to :attr:`stride`, up to the last spatial
    feature map before the output layer) and :meth:`forward_output` (that layer, the tanh
    and the crop back to the input's size). ``forward`` is the two in a row.

    Subclasses set :attr:`stride`, :attr:`feature_channels` (the feature map's channels) and
    :attr:`feature_stride` (input pixels per feature cell, after padding).
    """

    stride: int
    feature_channels: int
    feature_stride: int

    def forward_features(self, x: Tensor) -> Tensor:
        """(B, C, H, W) -> (B, feature_channels, Hp / feature_stride, Wp / feature_stride),
        Hp, Wp the size padded to :attr:`stride`."""
        raise NotImplementedError

    def forward_output(self, features: Tensor, size: tuple[int, int]) -> Tensor:
        """Features -> (B, out_channels, H, W) in (-1, 1), ``size`` = (H, W) of the input."""
        raise NotImplementedError

    def forward_with_features(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(output, features) in one pass."""
        features = self.forward_features(x)
        return self.forward_output(features, (x.shape[-2], x.shape[-1])), features

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_output(self.forward_features(x), (x.shape[-2], x.shape[-1]))
