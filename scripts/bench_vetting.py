"""How fast is photo vetting, and how much does a killed scan cost? (issue 16's vetting bars)

    python scripts/bench_vetting.py [--n 20000] [--side 256] [--out logs/bench/vetting]

Generates a synthetic folder of --n JPEGs (random crops of the embedded Kodak photos with
noise, --side px, in a temporary folder, deleted afterwards) and measures: vetting files/s
with 1 process and with every core; a restart with a warm cache; time to the first training
batch of ColorizationDataModule (cold cache, warm cache, data.vet=false) for --n/10 and --n
photos, extrapolated linearly to --extrapolate photos; and a scan in a subprocess SIGKILLed
once half the files are in the cache, then rerun: the files decoded twice, in % of the folder.
Prints a Markdown table and writes it, with JSON, to --out.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from multiprocessing import Pool
from pathlib import Path

import numpy as np
from hydra import compose, initialize_config_dir
from PIL import Image
from reports import publish

from hintcolor.build import build_datamodule
from hintcolor.data.images import find_images
from hintcolor.data.vetting import CACHE_NAME, scan_images, usable_cores

ROOT = Path(__file__).resolve().parents[1]
KODAK = sorted((ROOT / "data" / "kodak24").rglob("*.jpg"))
# A scan in another process; with a tally file, each decode it starts appends a byte there,
# so that the decodes of a killed scan can be counted.
SCAN = """
import os, sys
from hintcolor.data import vetting
from hintcolor.data.images import find_images
tally, vet_file = os.open(sys.argv[4], os.O_WRONLY | os.O_CREAT | os.O_APPEND), vetting.vet_file
vetting.vet_file = lambda path, max_pixels: os.write(tally, b".") and vet_file(path, max_pixels)
vetting.scan_images(find_images(sys.argv[1]), sys.argv[2], workers=int(sys.argv[3]))
"""


def _write_photos(job: tuple[Path, int, int, int]) -> None:
    folder, start, stop, side = job
    rng = np.random.default_rng(start)
    sources = [np.asarray(Image.open(f).convert("RGB")) for f in KODAK]
    for i in range(start, stop):
        src = sources[rng.integers(len(sources))]
        y, x = rng.integers(0, src.shape[0] - side + 1), rng.integers(0, src.shape[1] - side + 1)
        crop = src[y : y + side, x : x + side].astype(np.int16)
        if rng.random() < 0.5:
            crop = crop[:, ::-1]
        noisy = np.clip(crop + rng.integers(-6, 7, crop.shape), 0, 255).astype(np.uint8)
        Image.fromarray(noisy).save(folder / f"{i:07d}.jpg", quality=90)


def make_folder(root: Path, n: int, side: int, workers: int) -> list[Path]:
    """``n`` JPEGs: the first tenth in ``root/part0``, the rest in ``root/part1``."""
    tenth = max(n // 10, 1)
    jobs = []
    for part, (lo, hi) in enumerate([(0, tenth), (tenth, n)]):
        folder = root / f"part{part}"
        folder.mkdir(parents=True)
        step = max((hi - lo) // (4 * workers), 1)
        jobs += [(folder, s, min(s + step, hi), side) for s in range(lo, hi, step)]
    with Pool(workers) as pool:
        pool.map(_write_photos, jobs)
    return find_images(root)


def vetting_rate(files: list[Path], cache: Path, workers: int) -> float:
    start = time.perf_counter()
    report = scan_images(files, cache, workers=workers)
    assert report.decoded == len(files) and len(report.usable) == len(files)
    return len(files) / (time.perf_counter() - start)


def time_to_first_batch(folder: Path, cache: Path, vet: bool, tmp: Path) -> float:
    """Seconds from building the data module to its first training batch, as a run does."""
    overrides = [
        f"paths.log_dir={tmp}",
        f"paths.output_dir={tmp}",
        "data=folder",
        f"data.train_dir={folder}",
        f"data.cache_dir={cache}",
        f"data.vet={str(vet).lower()}",
    ]
    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("train", overrides=overrides)
    start = time.perf_counter()
    datamodule = build_datamodule(cfg.data, cfg.hints)
    datamodule.prepare_data()
    datamodule.setup("fit")
    next(iter(datamodule.train_dataloader()))
    return time.perf_counter() - start


def first_batch_times(root: Path, n: int, tmp: Path) -> dict[str, list[float]]:
    """{cold, warm, unvetted} -> [seconds for n/10 photos, seconds for n photos]."""
    times: dict[str, list[float]] = {"cold": [], "warm": [], "unvetted": []}
    for i, folder in enumerate([root / "part0", root]):
        cache = tmp / f"ttfb-cache-{i}"
        times["cold"].append(time_to_first_batch(folder, cache, True, tmp))
        times["warm"].append(time_to_first_batch(folder, cache, True, tmp))
        times["unvetted"].append(time_to_first_batch(folder, cache, False, tmp))
    return times


def killed_scan(root: Path, files: list[Path], tmp: Path, workers: int) -> dict[str, float]:
    """SIGKILL a scan (and its workers) once half the verdicts are in its cache; rerun it."""
    cache, tally = tmp / "kill-cache", tmp / "kill-tally"
    proc = subprocess.Popen(
        [sys.executable, "-c", SCAN, str(root), str(cache), str(workers), str(tally)],
        start_new_session=True,
        env={**os.environ, "HINTCOLOR_ROOT": str(ROOT)},
    )
    path, half = cache / CACHE_NAME, len(files) // 2
    while not path.exists() or path.read_bytes().count(b"\n") < half:
        if proc.poll() is not None:
            raise SystemExit("the scan ended before it could be killed: use a larger --n")
        time.sleep(0.002)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    in_cache = path.read_bytes().count(b"\n")
    start = time.perf_counter()
    report = scan_images(files, cache, workers=workers)
    twice = tally.stat().st_size + report.decoded - len(files)
    return {
        "killed_at_percent": 100 * in_cache / len(files),
        "redecoded_percent": 100 * twice / len(files),
        "resume_s": time.perf_counter() - start,
    }


def extrapolate(small: float, large: float, n_small: int, n_large: int, n: int) -> float:
    """The line through (n_small, small) and (n_large, large), at ``n`` photos: a fixed
    start-up cost plus a cost per photo (never below zero: timing noise at tiny sizes)."""
    per_file = max((large - small) / (n_large - n_small), 0.0)
    return large + per_file * (n - n_large)


def table(r: dict, args: argparse.Namespace) -> str:
    n, big = r["n"], args.extrapolate
    ttfb = r["ttfb"]
    ext = {k: extrapolate(*ttfb[k], r["n_small"], n, big) for k in ttfb}
    per_core = r["files_per_s_all"] / r["workers"]
    lines = [
        f"{n} synthetic {args.side}-px JPEGs, {r['workers']} cores ({r['cpu']}):",
        "",
        "| measure | value |",
        "| --- | --- |",
        f"| vetting, 1 process | {r['files_per_s_1']:.0f} files/s |",
        f"| vetting, {r['workers']} processes | {r['files_per_s_all']:.0f} files/s "
        f"({per_core:.0f} per core) |",
        f"| restart with a warm cache ({n} files) | {r['warm_restart_s']:.2f} s |",
    ]
    for key, label in (("cold", "cold cache"), ("warm", "warm cache"), ("unvetted", "vet=false")):
        lines.append(
            f"| first batch, {label}: {r['n_small']} / {n} / {big:,} photos (extrapolated) | "
            f"{ttfb[key][0]:.1f} / {ttfb[key][1]:.1f} / {ext[key]:.0f} s |"
        )
    k = r["kill"]
    lines += [
        f"| scan killed at {k['killed_at_percent']:.0f} %, rerun: decoded twice | "
        f"{k['redecoded_percent']:.1f} % of the files (rerun {k['resume_s']:.1f} s) |",
        "",
        f"Bars: >= 500 files/s per core ({per_core:.0f}); a scan killed at 50 % re-decodes "
        f"< 5 % ({k['redecoded_percent']:.1f} %). Real photos cost more than these: an "
        f"ImageNet JPEG (~500x375) decodes in full (no DCT scaling above 256 px).",
    ]
    r["extrapolated_s"] = ext
    return "\n".join(lines)


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown CPU"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20_000, help="photos in the synthetic folder")
    parser.add_argument("--side", type=int, default=256, help="their width and height (px)")
    parser.add_argument("--extrapolate", type=int, default=1_300_000, help="photos (ImageNet)")
    parser.add_argument("--out", type=Path, default=ROOT / "logs" / "bench" / "vetting")
    parser.add_argument("--readme", type=Path, help="update this file's bench-vetting block")
    args = parser.parse_args()
    if args.n < 100:
        parser.error("--n must be at least 100 (a tenth of it is timed on its own)")
    workers = usable_cores()
    with tempfile.TemporaryDirectory(prefix="bench-vetting-") as tmp_name:
        tmp = Path(tmp_name)
        root = tmp / "photos"
        files = make_folder(root, args.n, args.side, workers)
        r = {"n": len(files), "n_small": len(find_images(root / "part0")), "side": args.side}
        r.update(workers=workers, cpu=_cpu_name())
        r["files_per_s_1"] = vetting_rate(files, tmp / "cache-1", 1)
        r["files_per_s_all"] = vetting_rate(files, tmp / "cache-all", workers)
        start = time.perf_counter()
        assert scan_images(files, tmp / "cache-all", workers=workers).decoded == 0
        r["warm_restart_s"] = time.perf_counter() - start
        r["ttfb"] = first_batch_times(root, args.n, tmp)
        r["kill"] = killed_scan(root, files, tmp, workers)
    text = table(r, args)
    r["resume_redecoded_percent"] = r["kill"]["redecoded_percent"]
    publish(text, r, args.out, "vetting", args.readme, "bench-vetting")


if __name__ == "__main__":
    main()
