"""Colorize a photo with a trained model, at the photo's full resolution.

The network runs at a working size (the photo scaled so its longer side is ``working_size``);
its ab prediction is upsampled to the photo's size and joined with the photo's own,
full-resolution lightness, so no detail is lost to the working size (colour is smooth; the
eye reads detail from L).

A prepared photo keeps its lightness at the working size (and at the smaller interactive size
of the page's fast previews) and a source of its full resolution (:class:`FullPhoto`): the RGB
itself, or what decodes it again when a download needs it (the page keeps an upload's bytes
and opens it from a reduced decode). :meth:`Colorizer.colorize` converts the full resolution a
strip of rows at a time with lookup tables (:mod:`hintcolor.lab_tables`): the result is the
same function of the same pixels whatever the strips, and a download's working memory is a
strip's rather than several full-resolution float copies of the photo.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor, nn

from hintcolor import lab_tables
from hintcolor.checkpoints import load_backbone
from hintcolor.data.color import (
    AB_SCALE,
    L_CENTER,
    L_SCALE,
    normalized_lab_to_rgb,
    rgb_uint8_to_normalized_lab,
)
from hintcolor.data.hints import Hints, model_input
from hintcolor.models.color_distribution import DISTRIBUTION_STRIDE
from hintcolor.palette import prediction_palette
from hintcolor.precision import autocast, autocast_dtype, resolve_precision
from hintcolor.suggestions import (
    Suggestion,
    has_color_distribution,
    rank_suggestions,
    starting_index,
    suggest_colors,
)
from hintcolor.user_hints import UserHint, render_user_hints

# pixels converted to and from Lab at a time by a full-resolution colorize: ~50 MB of floats
STRIP_PIXELS = 1 << 20
# the network reads only the hint maps; a person's hints have no sampled points to list
NO_POINTS = torch.zeros(0, 3, dtype=torch.long)
NO_COLORS = torch.zeros(0, 2)


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


def distribution_at(probabilities: Tensor, x: int, y: int) -> Tensor:
    """(Q,) probabilities at pixel (``x``, ``y``) of a colour head's (1, Q, rows, cols) map at
    1/4 resolution, read as ``F.interpolate(scale_factor=4, mode="bilinear")`` reads it (as
    :func:`hintcolor.suggestions.point_distribution` does from the head itself)."""
    rows, cols = probabilities.shape[-2:]
    u, v = (x + 0.5) / DISTRIBUTION_STRIDE, (y + 0.5) / DISTRIBUTION_STRIDE  # in cells
    grid = torch.tensor([[[[2 * u / cols - 1, 2 * v / rows - 1]]]], dtype=probabilities.dtype)
    read = F.grid_sample(probabilities, grid, "bilinear", "border", align_corners=False)
    return read[0, :, 0, 0]


@dataclass(frozen=True)
class FullPhoto:
    """Where a prepared photo's full resolution comes from: kept decoded (a photo given as an
    array), or decoded again when a download needs it (the page keeps an upload's bytes: a
    tenth of its pixels' memory, and opening it needs only a reduced decode)."""

    size: tuple[int, int]  # (H, W), EXIF rotation applied
    nbytes: int  # the memory this source holds until then
    load: Callable[[], np.ndarray]  # the (H, W, 3) uint8 photo


@dataclass
class PreparedPhoto:
    """One photo as every hint click reuses it: its lightness at the working size (and at the
    smaller network sizes asked for), and its full-resolution source for a download."""

    full: FullPhoto
    lightness: dict[int, Tensor]  # longer side -> normalised L (1, 1, h, w)
    # the last network output, ((network size, hints), ab): a suggestion, the idle preview and
    # a download that follow a preview with the same hints reuse it instead of running again
    last_prediction: tuple[tuple[int, tuple[UserHint, ...]], Tensor] | None = None
    # with a colour head, the last settled preview's colour distribution, (key as above,
    # (1, Q, h/4, w/4) probabilities: ~3.4 MB at 256 px): a new hint's suggestions read it
    last_distribution: tuple[tuple[int, tuple[UserHint, ...]], Tensor] | None = None

    @property
    def photo_size(self) -> tuple[int, int]:
        """(H, W)"""
        return self.full.size

    @property
    def nbytes(self) -> int:
        """The memory this photo holds (what the page's photo budget counts; the caches are
        as large from the first preview on)."""
        tensors = [*self.lightness.values()]
        tensors += [c[1] for c in (self.last_prediction, self.last_distribution) if c]
        return self.full.nbytes + sum(t.element_size() * t.nelement() for t in tensors)

    def gray(self, size: int) -> np.ndarray:
        """(h, w, 3) uint8 grayscale at the longer side ``size``."""
        l_small = self.lightness[size]
        zeros = torch.zeros_like(l_small).expand(-1, 2, -1, -1)
        return to_uint8(normalized_lab_to_rgb(l_small, zeros))


class Colorizer:
    """A trained backbone ready for photos of any size and user hints.

    ``precision``: ``auto`` (bf16 where the hardware has it, as in training) or ``32-true``.
    ``keep_hint_colors``: the hinted squares get exactly the colour the person chose (the
    network's output elsewhere): a click means "this spot is this colour", which a network
    only approximates. ``interactive_size``: the longer side the network runs at for a fast
    preview (the page's, while hints move; default the working size).
    Call :meth:`prepare` once per photo, then :meth:`predict_ab` / :meth:`preview` /
    :meth:`colorize` / :meth:`suggest` for each set of hints (the photo's Lab is computed once).
    """

    def __init__(
        self,
        backbone: nn.Module,
        working_size: int = 256,
        precision: str = "auto",
        keep_hint_colors: bool = True,
        interactive_size: int | None = None,
    ):
        if working_size < 1 or (interactive_size is not None and interactive_size < 1):
            raise ValueError(
                f"working_size and interactive_size must be positive, got {working_size} and "
                f"{interactive_size}"
            )
        self.backbone = backbone.eval()
        self.working_size = working_size
        # the network's size for the page's previews while hints move (fast=True)
        self.interactive_size = interactive_size or working_size
        self.precision = resolve_precision(precision, "cpu")
        if autocast_dtype(self.precision) == torch.float16:
            raise ValueError(f"precision {precision}: use auto, bf16-mixed or 32-true on a CPU")
        self.bf16 = autocast_dtype(self.precision) == torch.bfloat16
        self.keep_hint_colors = keep_hint_colors
        self.backbone.to(memory_format=torch.channels_last)

    @classmethod
    def from_checkpoint(cls, ckpt_path: str | Path, **kwargs) -> Colorizer:
        backbone, _ = load_backbone(ckpt_path)
        return cls(backbone, **kwargs)

    def prepare(self, rgb: np.ndarray, full: FullPhoto | None = None) -> PreparedPhoto:
        """The photo's lightness at the working size (and the interactive size).

        ``rgb`` is the photo itself, or with ``full`` a reduced copy of it (at least the
        working size, the same aspect ratio): the working size is all a preview needs.
        """
        if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
            raise ValueError(f"expected an (H, W, 3) uint8 RGB array, got {rgb.shape} {rgb.dtype}")
        if full is None:
            kept = rgb.copy()  # the caller may reuse its array
            kept.flags.writeable = False
            full = FullPhoto((kept.shape[0], kept.shape[1]), kept.nbytes, lambda: kept)
        image = Image.fromarray(rgb)
        lightness = {}
        for size in {self.working_size, self.interactive_size}:
            # the shape from the full size, so hints land on the same pixels whatever was decoded
            h, w = working_shape(*full.size, size)
            small = np.asarray(image.resize((w, h), Image.Resampling.BILINEAR))
            lightness[size] = rgb_uint8_to_normalized_lab(to_tensor(small))[0]
        return PreparedPhoto(full, lightness)

    def model_input(
        self, photo: PreparedPhoto, hints: list[UserHint], size: int | None = None
    ) -> tuple[Tensor, Tensor, Tensor]:
        """The network's input at the longer side ``size`` (default: the working size): (1, 4,
        h, w) normalised L, hint a, hint b, mask (channels_last), and the hint maps (ab, mask)."""
        l_small = photo.lightness[size or self.working_size]
        hint_ab, mask = render_user_hints(hints, photo.photo_size, tuple(l_small.shape[-2:]))
        x = model_input(l_small, Hints(hint_ab, mask, NO_POINTS, NO_COLORS))
        return x.contiguous(memory_format=torch.channels_last), hint_ab, mask

    def autocast(self) -> contextlib.AbstractContextManager:
        """The precision the network runs in (bf16 autocast where the hardware has it)."""
        return autocast(self.precision, "cpu")

    @torch.inference_mode()
    def predict_ab(self, photo: PreparedPhoto, hints: list[UserHint], fast: bool = False) -> Tensor:
        """Normalised ab (1, 2, h, w) at the working size.

        ``fast``: the network runs at the interactive size, its colours upsampled to the
        working size (colour is smooth; a preview keeps the working size's lightness).
        """
        size = self.interactive_size if fast else self.working_size
        key = (size, tuple(hints))
        last = photo.last_prediction  # read once: another thread may replace it
        if last is not None and last[0] == key:
            ab = last[1]
        else:
            x, _, _ = self.model_input(photo, hints, size)
            with self.autocast():
                if not fast and has_color_distribution(self.backbone):
                    # the settled preview keeps the photo's colour distribution too (the head
                    # on the same pass): the next click's suggestions need no pass of their own
                    ab, logits = self.backbone.forward_with_distribution(x)
                    photo.last_distribution = (key, F.softmax(logits.float(), dim=1))
                else:
                    ab = self.backbone(x)
            ab = ab.float()
            photo.last_prediction = (key, ab)
        l_small = photo.lightness[self.working_size]
        if ab.shape[-2:] != l_small.shape[-2:]:
            ab = F.interpolate(ab, size=l_small.shape[-2:], mode="bilinear", align_corners=False)
        if not self.keep_hint_colors:
            return ab
        hint_ab, mask = render_user_hints(hints, photo.photo_size, tuple(l_small.shape[-2:]))
        return torch.where(mask.bool(), hint_ab, ab)

    def preview(
        self, photo: PreparedPhoto, hints: list[UserHint], fast: bool = False
    ) -> np.ndarray:
        """(h, w, 3) uint8 colorization at the working size (``fast``: see :meth:`predict_ab`)."""
        ab = self.predict_ab(photo, hints, fast)
        return lab_tables.to_srgb8(photo.lightness[self.working_size], ab)

    def colorize(
        self,
        photo: PreparedPhoto,
        hints: list[UserHint],
        timings: dict[str, float] | None = None,
    ) -> np.ndarray:
        """(H, W, 3) uint8 colorization at the photo's full resolution.

        ``timings``, when given, gets the seconds spent in each stage (``make bench-app``
        reports where a download's time goes).
        """
        clock = _Stages(timings)
        ab = self.predict_ab(photo, hints)
        clock.lap("network")
        rgb = photo.full.load()
        clock.lap("decode")
        height, width = photo.photo_size
        ab_full = F.interpolate(ab, size=(height, width), mode="bilinear", align_corners=False)
        clock.lap("upsample")
        out = np.empty((height, width, 3), dtype=np.uint8)
        # Lab <-> RGB is per pixel, so strips give the same bits as one full-size pass
        # (tests/test_app.py checks); rows a multiple of 16 keep strips on vector boundaries
        rows = max(16, STRIP_PIXELS // width // 16 * 16)
        for top in range(0, height, rows):
            l_strip = lab_tables.lightness(rgb[top : top + rows])
            clock.lap("lightness")
            out[top : top + rows] = lab_tables.to_srgb8(l_strip, ab_full[:, :, top : top + rows])
            clock.lap("lab_to_rgb")
        return out

    @torch.inference_mode()
    def suggest(
        self, photo: PreparedPhoto, hints: list[UserHint], x: float, y: float, count: int = 8
    ) -> Suggestions:
        """Colours for a hint at (``x``, ``y``) in photo pixels, given the other hints.

        From the network's colour distribution where it has one (``source`` "distribution":
        the settled preview's when it is that of these hints, as for a new hint's click; else
        a pass at the interactive size, for a selected hint given the others); otherwise its
        predicted colour there and more saturated versions of that hue at the pixel's
        lightness (``source`` "prediction"), so a new hint never starts near gray.
        """
        px, py = self._pixel(photo, x, y, self.working_size)
        l_small = photo.lightness[self.working_size]
        lightness = float(l_small[0, 0, py, px]) * L_SCALE + L_CENTER
        if has_color_distribution(self.backbone):
            settled = photo.last_distribution
            if settled is not None and settled[0] == (self.working_size, tuple(hints)):
                # a new hint's click: the settled preview's distribution, read at the point
                found = rank_suggestions(
                    distribution_at(settled[1], px, py),
                    self.backbone.bins,
                    lightness,
                    count,
                    merge_radius=self.backbone.distribution.grid * math.sqrt(2),
                )
                return Suggestions("distribution", lightness, found, starting_index(found))
            model_input, _, _ = self.model_input(photo, hints, self.interactive_size)
            qx, qy = self._pixel(photo, x, y, self.interactive_size)
            found, start = suggest_colors(self.backbone, model_input, qx, qy, count, self.bf16)
            return Suggestions("distribution", lightness, found, start)
        # the settled preview's prediction when it is that of these hints (reused, not run
        # again: a new hint's click); else the fast one (a selected hint: the others' colours)
        last = photo.last_prediction
        fast = last is None or last[0] != (self.working_size, tuple(hints))
        ab = self.predict_ab(photo, hints, fast)[0, :, py, px] * AB_SCALE
        palette, start = prediction_palette(lightness, float(ab[0]), float(ab[1]), count)
        # no probabilities without a distribution: NaN (the page shows none)
        found = [Suggestion(color, ab, math.nan) for color, ab in palette]
        return Suggestions("prediction", lightness, found, start)

    @staticmethod
    def _pixel(photo: PreparedPhoto, x: float, y: float, size: int) -> tuple[int, int]:
        """The pixel of the network's input at ``size`` that photo point (x, y) falls in."""
        (ph, pw), (h, w) = photo.photo_size, photo.lightness[size].shape[-2:]
        return min(int(x * w / pw), w - 1), min(int(y * h / ph), h - 1)


class _Stages:
    """Adds the seconds since the last lap to ``timings[stage]`` (nothing without timings)."""

    def __init__(self, timings: dict[str, float] | None) -> None:
        self.timings, self.last = timings, time.perf_counter()

    def lap(self, stage: str) -> None:
        if self.timings is not None:
            now = time.perf_counter()
            self.timings[stage] = self.timings.get(stage, 0.0) + now - self.last
            self.last = now


@dataclass(frozen=True)
class Suggestions:
    """What :meth:`Colorizer.suggest` found for one point."""

    source: str  # "distribution" (the network's colour head) or "prediction" (no head)
    lightness: float  # L* of the pixel (0..100), at which the colours are shown
    colors: list[Suggestion]  # most likely first
    start: int  # the index a new hint starts with
