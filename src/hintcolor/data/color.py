"""RGB <-> CIE Lab conversion and the network's normalisation (Zhang et al. 2017).

The conversion itself is kornia's (D65, sRGB companding); this module only fixes the
normalisation so that every part of the framework agrees on it:
L in [0, 100] -> (L - 50) / 100 and ab -> ab / 110.
"""

from __future__ import annotations

import torch
from kornia.color import lab_to_rgb as _lab_to_rgb
from kornia.color import rgb_to_lab as _rgb_to_lab
from torch import Tensor

L_CENTER = 50.0
L_SCALE = 100.0
AB_SCALE = 110.0


def rgb_to_lab(rgb: Tensor) -> Tensor:
    """(..., 3, H, W) RGB in [0, 1] -> Lab with L in [0, 100], a/b roughly in [-110, 110]."""
    # Always fp32, also inside a bf16 autocast region: bf16 would cost ~1 dB of PSNR.
    with torch.autocast(rgb.device.type, enabled=False):
        return _rgb_to_lab(rgb.float())


def lab_to_rgb(lab: Tensor) -> Tensor:
    """(..., 3, H, W) Lab -> RGB in [0, 1] (out-of-gamut values are clipped)."""
    with torch.autocast(lab.device.type, enabled=False):
        return _lab_to_rgb(lab.float(), clip=True)


def normalize_lab(lab: Tensor) -> tuple[Tensor, Tensor]:
    """Split Lab into the network's normalised L (B,1,H,W) and ab (B,2,H,W)."""
    l_norm = (lab[:, :1] - L_CENTER) / L_SCALE
    ab_norm = lab[:, 1:] / AB_SCALE
    return l_norm, ab_norm


def denormalize_lab(l_norm: Tensor, ab_norm: Tensor) -> Tensor:
    """Inverse of :func:`normalize_lab`: (B,1,H,W) and (B,2,H,W) -> Lab (B,3,H,W)."""
    return torch.cat([l_norm * L_SCALE + L_CENTER, ab_norm * AB_SCALE], dim=1)


def rgb_uint8_to_normalized_lab(rgb: Tensor) -> tuple[Tensor, Tensor]:
    """A uint8 RGB batch (B,3,H,W) -> normalised (L, ab), computed on ``rgb``'s device."""
    return normalize_lab(rgb_to_lab(rgb.float() / 255.0))


def normalized_lab_to_rgb(l_norm: Tensor, ab_norm: Tensor) -> Tensor:
    """Normalised (L, ab) -> RGB in [0, 1], differentiable (used by the SSIM loss)."""
    return lab_to_rgb(denormalize_lab(l_norm.float(), ab_norm.float()))
