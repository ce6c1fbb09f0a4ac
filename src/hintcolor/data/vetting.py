"""Vetting photos before training: the pixel limit, a decode, the grayscale rule.

Grayscale photos carry no colour to learn and are skipped; unreadable and over-large files
are skipped and reported, never a crash in the middle of a run.

Verdicts are cached in one JSON-lines file per cache folder (:data:`CACHE_NAME`): each worker
appends its chunk's lines as soon as it has vetted them, and the file is fsync'd every
:data:`SYNC_EVERY_S`. A scan killed at any moment loses only the chunks in flight (a machine
crash: the last half second), and the next scan decodes only the files not in the file yet;
a torn last line is ignored. Entries are keyed by a file's resolved path, size and mtime, so
a new or changed photo costs one decode, not a re-vet of its folder. One process writes at a
time (a POSIX lock beside the file); the others wait for it and then find its verdicts, so
the ranks of a node - or several nodes sharing a disk whose locks work, as the Optuna SQLite
storage needs too - vet each photo once. The file is compacted (one line per path) once
stale and duplicate lines outnumber the live ones.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import multiprocessing
import os
import socket
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import BinaryIO, TextIO

import numpy as np
from PIL import Image, ImageChops

from hintcolor.data.images import (
    DEFAULT_MAX_PIXELS,
    PhotoTooLarge,
    decode_image,
    open_photo,
    shown,
)
from hintcolor.utils.progress import ProgressLog

log = logging.getLogger(__name__)

CACHE_NAME = "vetting.jsonl"
# Mean of |R-G|, |G-B|, |R-B| on a 0..255 scale below which a photo counts as grayscale.
GRAYSCALE_THRESHOLD = 2.0
# Vetting decodes a reduced copy (JPEG draft mode): the grayscale statistic is a mean, so
# it barely moves, and a decode costs about a millisecond.
SCAN_SIDE = 256
GRAY_MODES = ("1", "L", "LA", "I;16", "I;16B", "I;16L", "I", "F")
VERDICTS = ("ok", "grayscale", "unreadable", "too_large")
# Files per worker task: what a killed scan loses is the chunks in flight, one per worker.
CHUNK_FILES = 8
# fsync at most this often: appended lines survive a killed process at once (the kernel
# has them), a machine crash loses what was not synced yet.
SYNC_EVERY_S = 0.5
# Cache lines parsed per json.loads call.
PARSE_BLOCK = 4096
# Rewrite the cache once it holds this many more lines than live entries (old versions of
# changed files, re-vetted photos, torn lines).
COMPACT_SLACK = 1000
# Scans of fewer new files stay quiet: seconds at most.
PROGRESS_MIN_FILES = 1000

_LEVELS = np.tile(np.arange(256, dtype=np.int64), 3)

Verdict = tuple[str, str, int]  # (verdict, detail, pixels)
FileId = tuple[str, int, int]  # (resolved path, size, mtime in ns)


def channel_difference(rgb: np.ndarray) -> float:
    """Mean of |R-G|, |G-B| and |R-B| over all pixels (0..255 scale)."""
    x = rgb.reshape(-1, 3).astype(np.int16)
    r, g, b = x[:, 0], x[:, 1], x[:, 2]
    return float((np.abs(r - g).mean() + np.abs(g - b).mean() + np.abs(r - b).mean()) / 3.0)


def image_channel_difference(img: Image.Image) -> float:
    """:func:`channel_difference` of an RGB image, computed by Pillow (differences and
    histograms in C: ~10x faster than numpy on the strided channels, same value)."""
    r, g, b = img.split()
    differences = Image.merge("RGB", [ImageChops.difference(*p) for p in ((r, g), (g, b), (r, b))])
    total = int(np.dot(_LEVELS, differences.histogram()))  # 3 x 256 counts, one call
    return total / (3.0 * img.width * img.height)


def is_grayscale(rgb: np.ndarray, threshold: float = GRAYSCALE_THRESHOLD) -> bool:
    return channel_difference(rgb) < threshold


def vet_file(path: str | os.PathLike | BinaryIO, max_pixels: int) -> Verdict:
    """(verdict, detail, pixels) for one file, in one open; runs in worker processes.

    verdict is 'ok', 'grayscale', 'unreadable' or 'too_large'; a photo over ``max_pixels``
    is not decoded at all (that is the cost being avoided).
    """
    try:
        with open_photo(path, max_pixels) as img:
            pixels = img.width * img.height
            if img.mode in GRAY_MODES:
                img.draft(img.mode, (SCAN_SIDE, SCAN_SIDE))
                img.load()  # still catch truncated files
                return "grayscale", img.mode, pixels
            rgb = decode_image(img, max_side=SCAN_SIDE)
            if min(rgb.size) < 1:
                return "unreadable", "empty image", 0
            difference = image_channel_difference(rgb)
    except PhotoTooLarge as exc:
        return "too_large", f"{exc.width}x{exc.height}", exc.pixels
    except Exception as exc:  # any decoder error means "unreadable", whatever its type
        return "unreadable", f"{type(exc).__name__}: {exc}", 0
    return ("grayscale", "", pixels) if difference < GRAYSCALE_THRESHOLD else ("ok", "", pixels)


@dataclass
class ScanReport:
    """The outcome of vetting a list of files."""

    usable: list[Path] = field(default_factory=list)
    grayscale: list[Path] = field(default_factory=list)
    unreadable: dict[Path, str] = field(default_factory=dict)
    # path -> "WxH" of photos over the pixel limit in force (``max_pixels``)
    too_large: dict[Path, str] = field(default_factory=dict)
    max_pixels: int = DEFAULT_MAX_PIXELS
    decoded: int = 0  # files this scan opened; the others' verdicts came from the cache

    def summary(self, name: str) -> str:
        return (
            f"{name}: {len(self.usable)} usable images, {len(self.grayscale)} grayscale skipped, "
            f"{len(self.unreadable)} unreadable skipped, {len(self.too_large)} over "
            f"data.max_pixels skipped"
        )


def usable_cores() -> int:
    """The cores this process may run on (a cluster job's share, not the whole machine)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def identify(files: Sequence[Path]) -> list[FileId | OSError]:
    """Each file's cache key, or the error that stat gave (a file gone since the listing)."""
    real_dirs: dict[str, str] = {}  # one realpath per folder, not per file (1.3 M of them)
    out: list[FileId | OSError] = []
    for f in files:
        try:
            st = os.stat(f)
        except OSError as exc:
            out.append(exc)
            continue
        folder, name = os.path.split(os.fspath(f))
        real = real_dirs.get(folder)
        if real is None:
            real = real_dirs[folder] = os.path.realpath(folder or ".")
        out.append((os.path.join(real, name), st.st_size, st.st_mtime_ns))
    return out


class VerdictCache:
    """The verdicts of one cache folder: read without a lock, appended under it.

    ``entries`` maps a resolved path to (size, mtime_ns, verdict, detail, pixels); a later
    line for the same path wins. ``cache_dir`` None: nothing is kept.
    """

    def __init__(self, cache_dir: str | os.PathLike | None) -> None:
        self.path = Path(cache_dir) / CACHE_NAME if cache_dir is not None else None
        self.entries: dict[str, tuple[int, int, str, str, int]] = {}
        self.lines = 0  # lines read or written, duplicates and unreadable ones included
        self._inode: int | None = None
        self._offset = 0  # bytes of whole lines read so far

    def refresh(self) -> None:
        """Read what was appended since the last call (all of it after a compaction)."""
        if self.path is None or not self.path.exists():
            return
        with open(self.path, "rb") as f:
            st = os.fstat(f.fileno())
            if st.st_ino != self._inode or st.st_size < self._offset:
                self.entries.clear()  # replaced by a compaction: read it afresh
                self.lines, self._offset, self._inode = 0, 0, st.st_ino
            f.seek(self._offset)
            block: list[bytes] = []
            for line in f:  # line by line: 1.3 M of them are ~130 MB
                if not line.endswith(b"\n"):
                    break  # a torn last line (a writer killed mid-line) stays unread
                self._offset += len(line)
                block.append(line)
                if len(block) == PARSE_BLOCK:
                    self._parse(block)
                    block = []
            self._parse(block)

    def _parse(self, lines: list[bytes]) -> None:
        self.lines += len(lines)
        try:  # one JSON array per block: ~6x faster than a json.loads per line
            rows = json.loads(b"[" + b",".join(lines) + b"]")
        except ValueError:  # a junk line in the block (a torn line that a writer ended)
            rows = []
            for line in lines:
                with contextlib.suppress(ValueError):
                    rows.append(json.loads(line))
        for row in rows:
            if not isinstance(row, list) or len(row) != 6 or row[3] not in VERDICTS:
                continue
            path, size, mtime, verdict, detail, pixels = row
            verdict = VERDICTS[VERDICTS.index(verdict)]  # one string object, not 1.3 M
            self.entries[path] = (size, mtime, verdict, detail, pixels)

    def lookup(self, file_id: FileId, max_pixels: int) -> Verdict | None:
        path, size, mtime = file_id
        entry = self.entries.get(path)
        if entry is None or entry[0] != size or entry[1] != mtime:
            return None
        verdict, detail, pixels = entry[2:]
        # A photo found too large under a lower limit was never decoded: a raised limit must
        # vet it now.
        if verdict == "too_large" and pixels <= max_pixels:
            return None
        return verdict, detail, pixels

    @contextlib.contextmanager
    def writing(self) -> Iterator[None]:
        """Hold the cache's lock (waiting for another writer) and read what it wrote."""
        if self.path is None:
            yield
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            lock = open(self.path.with_name(CACHE_NAME + ".lock"), "a+")  # noqa: SIM115
        except OSError as exc:
            raise OSError(
                f"cannot write the vetting cache in {self.path.parent} ({exc.strerror}): set "
                f"data.cache_dir to a writable folder, or data.vet=false to trust the folders"
            ) from exc
        with lock:
            self._lock(lock)
            lock.truncate(0)
            lock.write(f"pid {os.getpid()} on {socket.gethostname()}\n")
            lock.flush()
            try:
                self.refresh()
                yield
            finally:
                fcntl.lockf(lock, fcntl.LOCK_UN)

    def _lock(self, lock: TextIO) -> None:
        # lockf, not flock: a POSIX lock is not inherited by the forked workers, so one
        # orphaned by a killed scan cannot keep the cache locked.
        try:
            try:
                fcntl.lockf(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except (BlockingIOError, PermissionError):  # held by another process
                lock.seek(0)
                holder = lock.read().strip() or "another process"
                log.info(f"waiting for {holder} to finish vetting into {self.path}")
                fcntl.lockf(lock, fcntl.LOCK_EX)
        except OSError as exc:  # e.g. ENOLCK: a network file system without locks
            raise OSError(
                f"cannot lock the vetting cache {self.path} ({exc.strerror}): put data.cache_dir "
                f"on a file system with working locks (e.g. a local disk), or data.vet=false"
            ) from exc

    def start_appending(self) -> str | None:
        """The file to append verdict lines to, whole lines only (inside :meth:`writing`): a
        torn last line (a writer killed mid-line) is ended first, so that it parses as junk
        instead of spoiling the next line."""
        if self.path is None:
            return None
        with open(self.path, "ab") as f:
            if f.tell() > self._offset:
                f.write(b"\n")
                self.lines += 1
        return str(self.path)

    def record(self, file_id: FileId, verdict: Verdict) -> None:
        """A verdict that was just appended to the file (by :func:`_vet_chunk`)."""
        path, size, mtime = file_id
        self.entries[path] = (size, mtime, *verdict)
        self.lines += 1

    def sync(self) -> None:
        """Make the appended lines survive a machine crash too."""
        if self.path is not None and self.path.exists():
            fd = os.open(self.path, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)

    def compact_if_grown(self) -> None:
        """Rewrite the file with one line per path once stale lines dominate it (inside
        :meth:`writing`)."""
        if self.path is None or self.lines <= 2 * len(self.entries) + COMPACT_SLACK:
            return
        tmp = self.path.with_name(f"{CACHE_NAME}.{os.getpid()}.tmp")
        with open(tmp, "wb") as f:
            for path, entry in self.entries.items():
                f.write((json.dumps([path, *entry]) + "\n").encode())
            f.flush()
            os.fsync(f.fileno())
            self._offset = f.tell()
        os.replace(tmp, self.path)
        log.info(f"compacted {self.path}: {self.lines} lines -> {len(self.entries)}")
        self._inode, self.lines = self.path.stat().st_ino, len(self.entries)


# In each vetting process: where _vet_chunk appends its lines (None: not cached).
_output: int | None = None


def _open_output(path: str | None) -> None:
    """Pool initializer (and the serial scan's set-up): open the cache for appending."""
    global _output
    _output = os.open(path, os.O_WRONLY | os.O_APPEND) if path is not None else None


def _line(file_id: FileId, verdict: Verdict) -> str:
    return json.dumps([*file_id, *verdict]) + "\n"


def _vet_chunk(chunk: list[tuple[int, str, FileId]], max_pixels: int) -> list[tuple[int, Verdict]]:
    """Vet a chunk and append its lines to the cache at once, in one write (O_APPEND: whole
    lines, whichever worker writes): a kill of the scan then loses only the chunks in flight."""
    results = [(i, vet_file(path, max_pixels)) for i, path, _ in chunk]
    if _output is not None:
        lines = [_line(file_id, v) for (_, _, file_id), (_, v) in zip(chunk, results, strict=True)]
        os.write(_output, "".join(lines).encode())
    return results


def _verdict_stream(
    chunks: list[list[tuple[int, str, FileId]]], output: str | None, workers: int, max_pixels: int
) -> Iterator[list[tuple[int, Verdict]]]:
    """Each chunk's verdicts as soon as they are done (and in the cache), in any order."""
    vet = partial(_vet_chunk, max_pixels=max_pixels)
    # A daemonic process (a loader worker, some launchers' jobs) may not start a pool.
    if workers <= 1 or len(chunks) < 4 or multiprocessing.current_process().daemon:
        _open_output(output)
        try:
            yield from map(vet, chunks)
        finally:
            if _output is not None:
                os.close(_output)
            _open_output(None)
        return
    # Pool, not ProcessPoolExecutor: its workers close their copy of the task pipe, so they
    # exit when a killed scan's main process is gone instead of lingering.
    with multiprocessing.Pool(min(workers, len(chunks)), _open_output, (output,)) as pool:
        yield from pool.imap_unordered(vet, chunks)


def _vet_into_cache(
    todo: list[tuple[int, str, FileId]], cache: VerdictCache, workers: int, max_pixels: int
) -> dict[int, Verdict]:
    """Vet ``todo`` ((index, path, file id)), the verdicts appended to ``cache`` as they come."""
    chunks = [todo[i : i + CHUNK_FILES] for i in range(0, len(todo), CHUNK_FILES)]
    progress = (
        ProgressLog(log, len(todo), "vetted", "photos", "files")
        if len(todo) >= PROGRESS_MIN_FILES
        else None
    )
    if progress:
        log.info(
            f"vetting {len(todo)} new photo(s) with {max(workers, 1)} process(es), cached in "
            f"{cache.path} for later runs"
        )
    ids = {i: file_id for i, _, file_id in todo}
    verdicts: dict[int, Verdict] = {}
    last_sync = time.monotonic()
    for results in _verdict_stream(chunks, cache.start_appending(), workers, max_pixels):
        for i, verdict in results:
            verdicts[i] = verdict
            cache.record(ids[i], verdict)
        if progress:
            progress.advance(len(results))
        if time.monotonic() - last_sync >= SYNC_EVERY_S:
            cache.sync()
            last_sync = time.monotonic()
    cache.sync()
    return verdicts


def scan_images(
    files: Sequence[Path],
    cache_dir: str | os.PathLike | None = None,
    workers: int = 0,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> ScanReport:
    """Vet ``files`` (size limit, decode, grayscale rule) over ``workers`` processes, with
    verdicts cached in ``cache_dir`` across runs (see the module's docstring)."""
    ids = identify(files)
    cache = VerdictCache(cache_dir)
    cache.refresh()
    verdicts: dict[int, Verdict] = {}
    for i, file_id in enumerate(ids):
        if isinstance(file_id, OSError):
            verdicts[i] = ("unreadable", f"{type(file_id).__name__}: {file_id}", 0)
        elif (known := cache.lookup(file_id, max_pixels)) is not None:
            verdicts[i] = known
    decoded = 0
    if len(verdicts) < len(files):
        with cache.writing():  # another process may have vetted them while we waited
            todo = []
            for i, file_id in enumerate(ids):
                if i not in verdicts:
                    known = cache.lookup(file_id, max_pixels)
                    if known is None:
                        todo.append((i, os.fspath(files[i]), file_id))
                    else:
                        verdicts[i] = known
            verdicts.update(_vet_into_cache(todo, cache, workers, max_pixels))
            cache.compact_if_grown()
            decoded = len(todo)
    report = _report(files, [verdicts[i] for i in range(len(files))], max_pixels)
    report.decoded = decoded
    return report


def _report(files: Sequence[Path], verdicts: list[Verdict], max_pixels: int) -> ScanReport:
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
