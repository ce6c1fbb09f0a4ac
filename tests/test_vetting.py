"""Vetting photos on real files: verdicts, the resumable cache (killed scans, torn lines, new
and changed photos, concurrent writers), parallel workers, and trusting a folder (data.vet)."""

import json
import os
import signal
import subprocess
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT, compose, run_cli
from hydra.utils import instantiate
from PIL import Image
from torch.utils.data import DataLoader

from hintcolor.data import vetting
from hintcolor.data.dataset import collate_skip_failed
from hintcolor.data.images import DEFAULT_MAX_PIXELS, find_images, load_rgb
from hintcolor.data.vetting import (
    CACHE_NAME,
    channel_difference,
    is_grayscale,
    log_report,
    scan_images,
)
from hintcolor.utils.progress import ProgressLog

# Scans a folder in another process and prints how many files it decoded; with a 4th
# argument, each decode started also appends a byte to that file (so that a killed scan's
# decodes can be counted).
SCAN = """
import os, sys
from hintcolor.data import vetting
from hintcolor.data.images import find_images
if len(sys.argv) > 4:
    tally, vet_file = os.open(sys.argv[4], os.O_WRONLY | os.O_CREAT | os.O_APPEND), vetting.vet_file
    vetting.vet_file = lambda path, max_pixels: os.write(tally, b".") and vet_file(path, max_pixels)
report = vetting.scan_images(find_images(sys.argv[1]), sys.argv[2], workers=int(sys.argv[3]))
print(report.decoded, len(report.usable))
"""


@pytest.fixture
def photo(kodak_files) -> Image.Image:
    return Image.open(kodak_files[0]).convert("RGB")


def synthetic_photos(folder: Path, kodak_files: list[Path], n: int, side: int = 64) -> list[Path]:
    """``n`` small colour JPEGs: random crops of the Kodak photos with noise (24 distinct
    ones, then copies: a copy costs a decode like any photo, and writes much faster)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    sources = [np.asarray(Image.open(f).convert("RGB")) for f in kodak_files[:4]]
    for i in range(n):
        if i >= 24:
            (folder / f"{i:05d}.jpg").write_bytes((folder / f"{i % 24:05d}.jpg").read_bytes())
            continue
        src = sources[i % len(sources)]
        y, x = rng.integers(0, src.shape[0] - side), rng.integers(0, src.shape[1] - side)
        crop = src[y : y + side, x : x + side].astype(np.int16)
        noisy = np.clip(crop + rng.integers(-8, 9, crop.shape), 0, 255).astype(np.uint8)
        Image.fromarray(noisy).save(folder / f"{i:05d}.jpg", quality=80)
    return find_images(folder)


def cache_lines(cache_dir: Path) -> list[bytes]:
    path = cache_dir / CACHE_NAME
    return path.read_bytes().split(b"\n")[:-1] if path.exists() else []


def png_header_only(path: Path, width: int, height: int) -> Path:
    """A PNG whose header says ``width`` x ``height`` but whose pixel data is junk: only a
    header check tells it is too large; any decode finds it unreadable."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return len(data).to_bytes(4, "big") + body + zlib.crc32(body).to_bytes(4, "big")

    ihdr = width.to_bytes(4, "big") + height.to_bytes(4, "big") + bytes([8, 2, 0, 0, 0])
    png = (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", b"junk") + chunk(b"IEND", b"")
    )
    path.write_bytes(png)
    return path


def test_grayscale_rule(photo: Image.Image):
    rgb = np.asarray(photo)
    assert not is_grayscale(rgb) and channel_difference(rgb) > 5
    gray = np.asarray(photo.convert("L").convert("RGB"))
    assert is_grayscale(gray) and channel_difference(gray) == 0


def test_scan_counts_and_caches(tmp_path: Path, photo: Image.Image):
    d = tmp_path / "photos"
    d.mkdir()
    photo.save(d / "ok.jpg")
    photo.convert("L").convert("RGB").save(d / "gray.png")
    photo.convert("L").save(d / "gray_l.jpg")
    good = (d / "ok.jpg").read_bytes()
    (d / "truncated.jpg").write_bytes(good[: len(good) // 2])
    (d / "garbage.png").write_bytes(b"\x89PNG not really")
    files = find_images(d)
    cache = tmp_path / "cache"
    report = scan_images(files, cache_dir=cache)
    assert [p.name for p in report.usable] == ["ok.jpg"]
    assert sorted(p.name for p in report.grayscale) == ["gray.png", "gray_l.jpg"]
    assert sorted(p.name for p in report.unreadable) == ["garbage.png", "truncated.jpg"]
    assert "1 usable images, 2 grayscale skipped, 2 unreadable skipped" in report.summary("x")
    assert report.decoded == 5 and len(cache_lines(cache)) == 5
    assert scan_images(files, cache_dir=cache).decoded == 0  # all from the cache
    # a file that changes is vetted again (size/mtime in the cache key), and only it
    (d / "truncated.jpg").write_bytes(good)
    again = scan_images(files, cache_dir=cache)
    assert sorted(p.name for p in again.usable) == ["ok.jpg", "truncated.jpg"]
    assert again.decoded == 1


def test_new_photo_in_a_vetted_folder_costs_one_decode(tmp_path, photo_folders, kodak_files):
    folder, cache = photo_folders["train"], tmp_path / "cache"
    assert scan_images(find_images(folder), cache).decoded == 6
    (folder / "new.jpg").write_bytes(kodak_files[10].read_bytes())
    report = scan_images(find_images(folder), cache)
    assert report.decoded == 1 and len(report.usable) == 7
    assert len(cache_lines(cache)) == 7


def test_torn_last_line_is_ignored(tmp_path, photo_folders):
    """A writer killed mid-line leaves half a line: that file is vetted again, the rest is
    read, and the next append starts on a line of its own."""
    files, cache = find_images(photo_folders["train"]), tmp_path / "cache"
    scan_images(files, cache)
    path = cache / CACHE_NAME
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 40])  # the last line torn
    report = scan_images(files, cache)
    assert report.decoded == 1 and len(report.usable) == 6
    lines = cache_lines(cache)
    assert (
        len(lines) == 7
        and sum(line.startswith(b"[") and line.endswith(b"]") for line in lines) == 6
    )
    assert scan_images(files, cache).decoded == 0


def test_changed_cache_entries_are_compacted(tmp_path, photo_folders, monkeypatch):
    files, cache = find_images(photo_folders["train"]), tmp_path / "cache"
    scan_images(files, cache)
    path = cache / CACHE_NAME
    path.write_bytes(path.read_bytes() * 5 + b"junk\n")  # duplicates of every entry
    monkeypatch.setattr(vetting, "COMPACT_SLACK", 0)  # compact at this small size
    files[0].write_bytes(files[1].read_bytes())  # a changed file: its old line is stale
    report = scan_images(files, cache)
    assert report.decoded == 1
    lines = cache_lines(cache)
    assert len(lines) == 6 and len({json.loads(line)[0] for line in lines}) == 6
    assert scan_images(files, cache).decoded == 0


def test_parallel_and_serial_verdicts_agree(tmp_path, kodak_files, photo: Image.Image):
    d = tmp_path / "mixed"
    files = synthetic_photos(d, kodak_files, 60)
    photo.convert("L").save(d / "gray.jpg")
    good = files[0].read_bytes()
    (d / "truncated.jpg").write_bytes(good[: len(good) // 2])
    png_header_only(d / "huge.png", 8000, 7000)
    files = find_images(d)
    serial = scan_images(files, workers=1)
    parallel = scan_images(files, tmp_path / "cache", workers=2)
    assert parallel.decoded == len(files) == 63
    assert parallel == serial and len(parallel.usable) == 60


def test_photo_over_max_pixels_is_skipped_without_decoding(tmp_path, caplog):
    big = png_header_only(tmp_path / "big.png", 8000, 7000)  # 56 MP, over the 50 MP default
    report = scan_images([big], cache_dir=tmp_path / "cache")
    assert report.too_large == {big: "8000x7000"} and not report.usable  # a decode: unreadable
    assert "1 over data.max_pixels skipped" in report.summary("train")
    with caplog.at_level("WARNING"):
        log_report(report, "train")
    assert f"data.max_pixels={DEFAULT_MAX_PIXELS} (50 MP)" in caplog.text
    assert "Raise the limit with data.max_pixels=" in caplog.text and "big.png" in caplog.text


def test_raising_max_pixels_vets_the_photo_again(tmp_path: Path, photo: Image.Image):
    photo.save(tmp_path / "p.jpg")  # 512 x 341 = 174,592 pixels
    files = [tmp_path / "p.jpg"]
    cache = tmp_path / "cache"
    assert list(scan_images(files, cache, max_pixels=150_000).too_large) == files
    raised = scan_images(files, cache, max_pixels=200_000)
    assert raised.usable == files and raised.decoded == 1
    lowered = scan_images(files, cache, max_pixels=150_000)
    assert list(lowered.too_large) == files and lowered.decoded == 0


def test_file_name_not_utf8_is_read_and_shown(tmp_path: Path, photo: Image.Image, caplog):
    """A name in another system's encoding (bytes 0xff) is read, cached and logged."""
    bad = Path(os.fsdecode(os.fsencode(tmp_path) + b"/bad\xff.jpg"))
    photo.save(bad)
    (tmp_path / "broken\udcfe.png").write_bytes(b"\x89PNG not really")
    files = find_images(tmp_path)
    assert bad in files
    report = scan_images(files, cache_dir=tmp_path / "cache")
    assert report.usable == [bad] and len(report.unreadable) == 1
    cached = scan_images(files, cache_dir=tmp_path / "cache")
    assert cached.usable == [bad] and cached.decoded == 0
    assert load_rgb(bad).shape == np.asarray(photo).shape
    with caplog.at_level("INFO"):
        log_report(report, "train")
    assert "broken\\xfe.png" in caplog.text
    caplog.text.encode("utf-8")  # a log file handler (strict UTF-8) can write it


def test_progress_line_gives_rate_and_eta(caplog):
    now = [0.0]
    progress = ProgressLog(
        vetting.log, 1000, "vetted", "photos", "files", every_percent=25, clock=lambda: now[0]
    )
    with caplog.at_level("INFO"):
        now[0] = 1.0
        progress.advance(100)  # 10 %: quiet
        assert not caplog.text
        now[0] = 2.5
        progress.advance(150)  # 25 %
    assert "vetted 250/1000 photos (25 %), 100 files/s, 0:00:02 elapsed, ETA 0:00:08" in caplog.text


def _scan_in_subprocess(folder: Path, cache: Path, workers: int, *tally: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", SCAN, str(folder), str(cache), str(workers), *map(str, tally)],
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group: the kill takes its workers too
        env={**os.environ, "HINTCOLOR_ROOT": str(ROOT)},
    )


def test_killed_scan_resumes(tmp_path, kodak_files):
    """SIGKILL (scan and its workers) once half the verdicts are in the cache: the rescan
    decodes the rest, and what the killed scan had decoded but not yet written - decoded
    twice - is under 5 % of the folder."""
    n, cache, tally = 800, tmp_path / "cache", tmp_path / "tally"
    files = synthetic_photos(tmp_path / "photos", kodak_files, n)
    proc = _scan_in_subprocess(tmp_path / "photos", cache, 2, tally)
    while len(cache_lines(cache)) < n // 2:
        assert proc.poll() is None, "the scan ended before it could be killed"
        time.sleep(0.002)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert len(cache_lines(cache)) < n
    report = scan_images(files, cache, workers=2)
    assert len(report.usable) == n
    twice = tally.stat().st_size + report.decoded - n
    assert 0 <= twice < 0.05 * n, f"{twice} decoded twice"


@pytest.mark.slow
def test_concurrent_scans_vet_each_photo_once(tmp_path, kodak_files):
    """Two scans of one folder at once (two runs, or ranks of a node): one vets, the other
    waits for the cache's lock and reads its verdicts."""
    n, cache = 600, tmp_path / "cache"
    synthetic_photos(tmp_path / "photos", kodak_files, n)
    procs = [_scan_in_subprocess(tmp_path / "photos", cache, workers=2) for _ in range(2)]
    outputs = [p.communicate(timeout=120)[0].split() for p in procs]
    assert all(p.returncode == 0 for p in procs)
    assert sorted(int(decoded) for decoded, _ in outputs) == [0, n]
    assert [int(usable) for _, usable in outputs] == [n, n]
    assert len(cache_lines(cache)) == n


def _datamodule(tmp_path: Path, **data):
    overrides = [f"data.{k}={v}" for k, v in data.items()]
    cfg = compose("train", ["data.num_workers=0", "data.image_size=64", *overrides], tmp_path)
    return instantiate(cfg.data, hints=instantiate(cfg.hints))


def test_setup_reads_the_verdicts_prepare_data_wrote(tmp_path, photo_folders):
    """Lightning: prepare_data on one process per node, set-up on every one: the others read
    the cache and decode nothing (a decode would append a line)."""
    folders = dict(train_dir=photo_folders["train"], val_dir=photo_folders["val"])
    folders["cache_images"] = "false"  # not needed here
    first = _datamodule(tmp_path, cache_dir=tmp_path / "cache", **folders)
    first.prepare_data()
    assert len(cache_lines(tmp_path / "cache")) == 8
    first.setup("fit")
    other_rank = _datamodule(tmp_path, cache_dir=tmp_path / "cache", **folders)
    other_rank.setup("fit")
    assert len(cache_lines(tmp_path / "cache")) == 8
    assert other_rank.datasets["train"].files == first.datasets["train"].files


def test_vet_false_trusts_the_folder_and_counts_failures_at_read_time(
    tmp_path, photo_folders, caplog
):
    train = photo_folders["train"]
    Image.open(sorted(train.glob("*.jpg"))[0]).convert("L").save(train / "gray.jpg")
    (train / "corrupt.jpg").write_bytes(b"\xff\xd8 not a photo")
    png_header_only(train / "huge.png", 8000, 7000)  # over data.max_pixels: never decoded
    dm = _datamodule(
        tmp_path,
        train_dir=train,
        val_dir=photo_folders["val"],
        vet="false",
        cache_images="false",
        train_repeats=1,
        cache_dir=tmp_path / "cache",
    )
    with caplog.at_level("INFO"):
        dm.prepare_data()
        dm.setup("fit")
    assert not (tmp_path / "cache").exists()  # nothing vetted
    ds = dm.datasets["train"]
    assert {"gray.jpg", "corrupt.jpg", "huge.png"} <= {p.name for p in ds.files}
    assert len(ds.files) == 9
    assert "grayscale photos are trained on too" in caplog.text
    # two real worker processes read the photos; the main process counts their failures
    loader = DataLoader(ds, batch_size=4, num_workers=2, collate_fn=collate_skip_failed)
    seen = sum(b[0].shape[0] for b in loader if b is not None)
    assert seen == 7 * ds.repeats
    assert ds.failures.counts() == {"unreadable": 1, "over data.max_pixels": 1}
    caplog.clear()
    with caplog.at_level("WARNING"):
        dm.teardown("fit")
    assert (
        "train: 2 photo(s) could not be used when read and were skipped (1 unreadable, 1 "
        "over data.max_pixels;" in caplog.text
    )


@pytest.mark.slow
def test_ddp_ranks_vet_once(tmp_path, photo_folders):
    """trainer=ddp with 2 CPU processes: the photos are vetted once (one line each in the
    cache), the second rank reads the first one's verdicts."""
    cache = tmp_path / "cache"
    proc = run_cli(
        "train.py",
        "debug=fast",
        "callbacks.progress_bar=null",
        "data.image_size=64",
        "data.num_workers=0",
        "data.train_repeats=4",
        f"data.train_dir={photo_folders['train']}",
        f"data.val_dir={photo_folders['val']}",
        f"paths.cache_dir={cache}",
        "trainer=ddp",
        "trainer.accelerator=cpu",
        "trainer.devices=2",
        "trainer.precision=32-true",
        f"hydra.run.dir={tmp_path / 'run'}",
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = cache_lines(cache)
    assert len(lines) == 8 and len({json.loads(line)[0] for line in lines}) == 8


@pytest.mark.slow
def test_bench_vetting_runs_at_a_tiny_size(tmp_path):
    readme = tmp_path / "bench.md"
    block = "<!-- bench-vetting:begin -->\nPLACEHOLDER\n<!-- bench-vetting:end -->"
    readme.write_text(f"a\n{block}\nb\n")
    cmd = [sys.executable, str(ROOT / "scripts" / "bench_vetting.py"), "--n", "400"]
    cmd += ["--out", str(tmp_path), "--readme", str(readme)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads((tmp_path / "vetting.json").read_text())
    assert results["files_per_s_1"] > 0 and results["files_per_s_all"] > 0
    assert 0 <= results["resume_redecoded_percent"] < 100
    assert "files/s" in readme.read_text() and "PLACEHOLDER" not in readme.read_text()
