"""Generator of Zhang et al. 2017, "Real-Time User-Guided Image Colorization with Learned Deep
Priors", following ``SIGGRAPHGenerator`` of the public colorization-pytorch code."""

from __future__ import annotations

from torch import Tensor, nn

from .common import Backbone, crop_to, pad_to_multiple

__all__ = ["SIGGRAPH17"]

NUM_AB_BINS = 529  # 23 x 23 quantised ab bins of the original classification head


def _conv_block(
    in_channels: int, out_channels: int, num_convs: int, dilation: int = 1, norm: bool = True
) -> nn.Sequential:
    """``num_convs`` x (Conv3x3-ReLU), then BN, as in the reference implementation."""
    layers: list[nn.Module] = []
    for i in range(num_convs):
        c_in = in_channels if i == 0 else out_channels
        layers += [
            nn.Conv2d(c_in, out_channels, 3, padding=dilation, dilation=dilation),
            nn.ReLU(inplace=True),
        ]
    if norm:
        layers.append(nn.BatchNorm2d(out_channels))
    return nn.Sequential(*layers)


def _upsample(in_channels: int, out_channels: int) -> nn.ConvTranspose2d:
    return nn.ConvTranspose2d(in_channels, out_channels, 4, stride=2, padding=1)


class SIGGRAPH17(Backbone):
    """User-guided colorization generator (input: L, hint a, hint b, hint mask).

    The encoder downsamples by taking every second pixel (no pooling / strided conv), the middle
    uses dilated convolutions, and the decoder uses transposed convolutions with convolutional
    shortcuts from the encoder, added rather than concatenated.

    ``classification_head`` adds the original 529-bin ab classifier on conv8's output. ``forward``
    always returns only the ab regression; use :meth:`forward_with_logits` to also get the logits
    (at 1/4 resolution). Unlike the reference, no ``detach`` separates the two heads.
    ``width_mult`` scales every width (not the bin count), e.g. for small CPU models.
    Features (:meth:`forward_features`): conv10's output, full resolution. The generic
    colour-distribution head (``color_head=default``) is the mechanism for new models; the
    529-bin ``class_head`` stays so that its checkpoints load.
    """

    def __init__(
        self,
        in_channels: int = 4,
        out_channels: int = 2,
        classification_head: bool = False,
        width_mult: float = 1.0,
    ) -> None:
        super().__init__()
        if width_mult <= 0:
            raise ValueError(f"width_mult must be > 0, got {width_mult}")
        c64, c128, c256, c512 = (max(1, round(c * width_mult)) for c in (64, 128, 256, 512))
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.stride: int = 8
        self.feature_channels: int = c128
        self.feature_stride: int = 1

        self.conv1 = _conv_block(in_channels, c64, 2)
        self.conv2 = _conv_block(c64, c128, 2)
        self.conv3 = _conv_block(c128, c256, 3)
        self.conv4 = _conv_block(c256, c512, 3)
        self.conv5 = _conv_block(c512, c512, 3, dilation=2)
        self.conv6 = _conv_block(c512, c512, 3, dilation=2)
        self.conv7 = _conv_block(c512, c512, 3)

        self.conv8_up = _upsample(c512, c256)
        self.conv3_short8 = nn.Conv2d(c256, c256, 3, padding=1)
        self.conv8 = nn.Sequential(nn.ReLU(inplace=True), _conv_block(c256, c256, 2))

        self.conv9_up = _upsample(c256, c128)
        self.conv2_short9 = nn.Conv2d(c128, c128, 3, padding=1)
        self.conv9 = nn.Sequential(nn.ReLU(inplace=True), _conv_block(c128, c128, 1))

        self.conv10_up = _upsample(c128, c128)
        self.conv1_short10 = nn.Conv2d(c64, c128, 3, padding=1)
        self.conv10 = nn.Sequential(
            nn.ReLU(inplace=True),
            nn.Conv2d(c128, c128, 3, padding=1),
            nn.LeakyReLU(0.2, inplace=True),
        )

        self.class_head = nn.Conv2d(c256, NUM_AB_BINS, 1) if classification_head else None
        self.head = nn.Conv2d(c128, out_channels, 1)

    def _trunk(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(conv8 at 1/4 resolution, conv10 at full resolution) of a padded input."""
        conv1 = self.conv1(x)
        conv2 = self.conv2(conv1[:, :, ::2, ::2])
        conv3 = self.conv3(conv2[:, :, ::2, ::2])
        x = self.conv4(conv3[:, :, ::2, ::2])
        x = self.conv7(self.conv6(self.conv5(x)))
        conv8 = self.conv8(self.conv8_up(x) + self.conv3_short8(conv3))
        x = self.conv9(self.conv9_up(conv8) + self.conv2_short9(conv2))
        return conv8, self.conv10(self.conv10_up(x) + self.conv1_short10(conv1))

    def forward_features(self, x: Tensor) -> Tensor:
        return self._trunk(pad_to_multiple(x, self.stride)[0])[1]

    def forward_output(self, features: Tensor, size: tuple[int, int]) -> Tensor:
        return crop_to(self.head(features).tanh(), size)

    def forward_with_logits(self, x: Tensor) -> tuple[Tensor, Tensor | None]:
        """Return (ab regression in (-1, 1), class logits at 1/4 resolution or ``None``)."""
        x, (h, w) = pad_to_multiple(x, self.stride)
        conv8, features = self._trunk(x)
        out = self.forward_output(features, (h, w))

        logits = None
        if self.class_head is not None:
            # conv8 is at 1/4 of the padded size; keep every cell that overlaps the real image.
            logits = crop_to(self.class_head(conv8), (-(-h // 4), -(-w // 4)))
        return out, logits
