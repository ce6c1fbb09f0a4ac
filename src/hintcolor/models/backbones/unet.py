"""U-Net baseline (Ronneberger et al. 2015) with batch norm and same-padding convolutions."""

from __future__ import annotations

from itertools import pairwise

import torch
from torch import Tensor, nn

from .common import Backbone, crop_to, pad_to_multiple

__all__ = ["UNet"]


class DoubleConv(nn.Sequential):
    """(Conv3x3-BN-ReLU) x2; padding keeps the spatial size so skips need no cropping."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(
            nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        )


class Up(nn.Module):
    """x2 up-convolution halving the channels, concat with the skip, then DoubleConv."""

    def __init__(self, in_channels: int, out_channels: int, bilinear: bool = False) -> None:
        super().__init__()
        if bilinear:
            # Upsample + 1x1 conv: cheaper alternative to the transposed conv, no checkerboard.
            self.up: nn.Module = nn.Sequential(
                nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
                nn.Conv2d(in_channels, out_channels, 1),
            )
        else:
            self.up = nn.ConvTranspose2d(in_channels, out_channels, 2, stride=2)
        self.conv = DoubleConv(2 * out_channels, out_channels)

    def forward(self, x: Tensor, skip: Tensor) -> Tensor:
        return self.conv(torch.cat([self.up(x), skip], dim=1))


class UNet(Backbone):
    """U-Net mapping (L, hint a, hint b, hint mask) to normalised ab in (-1, 1).

    ``depth`` max-pool downsamplings, widths ``base_width * 2**level``; defaults are the original
    64..1024 configuration (~31 M parameters). Features (:meth:`forward_features`): the last
    up block's output, full resolution.
    """

    def __init__(
        self,
        in_channels: int = 4,
        out_channels: int = 2,
        depth: int = 4,
        base_width: int = 64,
        bilinear: bool = False,
    ) -> None:
        super().__init__()
        if depth < 1:
            raise ValueError(f"depth must be >= 1, got {depth}")
        widths = [base_width * 2**i for i in range(depth + 1)]
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.stride: int = 2**depth
        self.feature_channels: int = widths[0]
        self.feature_stride: int = 1

        self.stem = DoubleConv(in_channels, widths[0])
        self.pool = nn.MaxPool2d(2)
        self.down = nn.ModuleList(DoubleConv(c_in, c_out) for c_in, c_out in pairwise(widths))
        self.up = nn.ModuleList(
            Up(c_in, c_out, bilinear)
            for c_in, c_out in zip(widths[:0:-1], widths[-2::-1], strict=True)
        )
        self.head = nn.Conv2d(widths[0], out_channels, 1)

    def forward_features(self, x: Tensor) -> Tensor:
        x, _ = pad_to_multiple(x, self.stride)
        skips = [self.stem(x)]
        for block in self.down:
            skips.append(block(self.pool(skips[-1])))
        x = skips.pop()
        for block in self.up:
            x = block(x, skips.pop())
        return x

    def forward_output(self, features: Tensor, size: tuple[int, int]) -> Tensor:
        return crop_to(torch.tanh(self.head(features)), size)
