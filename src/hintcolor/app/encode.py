"""What the page's images travel as.

Previews answer every click, so they cost nothing to encode or decode: raw RGBA bytes that
the page puts on its canvas as they are (a PNG took 2-5 ms to encode at 256 px, plus base64,
JSON and an image decode in the browser). The photo's first images (grayscale and automatic
colorization) are PNG data URLs inside the JSON that opens it. Downloads are PNG (lossless)
or JPEG (quality 95: ~10x faster to encode at 24 megapixels, a third of the size).

A download's PNG is written here rather than by Pillow: Pillow compresses on one thread, and
at 24 megapixels that was the download's largest cost (1.7 s of ~3.6). :func:`png_bytes`
filters rows with numpy and deflates strips of rows on several threads (zlib lets go of the
GIL), each strip a flushed piece of one deflate stream as pigz writes it: 0.64 s on 2 threads
for a file 1 % smaller than Pillow's at the same zlib level.
"""

from __future__ import annotations

import base64
import io
import struct
import zlib
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from PIL import Image

DOWNLOAD_FORMATS = {"png": "image/png", "jpeg": "image/jpeg"}
JPEG_QUALITY = 95
# zlib level of a downloaded PNG: 1 encoded a 6000x4000 photo in 1.2 s against 2.7 s at
# Pillow's default 6, for a file 37 % larger (9.7 against 7.1 MB); it is a download's largest cost
PNG_LEVEL = 1
# rows per deflated strip: ~2 MB of a 6000-px-wide photo, enough strips to keep every thread busy
PNG_STRIP_BYTES = 1 << 21
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_data_url(rgb: np.ndarray) -> str:
    buffer = io.BytesIO()
    # compress_level 1: a 256 px PNG in ~2 ms instead of ~10 ms, a few KB larger
    Image.fromarray(rgb).save(buffer, format="PNG", compress_level=1)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def rgba_bytes(rgb: np.ndarray) -> bytes:
    """(h, w, 3) uint8 -> h * w * 4 bytes, as a canvas's ImageData holds them (opaque)."""
    rgba = np.empty((*rgb.shape[:2], 4), dtype=np.uint8)
    rgba[..., :3] = rgb
    rgba[..., 3] = 255
    return rgba.tobytes()


def _png_chunk(tag: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + tag + body + struct.pack(">I", zlib.crc32(tag + body))


def _filtered_rows(rgb: np.ndarray, top: int, bottom: int) -> bytes:
    """Rows top..bottom as PNG scanlines with the Up filter (each byte minus the one above;
    uint8 arithmetic wraps as PNG's does): as small as Pillow's adaptive choice on photos,
    one numpy subtraction to compute."""
    block = rgb[top:bottom].reshape(bottom - top, -1)
    above = rgb[top - 1].reshape(-1) if top else np.zeros_like(block[0])
    lines = np.empty((bottom - top, block.shape[1] + 1), dtype=np.uint8)
    lines[:, 0] = 2  # filter type Up
    np.subtract(block[0], above, out=lines[0, 1:])
    np.subtract(block[1:], block[:-1], out=lines[1:, 1:])
    return lines.tobytes()


def png_bytes(rgb: np.ndarray, level: int = PNG_LEVEL, threads: int = 1) -> bytes:
    """(H, W, 3) uint8 -> a PNG file (8-bit RGB), deflated on ``threads`` threads.

    Each strip of rows is deflated on its own and flushed to a byte boundary (the last one
    finished), so the strips joined are one valid deflate stream; zlib's header and the
    Adler-32 of all the scanlines wrap it (RFC 1950), one IDAT chunk per strip.
    """
    height, width = rgb.shape[:2]
    rows = max(1, PNG_STRIP_BYTES // max(1, width * 3))
    tops = list(range(0, height, rows))

    def strip(top: int) -> tuple[bytes, bytes]:
        bottom = min(height, top + rows)
        raw = _filtered_rows(rgb, top, bottom)
        deflate = zlib.compressobj(level, zlib.DEFLATED, -15)  # raw deflate: no header
        last = bottom == height
        return raw, deflate.compress(raw) + deflate.flush(
            zlib.Z_FINISH if last else zlib.Z_FULL_FLUSH
        )

    with ThreadPoolExecutor(max(1, threads), thread_name_prefix="png") as pool:
        strips = list(pool.map(strip, tops))
    adler = 1
    for raw, _ in strips:
        adler = zlib.adler32(raw, adler)
    pieces = [packed for _, packed in strips]
    pieces[0] = b"\x78\x01" + pieces[0]  # deflate, 32 KB window, "fastest" level flag
    pieces[-1] += struct.pack(">I", adler)
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB
    return b"".join(
        [_PNG_SIGNATURE, _png_chunk(b"IHDR", header)]
        + [_png_chunk(b"IDAT", piece) for piece in pieces]
        + [_png_chunk(b"IEND", b"")]
    )


def encode_download(rgb: np.ndarray, fmt: str, threads: int = 1) -> bytes:
    """The full-resolution result as a file of ``fmt`` (a key of DOWNLOAD_FORMATS); a PNG is
    deflated on ``threads`` threads."""
    if fmt == "png":
        return png_bytes(rgb, PNG_LEVEL, threads)
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, "JPEG", quality=JPEG_QUALITY)
    return buffer.getvalue()
