"""Deep Residual U-Net (Zhang, Liu & Wang 2018, "Road Extraction by Deep Residual U-Net")."""

from __future__ import annotations

from collections.abc import Sequence
from itertools import pairwise

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .common import Backbone, crop_to, pad_to_multiple

__all__ = ["ResUNet"]


def _shortcut(in_channels: int, out_channels: int, stride: int) -> nn.Module:
    # Projection only where the identity would not match in shape.
    if in_channels == out_channels and stride == 1:
        return nn.Identity()
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
        nn.BatchNorm2d(out_channels),
    )


class ResidualStem(nn.Module):
    """First stage: Conv-BN-ReLU-Conv plus shortcut; no pre-activation on the raw input."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.act = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.shortcut = _shortcut(in_channels, out_channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        out = self.conv2(self.act(self.bn1(self.conv1(x))))
        return out + self.shortcut(x)


class PreActResidualUnit(nn.Module):
    """Pre-activation residual unit: (BN-ReLU-Conv3x3) x2 + (projection) shortcut.

    Downsampling, when requested, happens in the first convolution (the paper uses no pooling).
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.act = nn.ReLU(inplace=True)
        self.shortcut = _shortcut(in_channels, out_channels, stride)

    def forward(self, x: Tensor) -> Tensor:
        out = self.conv1(self.act(self.bn1(x)))
        out = self.conv2(self.act(self.bn2(out)))
        return out + self.shortcut(x)


class ResUNet(Backbone):
    """Residual U-Net mapping (L, hint a, hint b, hint mask) to normalised ab in (-1, 1).

    Encoder: stem at full resolution, then one stride-2 residual unit per further entry of
    ``widths``; a stride-2 bridge unit; a symmetric decoder (bilinear x2, concat skip, residual
    unit down to the skip width); 1x1 head + tanh. Defaults: ~8.2 M parameters (paper: 7.8 M).
    Features (:meth:`forward_features`): the last decoder unit's output, full resolution.
    """

    def __init__(
        self,
        in_channels: int = 4,
        out_channels: int = 2,
        widths: Sequence[int] = (64, 128, 256),
        bridge: int = 512,
    ) -> None:
        super().__init__()
        widths = tuple(int(w) for w in widths)  # also accepts Hydra ListConfig
        if not widths:
            raise ValueError("widths must contain at least one stage")
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.stride: int = 2 ** len(widths)
        self.feature_channels: int = widths[0]
        self.feature_stride: int = 1

        self.stem = ResidualStem(in_channels, widths[0])
        self.encoder = nn.ModuleList(
            PreActResidualUnit(c_in, c_out, stride=2) for c_in, c_out in pairwise(widths)
        )
        self.bridge = PreActResidualUnit(widths[-1], int(bridge), stride=2)

        decoder = []
        prev = int(bridge)
        for skip in reversed(widths):
            decoder.append(PreActResidualUnit(prev + skip, skip))
            prev = skip
        self.decoder = nn.ModuleList(decoder)
        self.head = nn.Conv2d(widths[0], out_channels, 1)

    def forward_features(self, x: Tensor) -> Tensor:
        x, _ = pad_to_multiple(x, self.stride)
        skips = [self.stem(x)]
        for unit in self.encoder:
            skips.append(unit(skips[-1]))
        x = self.bridge(skips[-1])
        for unit, skip in zip(self.decoder, reversed(skips), strict=True):
            x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            x = unit(torch.cat([x, skip], dim=1))
        return x

    def forward_output(self, features: Tensor, size: tuple[int, int]) -> Tensor:
        return crop_to(torch.tanh(self.head(features)), size)
