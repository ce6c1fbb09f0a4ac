"""Finding, decoding and vetting photos on disk.

Every photo becomes 8-bit RGB whatever it was stored as (EXIF rotation applied; RGBA,
palette, 16-bit and CMYK converted). Grayscale photos carry no colour to learn and are
skipped; unreadable files are skipped and reported, never a crash in the middle of a run.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageOps

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
# Mean of |R-G|, |G-B|, |R-B| on a 0..255 scale below which a photo counts as grayscale.
GRAYSCALE_THRESHOLD = 2.0
# Vetting decodes a reduced copy (JPEG draft mode): the grayscale statistic is a mean, so
# it barely moves, and scanning 10,000 photos stays a matter of seconds per core.
SCAN_SIDE = 256


def find_images(root: str | os.PathLike) -> list[Path]:
    """All image files below ``root`` (recursive, sorted), by extension, case-insensitive."""
    root = Path(root)
    if not root.exists():
        raise FileNotFoundError(f"image folder {root} does not exist")
    if not root.is_dir():
        raise NotADirectoryError(f"{root} is not a folder")
    files = sorted(
        p for p in root.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file()
    )
    if not files:
        raise FileNotFoundError(
            f"no images under {root} (looked for {', '.join(IMAGE_EXTENSIONS)}, recursively)"
        )
    return files


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


def load_rgb(path: str | os.PathLike | BinaryIO, max_side: int | None = None) -> np.ndarray:
    """Decode ``path`` (or an open binary file) to an (H, W, 3) uint8 RGB array, EXIF orientation
    applied.

    ``max_side`` allows a reduced decode (at least that many pixels on each side kept).
    Raises ``OSError``/``ValueError`` for unreadable files.
    """
    with Image.open(path) as img:
        if max_side is not None:
            img.draft("RGB", (max_side, max_side))
        img = ImageOps.exif_transpose(img)
        img.load()
        rgb = _to_rgb(img)
        if max_side is not None and max(rgb.size) > 2 * max_side:
            rgb.thumbnail((2 * max_side, 2 * max_side))
        return np.asarray(rgb, dtype=np.uint8).copy()


def channel_difference(rgb: np.ndarray) -> float:
    """Mean of |R-G|, |G-B| and |R-B| over all pixels (0..255 scale)."""
    x = rgb.astype(np.int16)
    r, g, b = x[..., 0], x[..., 1], x[..., 2]
    return float((np.abs(r - g).mean() + np.abs(g - b).mean() + np.abs(r - b).mean()) / 3.0)


def is_grayscale(rgb: np.ndarray, threshold: float = GRAYSCALE_THRESHOLD) -> bool:
    return channel_difference(rgb) < threshold


def _vet(path: str) -> tuple[str, str]:
    """('ok' | 'grayscale' | 'unreadable', detail) for one file; runs in worker processes."""
    try:
        with Image.open(path) as img:
            if img.mode in ("1", "L", "LA", "I;16", "I;16B", "I;16L", "I", "F"):
                img.load()  # still catch truncated files
                return "grayscale", img.mode
        rgb = load_rgb(path, max_side=SCAN_SIDE)
    except Exception as exc:  # any decoder error means "unreadable", whatever its type
        return "unreadable", f"{type(exc).__name__}: {exc}"
    if min(rgb.shape[:2]) < 1:
        return "unreadable", "empty image"
    return ("grayscale", "") if is_grayscale(rgb) else ("ok", "")


@dataclass
class ScanReport:
    """The outcome of vetting a list of files."""

    usable: list[Path] = field(default_factory=list)
    grayscale: list[Path] = field(default_factory=list)
    unreadable: dict[Path, str] = field(default_factory=dict)

    def summary(self, name: str) -> str:
        return (
            f"{name}: {len(self.usable)} usable images, {len(self.grayscale)} grayscale skipped, "
            f"{len(self.unreadable)} unreadable skipped"
        )


def _cache_key(path: Path) -> str:
    st = path.stat()
    return f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}"


def scan_images(
    files: Sequence[Path], cache_dir: str | os.PathLike | None = None, workers: int = 0
) -> ScanReport:
    """Vet ``files`` (decode, grayscale rule), with results cached across runs.

    The cache maps path + size + mtime to the verdict, so a 10,000-photo folder is decoded
    once, not at every start.
    """
    cache_file = None
    cache: dict[str, list[str]] = {}
    if cache_dir is not None:
        digest = hashlib.sha1("\n".join(str(f) for f in files).encode()).hexdigest()[:16]
        cache_file = Path(cache_dir) / f"scan-{digest}.json"
        if cache_file.exists():
            try:
                cache = json.loads(cache_file.read_text())
            except (OSError, ValueError):
                cache = {}
    keys = []
    for f in files:
        try:
            keys.append(_cache_key(f))
        except OSError:
            keys.append(f"{f}|missing")
    todo = [(f, k) for f, k in zip(files, keys, strict=True) if k not in cache]
    if todo:
        paths = [str(f) for f, _ in todo]
        if workers > 1 and len(todo) >= 64:
            with ProcessPoolExecutor(workers) as pool:
                verdicts = list(pool.map(_vet, paths, chunksize=16))
        else:
            verdicts = [_vet(p) for p in paths]
        for (_, key), verdict in zip(todo, verdicts, strict=True):
            cache[key] = list(verdict)
        if cache_file is not None:
            _write_json_atomic(cache_file, {k: cache[k] for k in keys})
    report = ScanReport()
    for f, key in zip(files, keys, strict=True):
        status, detail = cache[key]
        if status == "ok":
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
    """Log the counts, and list the unreadable files once."""
    log.info(report.summary(name))
    if report.unreadable:
        lines = "\n".join(f"  {p}: {why}" for p, why in report.unreadable.items())
        log.warning(f"{name}: skipped {len(report.unreadable)} unreadable file(s):\n{lines}")
