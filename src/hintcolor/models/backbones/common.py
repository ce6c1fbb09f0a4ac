"""Shared helpers for the colorization backbones."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor


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
