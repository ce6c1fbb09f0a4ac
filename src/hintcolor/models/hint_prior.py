"""A non-learned first guess of the colours from the hints, which a backbone then corrects.

A network trained for minutes on a few hundred photos learns little about carrying one hint's
colour across a whole image, which plain interpolation of the hints does for free (IDW beats
such a network at few hints). :class:`PushPullResidual` gives the backbone the interpolated
colours as two extra input channels and makes it predict a correction to them, so training
starts from interpolation and spends its steps on what interpolation cannot know: edges,
objects, where a colour should stop.

The interpolation is push-pull (Gortler et al., "The Lumigraph", 1996): a pyramid of
normalised averages of the hints, filled back top-down. Unlike IDW it needs only the dense
hint maps (ab, mask) every backbone already receives, costs O(H W) whatever the number of
hints, and is made of pooling and resizing alone, so it exports to ONNX with the network.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

# Binomial [1, 3, 3, 1] / 8 in each direction: the pull's low-pass filter. A 2x2 box (the
# textbook pull) leaves the quadtree's blocks in the fill; this smoother kernel gave 0.1-0.3 dB
# more PSNR at 5-500 hints, measured on 64 photos of the training pool (not the test images).
_TAPS = torch.tensor([1.0, 3.0, 3.0, 1.0]) / 8


def _pull(x: Tensor) -> Tensor:
    """Half resolution (ceil), as sums: each pixel's weight is spread over the coarse cells."""
    kernel = (_TAPS[:, None] * _TAPS[None, :]).to(x.device, x.dtype) * 4
    channels = x.shape[1]
    # padding (1, 2) gives ceil(n / 2) outputs for odd and even n alike, without shape logic
    x = F.pad(x, (1, 2, 1, 2))
    return F.conv2d(x, kernel.expand(channels, 1, 4, 4), stride=2, groups=channels)


def push_pull(ab: Tensor, mask: Tensor, levels: int = 12) -> Tensor:
    """Fill ab (B,2,H,W) everywhere from the pixels where ``mask`` (B,1,H,W) is 1.

    Pull: halve the resolution ``levels`` times (12: down to 1x1 for sides up to 4096; a 1x1
    level pulls to itself), each level holding the weighted mean hint colour of its cells and
    a weight (hint pixels under it, clamped to 1). Push: from the coarsest level down, a cell
    keeps its own colour in proportion to its weight and takes the coarser level's
    (bilinearly upsampled) for the rest. Hinted pixels keep their colour exactly; with one
    hint the whole image gets its colour; no hints give ab = 0. Computed in float32. The fixed
    number of levels (not "until 1x1") keeps the graph the same for every input size, so it
    exports to ONNX with dynamic height and width.
    """
    alpha = mask.float().clamp(0, 1)
    colour = ab.float() * alpha
    pyramid = [(colour, alpha)]
    for _ in range(levels):
        weight = _pull(alpha)
        alpha = weight.clamp(max=1.0)
        # premultiplied by the clamped weight
        colour = _pull(colour) * (alpha / weight.clamp_min(1e-12))
        pyramid.append((colour, alpha))
    filled = pyramid[-1][0] / pyramid[-1][1].clamp_min(1e-12)
    for colour, alpha in reversed(pyramid[:-1]):
        coarse = F.interpolate(filled, size=colour.shape[-2:], mode="bilinear", align_corners=False)
        filled = colour + (1 - alpha) * coarse
    return filled


class PushPullResidual(nn.Module):
    """Wrap a backbone: input (L, hint ab, mask) + push-pull ab; output push-pull ab + correction.

    The backbone is built with 2 more input channels (:attr:`extra_channels`); it sees the
    same 4-channel model input as any backbone from the outside, so data, metrics, evaluation
    and export need nothing special.
    """

    extra_channels = 2

    def __init__(self, backbone: nn.Module, initial_gain: float = 1.0) -> None:
        super().__init__()
        self.backbone = backbone
        self.stride: int = getattr(backbone, "stride", 1)
        # Per-channel scale of the correction. At 0 the untrained model *is* the interpolation
        # and moves away from it only as far as training finds it pays (ReZero, Bachlechner
        # et al. 2021): a short run cannot end below its own prior.
        self.gain = nn.Parameter(torch.full((1, 2, 1, 1), float(initial_gain)))

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs) -> None:
        # checkpoints from before the gain: the correction was added as it came (gain 1)
        state_dict.setdefault(prefix + "gain", torch.ones_like(self.gain))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def forward(self, x: Tensor) -> Tensor:
        prior = push_pull(x[:, 1:3], x[:, 3:4])
        layout = (
            torch.channels_last
            if x.is_contiguous(memory_format=torch.channels_last)
            else torch.contiguous_format
        )
        inputs = torch.cat([x, prior.to(x.dtype)], dim=1).contiguous(memory_format=layout)
        correction = self.backbone(inputs)
        return (prior + self.gain * correction.float()).clamp(-1.0, 1.0)
