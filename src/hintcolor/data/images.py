"""Finding and decoding photos on disk (vetting them is :mod:`hintcolor.data.vetting`).

Every photo becomes 8-bit RGB whatever it was stored as (EXIF rotation applied; RGBA,
palette, 16-bit and CMYK converted); files of other formats are counted and reported, never
silently ignored.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageOps

# GIF: the first frame is used (an animation's later frames would be near-duplicates).
IMAGE_EXTENSIONS = (
    ".jpg",
    ".jpeg",
    ".png",
    ".bmp",
    ".webp",
    ".tif",
    ".tiff",
    ".gif",
    ".avif",
)
# Photos with more pixels are skipped (data.max_pixels): a PNG near Pillow's own limit
# (89 MP) takes seconds and ~2 GB to decode, at every read. 50 MP keeps every phone's and
# most cameras' default photos; large JPEGs are decoded at reduced size anyway (draft).
DEFAULT_MAX_PIXELS = 50_000_000


def shown(path: str | os.PathLike) -> str:
    """``path`` as printable text: a name that is not valid UTF-8 (bytes from another
    system's encoding) shows its odd bytes as ``\\xff`` instead of breaking a log handler."""
    return os.fsencode(path).decode("utf-8", errors="backslashreplace")


def list_images(root: str | os.PathLike) -> tuple[list[Path], Counter[str]]:
    """Image files below ``root`` (recursive, sorted, by extension, case-insensitive), and the
    other files found there counted by extension, so that none goes unreported."""
    root = Path(root)
    if not root.exists():
        raise FileNotFoundError(f"image folder {root} does not exist")
    if not root.is_dir():
        raise NotADirectoryError(f"{root} is not a folder")
    files, others = [], Counter()
    for p in root.rglob("*"):
        if not p.is_file():
            continue
        if p.suffix.lower() in IMAGE_EXTENSIONS:
            files.append(p)
        else:
            others[p.suffix.lower() or "(no extension)"] += 1
    if not files:
        found = f"; found only {describe_others(others)}" if others else ""
        raise FileNotFoundError(
            f"no images under {root} (looked for {', '.join(IMAGE_EXTENSIONS)}, recursively{found})"
        )
    return sorted(files), others


def find_images(root: str | os.PathLike) -> list[Path]:
    """All image files below ``root`` (recursive, sorted), by extension, case-insensitive."""
    return list_images(root)[0]


def describe_others(others: Counter[str]) -> str:
    """'3 other files (.txt: 2, .heic: 1)'."""
    kinds = ", ".join(f"{ext}: {n}" for ext, n in others.most_common())
    return f"{sum(others.values())} other file(s) ({kinds})"


class PhotoTooLarge(ValueError):
    """A photo over the pixel limit in force, found from its header (nothing decoded)."""

    def __init__(self, width: int, height: int, max_pixels: int) -> None:
        self.width, self.height, self.max_pixels = width, height, max_pixels
        self.pixels = width * height
        super().__init__(
            f"{width}x{height} pixels, over data.max_pixels={max_pixels}: raise the limit or "
            f"downscale the file"
        )


def allow_pixels(max_pixels: int) -> None:
    """Let Pillow decode photos up to ``max_pixels`` (data.max_pixels governs here); never
    lowers Pillow's own limit."""
    if Image.MAX_IMAGE_PIXELS is not None and max_pixels > Image.MAX_IMAGE_PIXELS:
        Image.MAX_IMAGE_PIXELS = max_pixels


@contextmanager
def open_photo(
    path: str | os.PathLike | BinaryIO, max_pixels: int | None = None
) -> Iterator[Image.Image]:
    """``path`` opened, its header read and nothing decoded yet.

    With ``max_pixels``, a photo over it raises :class:`PhotoTooLarge` before any decoding,
    and that limit replaces Pillow's own bomb guard (a user who raised data.max_pixels past
    Pillow's 89 MP means it).
    """
    if max_pixels is None:
        img = Image.open(path)
    else:
        allow_pixels(max_pixels)  # decoders that check again (GIF frames) follow it too
        limit = Image.MAX_IMAGE_PIXELS
        Image.MAX_IMAGE_PIXELS = None  # only the header is read here; checked just below
        try:
            img = Image.open(path)
        finally:
            Image.MAX_IMAGE_PIXELS = limit
    with img:
        width, height = img.size
        if max_pixels is not None and width * height > max_pixels:
            raise PhotoTooLarge(width, height, max_pixels)
        yield img


def _to_rgb(img: Image.Image) -> Image.Image:
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        # 16-bit or float grayscale: rescale to 8 bits rather than clip at 255.
        arr = np.asarray(img, dtype=np.float64)
        peak = 65535.0 if img.mode.startswith("I;16") or arr.max() > 255 else 255.0
        img = Image.fromarray(np.clip(arr / peak * 255.0 + 0.5, 0, 255).astype(np.uint8))
    if img.mode == "P":
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA"):
        # Composite on white: transparent pixels have no meaningful colour of their own.
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(white, rgba)
    return img.convert("RGB") if img.mode != "RGB" else img


def decode_image(
    img: Image.Image, max_side: int | None = None, min_side: int | None = None
) -> Image.Image:
    """An opened photo decoded to 8-bit RGB, EXIF orientation applied (in place: no copy).

    ``max_side`` allows a reduced decode (at least that many pixels on each side kept, then
    shrunk to at most twice that). ``min_side`` lets a JPEG decode at 1/2, 1/4 or 1/8 scale
    (DCT scaling, nearly free) as long as both sides keep at least ``min_side`` pixels; other
    formats decode in full.
    """
    draft = max_side or min_side
    if draft is not None:
        img.draft("RGB", (draft, draft))
    ImageOps.exif_transpose(img, in_place=True)  # loads it
    rgb = _to_rgb(img)
    if max_side is not None and max(rgb.size) > 2 * max_side:
        rgb.thumbnail((2 * max_side, 2 * max_side))
    return rgb


def decode_rgb(
    img: Image.Image, max_side: int | None = None, min_side: int | None = None
) -> np.ndarray:
    """:func:`decode_image` as an (H, W, 3) uint8 array."""
    return np.asarray(decode_image(img, max_side, min_side), dtype=np.uint8).copy()


def load_rgb(
    path: str | os.PathLike | BinaryIO,
    max_side: int | None = None,
    min_side: int | None = None,
    max_pixels: int | None = None,
) -> np.ndarray:
    """Decode ``path`` (or an open binary file) to an (H, W, 3) uint8 RGB array (see
    :func:`decode_rgb`), in one open. Raises :class:`PhotoTooLarge` over ``max_pixels`` and
    ``OSError``/``ValueError`` for unreadable files.
    """
    with open_photo(path, max_pixels) as img:
        return decode_rgb(img, max_side, min_side)
