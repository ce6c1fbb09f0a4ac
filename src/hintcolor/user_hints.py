"""Hints a person gives: points with a colour, in the photo's own pixel coordinates.

The JSON format (``colorize.py --hints``, the web page's "download hints"):

    [{"x": 120, "y": 48, "color": "#d03020", "size": 6},
     {"x": 300.5, "y": 210, "color": [35.0, 20.0]}]

``x``/``y``: the hint's centre in pixels of the full-resolution photo (0, 0 = top-left);
``color``: ``"#rrggbb"`` (its lightness is ignored: the photo keeps its own) or CIE Lab
``[a, b]``; ``size``: the side of the square patch in photo pixels (default 6, as in the
evaluation protocol). A list may also be wrapped as ``{"hints": [...]}``.
"""

from __future__ import annotations

import json
import math
import re
import reprlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from hintcolor.data.color import AB_SCALE, rgb_to_lab

DEFAULT_SIZE = 6
MAX_HINTS = 10_000
MAX_SIZE = 512  # a hint's side in photo pixels, unless the caller gives its own bound
_HEX = re.compile(r"^#([0-9a-fA-F]{6})$")


class HintError(ValueError):
    """A hint list that cannot be used; the message says which hint and why."""


@dataclass(frozen=True)
class UserHint:
    x: float
    y: float
    a: float  # CIE Lab a*, b*
    b: float
    size: int = DEFAULT_SIZE
    hex: str | None = None  # the colour as the user gave it, kept for a faithful round trip

    def to_json(self) -> dict[str, Any]:
        color: Any = self.hex if self.hex else [round(self.a, 3), round(self.b, 3)]
        return {"x": self.x, "y": self.y, "color": color, "size": self.size}


def hex_to_ab(hex_color: str) -> tuple[float, float]:
    """``"#rrggbb"`` -> (a*, b*) of that sRGB colour."""
    match = _HEX.match(hex_color)
    if not match:
        raise HintError(f"colour {hex_color!r} is not #rrggbb")
    value = int(match.group(1), 16)
    rgb = torch.tensor([(value >> 16) & 255, (value >> 8) & 255, value & 255], dtype=torch.float32)
    lab = rgb_to_lab((rgb / 255.0).view(1, 3, 1, 1)).flatten()
    return float(lab[1]), float(lab[2])


def _number(item: dict[str, Any], key: str, where: str) -> float:
    value = item.get(key)
    try:  # float() of an int with hundreds of digits overflows
        number = float(value) if isinstance(value, int | float) else math.nan
    except OverflowError:
        number = math.inf
    if isinstance(value, bool) or not math.isfinite(number):
        raise HintError(f"{where}: {key!r} must be a finite number, got {reprlib.repr(value)}")
    return number


def parse_hints(
    data: Any,
    width: int | None = None,
    height: int | None = None,
    *,
    max_hints: int = MAX_HINTS,
    max_size: int = MAX_SIZE,
) -> list[UserHint]:
    """Validate decoded JSON into hints; with the photo's size, hints must lie inside it.

    ``max_hints``/``max_size`` bound what one list may cost (the web page sets its own).
    """
    if isinstance(data, dict) and "hints" in data:
        data = data["hints"]
    if not isinstance(data, list):
        raise HintError("hints must be a JSON list of {x, y, color, size} objects")
    if len(data) > max_hints:
        raise HintError(f"{len(data)} hints: at most {max_hints}")
    hints = []
    for i, item in enumerate(data):
        where = f"hint {i}"
        if not isinstance(item, dict):
            raise HintError(f"{where}: expected an object with x, y, color, got {item!r}")
        x, y = _number(item, "x", where), _number(item, "y", where)
        if width is not None and height is not None and not (0 <= x < width and 0 <= y < height):
            raise HintError(f"{where}: ({x}, {y}) lies outside the {width}x{height} photo")
        size = item.get("size", DEFAULT_SIZE)
        if isinstance(size, bool) or not isinstance(size, int | float) or not 1 <= size <= max_size:
            raise HintError(
                f"{where}: size must be a number of pixels in 1..{max_size}, "
                f"got {reprlib.repr(size)}"
            )
        color = item.get("color")
        if isinstance(color, str):
            try:
                a, b = hex_to_ab(color)
            except HintError as exc:
                raise HintError(f"{where}: {exc}") from None
            hex_color = color.lower()
        elif isinstance(color, list | tuple) and len(color) == 2:
            a = _number({"a": color[0]}, "a", where)
            b = _number({"b": color[1]}, "b", where)
            if abs(a) > 128 or abs(b) > 128:
                raise HintError(f"{where}: Lab a, b must lie in -128..128, got {color!r}")
            hex_color = None
        else:
            raise HintError(f"{where}: color must be '#rrggbb' or [a, b], got {color!r}")
        hints.append(UserHint(x, y, a, b, round(size), hex_color))
    return hints


def load_hints(path: str | Path, width: int | None = None, height: int | None = None):
    """Read a hints JSON file (see the module docstring)."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise HintError(f"cannot read hints from {path}: {exc}") from None
    return parse_hints(data, width, height)


def dump_hints(hints: list[UserHint]) -> str:
    return json.dumps([h.to_json() for h in hints], indent=1)


def render_user_hints(
    hints: list[UserHint], photo_size: tuple[int, int], work_size: tuple[int, int]
) -> tuple[Tensor, Tensor]:
    """Hint maps at the working size: normalised ab (1,2,h,w) and mask (1,1,h,w).

    ``photo_size``/``work_size`` are (height, width). A hint covers its square (``size``
    photo pixels, at least one working pixel) scaled to the working resolution; where hints
    overlap the later one wins, as when a person paints over an earlier click.
    """
    (ph, pw), (h, w) = photo_size, work_size
    ab = torch.zeros(1, 2, h, w)
    mask = torch.zeros(1, 1, h, w)
    sy, sx = h / ph, w / pw
    for hint in hints:
        side_y, side_x = max(1, round(hint.size * sy)), max(1, round(hint.size * sx))
        cy, cx = hint.y * sy, hint.x * sx
        y0 = min(max(0, math.floor(cy - side_y / 2 + 0.5)), h - 1)
        x0 = min(max(0, math.floor(cx - side_x / 2 + 0.5)), w - 1)
        ab[0, 0, y0 : y0 + side_y, x0 : x0 + side_x] = hint.a / AB_SCALE
        ab[0, 1, y0 : y0 + side_y, x0 : x0 + side_x] = hint.b / AB_SCALE
        mask[0, 0, y0 : y0 + side_y, x0 : x0 + side_x] = 1.0
    return ab, mask
