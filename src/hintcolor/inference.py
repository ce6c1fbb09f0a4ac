"""Colorize a photo with a trained model, at the photo's full resolution.

The network runs at a working size (the photo scaled so its longer side is ``working_size``);
its ab prediction is upsampled to the photo's size and joined with the photo's own,
full-resolution lightness, so no detail is lost to the working size (colour is smooth; the
eye reads detail from L).

A prepared photo keeps its full-resolution RGB (3 bytes a pixel) rather than its float32
lightness (4 bytes a pixel), and :meth:`Colorizer.colorize` converts it a strip of rows at a
time: the result is the same function of the same pixels, a kept photo takes a quarter less
memory, opening one skips the full-resolution Lab conversion, and a download's working memory
is a strip's rather than several full-resolution float copies of the photo.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor, nn

from hintcolor.checkpoints import load_backbone
from hintcolor.data.color import normalized_lab_to_rgb, rgb_uint8_to_normalized_lab
from hintcolor.user_hints import UserHint, render_user_hints
from hintcolor.utils.hardware import fast_precision

# pixels converted to and from Lab at a time by a full-resolution colorize: ~50 MB of floats
STRIP_PIXELS = 1 << 20


def working_shape(height: int, width: int, working_size: int) -> tuple[int, int]:
    """(h, w) with the longer side ``working_size`` and the photo's aspect ratio."""
    scale = working_size / max(height, width)
    return max(1, round(height * scale)), max(1, round(width * scale))


def to_tensor(rgb: np.ndarray) -> Tensor:
    """(H, W, 3) uint8 -> (1, 3, H, W) uint8 tensor."""
    return torch.tensor(rgb).permute(2, 0, 1).unsqueeze(0)  # a copy: arrays may be read-only


def to_uint8(rgb: Tensor) -> np.ndarray:
    """(1, 3, H, W) float RGB in [0, 1] -> (H, W, 3) uint8."""
    return (rgb[0].clamp(0, 1) * 255 + 0.5).to(torch.uint8).permute(1, 2, 0).numpy()


@dataclass
class PreparedPhoto:
    """One photo as every hint click reuses it: its lightness at the working size and its
    full-resolution RGB (read-only), from which a download takes the full-resolution L."""

    rgb: np.ndarray  # (H, W, 3) uint8
    l_small: Tensor  # (1, 1, h, w) normalised L

    @property
    def photo_size(self) -> tuple[int, int]:
        """(H, W)"""
        return self.rgb.shape[0], self.rgb.shape[1]

    @property
    def l_full(self) -> Tensor:
        """(1, 1, H, W) normalised L, computed on each call (the photo keeps only its RGB)."""
        return rgb_uint8_to_normalized_lab(to_tensor(self.rgb))[0]

    @property
    def nbytes(self) -> int:
        """The memory this photo holds (what the page's photo budget counts)."""
        return self.rgb.nbytes + self.l_small.element_size() * self.l_small.nelement()

    def gray(self) -> np.ndarray:
        """(h, w, 3) uint8 grayscale at the working size."""
        zeros = torch.zeros_like(self.l_small).expand(-1, 2, -1, -1)
        return to_uint8(normalized_lab_to_rgb(self.l_small, zeros))


class Colorizer:
    """A trained backbone ready for photos of any size and user hints.

    ``precision``: ``auto`` (bf16 where the hardware has it, as in training) or ``32-true``.
    ``keep_hint_colors``: the hinted squares get exactly the colour the person chose (the
    network's output elsewhere): a click means "this spot is this colour", which a network
    only approximates.
    Call :meth:`prepare` once per photo, then :meth:`predict_ab` / :meth:`colorize` for each
    set of hints (the photo's Lab is computed once).
    """

    def __init__(
        self,
        backbone: nn.Module,
        working_size: int = 256,
        precision: str = "auto",
        keep_hint_colors: bool = True,
    ):
        if working_size < 1:
            raise ValueError(f"working_size must be positive, got {working_size}")
        self.backbone = backbone.eval()
        self.working_size = working_size
        if precision == "auto":
            precision = fast_precision("cpu")
        self.bf16 = precision.startswith("bf16")
        self.keep_hint_colors = keep_hint_colors
        self.backbone.to(memory_format=torch.channels_last)

    @classmethod
    def from_checkpoint(cls, ckpt_path: str | Path, **kwargs) -> Colorizer:
        backbone, _ = load_backbone(ckpt_path)
        return cls(backbone, **kwargs)

    def prepare(self, rgb: np.ndarray) -> PreparedPhoto:
        """The photo's lightness at the working size, and the photo itself."""
        if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
            raise ValueError(f"expected an (H, W, 3) uint8 RGB array, got {rgb.shape} {rgb.dtype}")
        h, w = working_shape(rgb.shape[0], rgb.shape[1], self.working_size)
        small = np.asarray(Image.fromarray(rgb).resize((w, h), Image.Resampling.BILINEAR))
        l_small, _ = rgb_uint8_to_normalized_lab(to_tensor(small))
        kept = rgb.copy()  # the caller may reuse its array
        kept.flags.writeable = False
        return PreparedPhoto(kept, l_small)

    @torch.inference_mode()
    def predict_ab(self, photo: PreparedPhoto, hints: list[UserHint]) -> Tensor:
        """Normalised ab (1, 2, h, w) at the working size."""
        hint_ab, mask = render_user_hints(hints, photo.photo_size, tuple(photo.l_small.shape[-2:]))
        x = torch.cat([photo.l_small, hint_ab, mask], dim=1)
        x = x.contiguous(memory_format=torch.channels_last)
        autocast = torch.autocast("cpu", dtype=torch.bfloat16) if self.bf16 else None
        with autocast or contextlib.nullcontext():
            ab = self.backbone(x).float()
        return torch.where(mask.bool(), hint_ab, ab) if self.keep_hint_colors else ab

    def preview(self, photo: PreparedPhoto, hints: list[UserHint]) -> np.ndarray:
        """(h, w, 3) uint8 colorization at the working size."""
        return to_uint8(normalized_lab_to_rgb(photo.l_small, self.predict_ab(photo, hints)))

    def colorize(self, photo: PreparedPhoto, hints: list[UserHint]) -> np.ndarray:
        """(H, W, 3) uint8 colorization at the photo's full resolution."""
        ab = self.predict_ab(photo, hints)
        (height, width), rgb = photo.photo_size, photo.rgb
        ab_full = F.interpolate(ab, size=(height, width), mode="bilinear", align_corners=False)
        out = np.empty((height, width, 3), dtype=np.uint8)
        # Lab <-> RGB is per pixel, so strips give the same bits as one full-size pass
        # (tests/test_app.py checks); rows a multiple of 16 keep strips on vector boundaries
        rows = max(16, STRIP_PIXELS // width // 16 * 16)
        for top in range(0, height, rows):
            l_strip, _ = rgb_uint8_to_normalized_lab(to_tensor(rgb[top : top + rows]))
            ab_strip = ab_full[:, :, top : top + rows]
            out[top : top + rows] = to_uint8(normalized_lab_to_rgb(l_strip, ab_strip))
        return out
