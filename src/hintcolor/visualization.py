"""Pictures of what the network sees and does: gray input, hints, prediction, truth."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from hintcolor.data.color import normalized_lab_to_rgb

PANEL_TITLES = ("gray input", "hints", "prediction", "ground truth")


def hint_overlay(l_norm: Tensor, hint_ab: Tensor, mask: Tensor) -> Tensor:
    """The gray image with each hint patch painted in its colour, outlined in white.

    (B,1,H,W), (B,2,H,W), (B,1,H,W) -> RGB (B,3,H,W) in [0, 1]. The outline keeps one-pixel
    hints and hints on dark or gray regions visible.
    """
    gray = normalized_lab_to_rgb(l_norm, torch.zeros_like(hint_ab))
    painted = normalized_lab_to_rgb(l_norm, hint_ab * mask)
    inside = mask > 0
    ring = (F.max_pool2d(mask.float(), 3, stride=1, padding=1) > 0) & ~inside
    out = torch.where(inside, painted, gray)
    return torch.where(ring, torch.ones_like(out), out)


def colorization_panels(batch: dict[str, Tensor], pred_ab: Tensor) -> Tensor:
    """One row per image: gray | hints | prediction | ground truth, RGB (B,3,H,4W) in [0, 1]."""
    l_norm, inputs = batch["l"].float(), batch["input"].float()
    hint_ab, mask = inputs[:, 1:3], inputs[:, 3:4]
    gray = normalized_lab_to_rgb(l_norm, torch.zeros_like(hint_ab))
    hints = hint_overlay(l_norm, hint_ab, mask)
    pred = normalized_lab_to_rgb(l_norm, pred_ab.float())
    truth = batch["rgb"].float()
    return torch.cat([gray, hints, pred, truth], dim=3).clamp(0, 1)


def to_uint8_images(panels: Tensor) -> list[np.ndarray]:
    """(B,3,H,W) in [0, 1] -> B arrays (H,W,3) uint8, for image files and loggers."""
    arrays = (panels.detach().cpu().permute(0, 2, 3, 1) * 255).round().to(torch.uint8)
    return list(arrays.numpy())
