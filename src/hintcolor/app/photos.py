"""The page's photos: uploads decoded for the preview at reduced size, kept as their bytes.

A preview needs the photo at the working size (256 px) only, so opening one decodes it
reduced: JPEG's DCT scaling decodes a 24-megapixel photo at 1/8 of its size in a few tens of
ms, where the full decode, the full-resolution RGB (72 MB) and its resizing took seconds. The
file's bytes (bounded by ``max_upload_mb``, a tenth of the decoded pixels' memory for a JPEG)
are kept, and the full resolution is decoded again only for a download. Both decodes are
:func:`hintcolor.data.images.load_rgb`, the project's one decoder (EXIF rotation, RGBA,
palette, 16-bit, CMYK); every unusable file is an HTTP 4xx with a clear message.
"""

from __future__ import annotations

import io
import re
import uuid
from collections import OrderedDict
from pathlib import PurePath

import numpy as np
from fastapi import HTTPException
from PIL import ExifTags, Image, UnidentifiedImageError

from hintcolor.data.images import load_rgb
from hintcolor.inference import Colorizer, FullPhoto, PreparedPhoto

# EXIF orientations that turn the photo a quarter (ImageOps.exif_transpose): width <-> height
_QUARTER_TURNS = {5, 6, 7, 8}
# a photo's name as the page shows it and names its downloads after: its stem, this long
MAX_NAME = 100


def _unreadable(exc: Exception, max_pixels: int) -> HTTPException:
    if isinstance(exc, Image.DecompressionBombError):  # PIL refuses before we read the size
        return HTTPException(
            413, f"the image has too many pixels; the limit is {max_pixels / 1e6:g} megapixels"
        )
    kind = "not an image" if isinstance(exc, UnidentifiedImageError) else "unreadable"
    return HTTPException(400, f"the file is {kind} (PNG, JPEG, WebP, TIFF, BMP ...)")


def photo_size(data: bytes, max_bytes: int, max_pixels: int) -> tuple[int, int]:
    """(H, W) of the photo in ``data`` as shown (EXIF rotation applied), from its header; an
    HTTP 4xx for an empty, too large or unreadable file."""
    if not data:
        raise HTTPException(400, "the file is empty")
    if len(data) > max_bytes:
        raise HTTPException(413, f"the file is larger than {max_bytes / 1e6:g} MB")
    try:
        with Image.open(io.BytesIO(data)) as img:
            w, h = img.size  # from the header: nothing decoded yet
            if w * h > max_pixels:
                raise HTTPException(
                    413,
                    f"the image has {w}x{h} pixels; the limit is {max_pixels / 1e6:g} megapixels",
                )
            orientation = img.getexif().get(ExifTags.Base.Orientation, 1)
    except HTTPException:
        raise
    except Exception as exc:  # whatever a malformed file makes a decoder raise: unreadable
        raise _unreadable(exc, max_pixels) from None
    return (w, h) if orientation in _QUARTER_TURNS else (h, w)


def decode(data: bytes, max_pixels: int, max_side: int | None = None) -> np.ndarray:
    """``load_rgb`` of ``data`` (reduced to about ``max_side``, see there), or an HTTP 4xx."""
    try:
        return load_rgb(io.BytesIO(data), max_side=max_side)
    except Exception as exc:  # whatever a malformed file makes a decoder raise: unreadable
        raise _unreadable(exc, max_pixels) from None


def open_photo(data: bytes, colorizer: Colorizer, max_bytes: int, max_pixels: int) -> PreparedPhoto:
    """The photo in ``data`` prepared for previews from a reduced decode; its full resolution
    is decoded from the kept bytes when a download asks for it."""
    height, width = photo_size(data, max_bytes, max_pixels)
    reduced = decode(data, max_pixels, max_side=colorizer.working_size)
    if abs(reduced.shape[0] * width - reduced.shape[1] * height) > max(height, width):
        # the reduced decode is not the photo's shape (a header that disagrees with its
        # data): decode it in full, which is what the download would give
        reduced = decode(data, max_pixels)
        height, width = reduced.shape[:2]

    def full_rgb() -> np.ndarray:
        rgb = decode(data, max_pixels)
        if rgb.shape[:2] != (height, width):
            raise HTTPException(400, "the file is unreadable (its size changed between decodes)")
        return rgb

    return colorizer.prepare(reduced, FullPhoto((height, width), len(data), full_rgb))


def display_name(filename: str | None) -> str:
    """The stem of an uploaded file's name, as the page names downloads after it: any folder
    a browser sent stripped, control characters dropped, at most MAX_NAME characters."""
    stem = PurePath((filename or "").replace("\\", "/")).stem
    stem = re.sub(r"[\x00-\x1f\x7f]", "", stem).strip()[:MAX_NAME]
    return stem or "photo"


class PhotoStore:
    """Prepared photos by id, the least recently used dropped once there are more than
    ``max_photos`` or they hold more than ``max_bytes``. Used from the event loop only."""

    def __init__(self, max_photos: int, max_bytes: int) -> None:
        self.photos: OrderedDict[str, PreparedPhoto] = OrderedDict()
        self.max_photos, self.max_bytes, self.nbytes = max_photos, max_bytes, 0

    def add(self, photo: PreparedPhoto) -> str:
        if photo.nbytes > self.max_bytes:
            raise HTTPException(
                413,
                f"the photo needs {photo.nbytes / 1e6:.0f} MB of memory on the server; the limit "
                f"for photos is {self.max_bytes / 1e6:g} MB (limits.max_photo_memory_mb)",
            )
        photo_id = uuid.uuid4().hex
        self.photos[photo_id] = photo
        self.nbytes += photo.nbytes
        while len(self.photos) > self.max_photos or self.nbytes > self.max_bytes:
            _, dropped = self.photos.popitem(last=False)
            self.nbytes -= dropped.nbytes
        return photo_id

    def get(self, photo_id: str) -> PreparedPhoto:
        photo = self.photos.get(photo_id)
        if photo is None:
            raise HTTPException(404, "this photo is no longer on the server: upload it again")
        self.photos.move_to_end(photo_id)
        return photo
