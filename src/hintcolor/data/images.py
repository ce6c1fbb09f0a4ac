"""Finding, decoding and vetting photos on disk.

Every photo becomes 8-bit RGB whatever it was stored as (EXIF rotation applied; RGBA,
palette, 16-bit and CMYK converted). Grayscale photos carry no colour to learn and are
skipped; unreadable and over-large files are skipped and reported, never a crash in the
middle of a run; files of other formats are counted and reported, never silently ignored.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageOps

log = logging.getLogger(__name__)

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
# Photos with more pixels are skipped at vetting (data.max_pixels): a PNG near Pillow's own
# limit (89 MP) takes seconds and ~2 GB to decode, at every read. 50 MP keeps every phone's
# and most cameras' default photos; large JPEGs are decoded at reduced size anyway (draft).
DEFAULT_MAX_PIXELS = 50_000_000
# Mean of |R-G|, |G-B|, |R-B| on a 0..255 scale below which a photo counts as grayscale.
GRAYSCALE_THRESHOLD = 2.0
# Vetting decodes a reduced copy (JPEG draft mode): the grayscale statistic is a mean, so
# it barely moves, and scanning 10,000 photos stays a matter of seconds per core.
SCAN_SIDE = 256


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


def load_rgb(
    path: str | os.PathLike | BinaryIO, max_side: int | None = None, min_side: int | None = None
) -> np.ndarray:
    """Decode ``path`` (or an open binary file) to an (H, W, 3) uint8 RGB array, EXIF orientation
    applied.

    ``max_side`` allows a reduced decode (at least that many pixels on each side kept, then
    shrunk to at most twice that). ``min_side`` lets a JPEG decode at 1/2, 1/4 or 1/8 scale
    (DCT scaling, nearly free) as long as both sides keep at least ``min_side`` pixels; other
    formats decode in full. Raises ``OSError``/``ValueError`` for unreadable files.
    """
    with Image.open(path) as img:
        draft = max_side or min_side
        if draft is not None:
            img.draft("RGB", (draft, draft))
        img = ImageOps.exif_transpose(img)
        img.load()
        rgb = _to_rgb(img)
        if max_side is not None and max(rgb.size) > 2 * max_side:
            rgb.thumbnail((2 * max_side, 2 * max_side))
        return np.asarray(rgb, dtype=np.uint8).copy()


def allow_pixels(max_pixels: int) -> None:
    """Let Pillow open photos up to ``max_pixels`` (data.max_pixels governs here).

    Pillow refuses photos over twice its own bomb limit (89 MP) and warns above it; a user
    who raised data.max_pixels past that means it. Never lowers Pillow's limit.
    """
    if Image.MAX_IMAGE_PIXELS is not None and max_pixels > Image.MAX_IMAGE_PIXELS:
        Image.MAX_IMAGE_PIXELS = max_pixels


def image_pixels(path: str | os.PathLike) -> tuple[int, int]:
    """(width, height) from the file's header, without decoding and whatever its size."""
    limit = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = None  # only the header is read: Pillow's bomb guard is moot
    try:
        with Image.open(path) as img:
            return img.size
    finally:
        Image.MAX_IMAGE_PIXELS = limit


def channel_difference(rgb: np.ndarray) -> float:
    """Mean of |R-G|, |G-B| and |R-B| over all pixels (0..255 scale)."""
    x = rgb.astype(np.int16)
    r, g, b = x[..., 0], x[..., 1], x[..., 2]
    return float((np.abs(r - g).mean() + np.abs(g - b).mean() + np.abs(r - b).mean()) / 3.0)


def is_grayscale(rgb: np.ndarray, threshold: float = GRAYSCALE_THRESHOLD) -> bool:
    return channel_difference(rgb) < threshold


def _vet(path: str, max_pixels: int) -> tuple[str, str, int]:
    """(verdict, detail, pixels) for one file; runs in worker processes.

    verdict is 'ok', 'grayscale', 'unreadable' or 'too_large'; a photo over ``max_pixels``
    is not decoded at all (that is the cost being avoided).
    """
    try:
        width, height = image_pixels(path)
        pixels = width * height
        if pixels > max_pixels:
            return "too_large", f"{width}x{height}", pixels
        allow_pixels(max_pixels)
        with Image.open(path) as img:
            if img.mode in ("1", "L", "LA", "I;16", "I;16B", "I;16L", "I", "F"):
                img.load()  # still catch truncated files
                return "grayscale", img.mode, pixels
        rgb = load_rgb(path, max_side=SCAN_SIDE)
    except Exception as exc:  # any decoder error means "unreadable", whatever its type
        return "unreadable", f"{type(exc).__name__}: {exc}", 0
    if min(rgb.shape[:2]) < 1:
        return "unreadable", "empty image", 0
    return ("grayscale", "", pixels) if is_grayscale(rgb) else ("ok", "", pixels)


@dataclass
class ScanReport:
    """The outcome of vetting a list of files."""

    usable: list[Path] = field(default_factory=list)
    grayscale: list[Path] = field(default_factory=list)
    unreadable: dict[Path, str] = field(default_factory=dict)
    # path -> "WxH" of photos over the pixel limit in force (``max_pixels``)
    too_large: dict[Path, str] = field(default_factory=dict)
    max_pixels: int = DEFAULT_MAX_PIXELS

    def summary(self, name: str) -> str:
        return (
            f"{name}: {len(self.usable)} usable images, {len(self.grayscale)} grayscale skipped, "
            f"{len(self.unreadable)} unreadable skipped, {len(self.too_large)} over "
            f"data.max_pixels skipped"
        )


def _cache_key(path: Path) -> str:
    st = path.stat()
    return f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}"


def _load_cache(cache_file: Path | None) -> dict[str, list]:
    if cache_file is None or not cache_file.exists():
        return {}
    try:
        return json.loads(cache_file.read_text())
    except (OSError, ValueError):
        return {}


def _needs_vetting(entry: list | None, max_pixels: int) -> bool:
    # Entries of the older two-field format carry no pixel count; a photo found too large
    # under a lower limit was never decoded, so a raised limit must vet it now.
    if entry is None or len(entry) != 3:
        return True
    return entry[0] == "too_large" and entry[2] <= max_pixels


def scan_images(
    files: Sequence[Path],
    cache_dir: str | os.PathLike | None = None,
    workers: int = 0,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> ScanReport:
    """Vet ``files`` (size limit, decode, grayscale rule), with results cached across runs.

    The cache maps path + size + mtime to the verdict, so a 10,000-photo folder is decoded
    once, not at every start.
    """
    cache_file = None
    if cache_dir is not None:
        # surrogateescape (via fsencode): file names that are not valid UTF-8 still hash
        listing = b"\n".join(os.fsencode(f) for f in files)
        cache_file = Path(cache_dir) / f"scan-{hashlib.sha1(listing).hexdigest()[:16]}.json"
    cache = _load_cache(cache_file)
    keys = []
    for f in files:
        try:
            keys.append(_cache_key(f))
        except OSError:
            keys.append(f"{f}|missing")
    todo = [
        (f, k) for f, k in zip(files, keys, strict=True) if _needs_vetting(cache.get(k), max_pixels)
    ]
    if todo:
        if len(todo) >= 1000:  # minutes on a big folder: say why the start is slow
            log.info(f"vetting {len(todo)} new photo(s) (cached for later runs)")
        vet = partial(_vet, max_pixels=max_pixels)
        paths = [str(f) for f, _ in todo]
        if workers > 1 and len(todo) >= 64:
            with ProcessPoolExecutor(workers) as pool:
                verdicts = list(pool.map(vet, paths, chunksize=16))
        else:
            verdicts = [vet(p) for p in paths]
        for (_, key), verdict in zip(todo, verdicts, strict=True):
            cache[key] = list(verdict)
        if cache_file is not None:
            _write_json_atomic(cache_file, {k: cache[k] for k in keys})
    return _report(files, [cache[k] for k in keys], max_pixels)


def _report(files: Sequence[Path], verdicts: list[list], max_pixels: int) -> ScanReport:
    report = ScanReport(max_pixels=max_pixels)
    for f, (status, detail, pixels) in zip(files, verdicts, strict=True):
        if pixels > max_pixels:  # also a photo vetted earlier under a higher limit
            report.too_large[f] = detail or f"{pixels} pixels"
        elif status == "ok":
            report.usable.append(f)
        elif status == "grayscale":
            report.grayscale.append(f)
        else:
            report.unreadable[f] = detail
    return report


def _write_json_atomic(path: Path, payload: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(payload))
    os.replace(tmp, path)


def log_report(report: ScanReport, name: str) -> None:
    """Log the counts, and list the skipped files (unreadable, too large) once."""
    log.info(report.summary(name))
    if report.unreadable:
        lines = "\n".join(f"  {shown(p)}: {why}" for p, why in report.unreadable.items())
        log.warning(f"{name}: skipped {len(report.unreadable)} unreadable file(s):\n{lines}")
    if report.too_large:
        lines = "\n".join(f"  {shown(p)}: {size}" for p, size in report.too_large.items())
        log.warning(
            f"{name}: skipped {len(report.too_large)} photo(s) over "
            f"data.max_pixels={report.max_pixels} ({report.max_pixels / 1e6:g} MP); each read "
            f"would decode the whole photo (seconds and GBs for a PNG). Raise the limit with "
            f"data.max_pixels=<pixels>, or downscale these files:\n{lines}"
        )
