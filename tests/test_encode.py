"""The page's image encodings (src/hintcolor/app/encode.py): the download's own PNG writer."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from conftest import KODAK
from PIL import Image

from hintcolor.app import encode


def idat_payload(png: bytes) -> bytes:
    """The IDAT chunks' data joined, each chunk's CRC checked on the way."""
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    offset, payload = 8, b""
    while offset < len(png):
        (length,) = struct.unpack(">I", png[offset : offset + 4])
        tag = png[offset + 4 : offset + 8]
        body = png[offset + 8 : offset + 8 + length]
        (crc,) = struct.unpack(">I", png[offset + 8 + length : offset + 12 + length])
        assert crc == zlib.crc32(tag + body), tag
        if tag == b"IDAT":
            payload += body
        offset += 12 + length
    return payload


@pytest.mark.parametrize("shape", [(1, 1), (2, 3), (37, 53), (120, 200)])
@pytest.mark.parametrize("threads", [1, 3])
def test_png_round_trips_exactly(monkeypatch, shape, threads) -> None:
    # strips of a few rows: many pieces of one deflate stream, the last one odd-sized
    monkeypatch.setattr(encode, "PNG_STRIP_BYTES", 7 * shape[1] * 3)
    rgb = np.random.default_rng(sum(shape)).integers(0, 256, (*shape, 3), dtype=np.uint8)
    rgb[: shape[0] // 2] //= 16  # some structure for the Up filter to find
    png = encode.png_bytes(rgb, threads=threads)
    decoded = Image.open(io.BytesIO(png))
    assert decoded.mode == "RGB" and decoded.size == (shape[1], shape[0])
    np.testing.assert_array_equal(np.asarray(decoded), rgb)
    # zlib checks the Adler-32 over every scanline (each filtered "Up", type 2)
    scanlines = zlib.decompress(idat_payload(png))
    assert len(scanlines) == shape[0] * (shape[1] * 3 + 1)
    assert scanlines[:: shape[1] * 3 + 1] == b"\x02" * shape[0]


def test_png_of_a_photo_is_no_larger_than_pillows() -> None:
    """A smooth photo: the Up filter compresses about as well as Pillow's adaptive filters."""
    image = Image.open(sorted((KODAK / "val").glob("*.jpg"))[0]).convert("RGB")
    rgb = np.asarray(image)
    buffer = io.BytesIO()
    image.save(buffer, "PNG", compress_level=encode.PNG_LEVEL)
    ours = encode.png_bytes(rgb, threads=2)
    assert len(ours) <= 1.05 * len(buffer.getvalue())
    np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(ours))), rgb)


def test_download_formats() -> None:
    rgb = np.full((16, 24, 3), (200, 120, 40), dtype=np.uint8)
    assert encode.encode_download(rgb, "png", threads=2)[:8] == b"\x89PNG\r\n\x1a\n"
    jpeg = encode.encode_download(rgb, "jpeg")
    assert jpeg[:2] == b"\xff\xd8"
    assert np.abs(np.asarray(Image.open(io.BytesIO(jpeg))).astype(int) - rgb).max() <= 3


def test_rgba_bytes_are_opaque_canvas_pixels() -> None:
    rgb = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
    rgba = np.frombuffer(encode.rgba_bytes(rgb), dtype=np.uint8).reshape(2, 3, 4)
    np.testing.assert_array_equal(rgba[..., :3], rgb)
    assert (rgba[..., 3] == 255).all()
