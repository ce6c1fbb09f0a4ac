"""Loader img/s per worker: LitData shards (data=streaming) against the photo folder (data=folder).

    python scripts/bench_streaming.py [--photos ../shared/data/train-pool] [--sizes 128 256]
                                      [--rounds 3] [--limit N] [--out logs/bench/streaming]
                                      [--readme docs/benchmarks.md]

The photos (read where they are, never copied; the embedded Kodak photos when the folder is
absent) are vetted and sharded twice with src/shard.py's code: as their files are, and
re-encoded with max_side = 4 x size (all that training decodes of them). Each loader has one
worker, the training transforms and batch 16; the folder's (ColorizationDataModule) decodes
every photo at every read (data.cache_images=false), as it must when the photos do not fit in
RAM. An epoch is timed from its first batch (worker start-up left out), its median over
--rounds after one warm-up epoch is reported. --limit N uses the first N photos (a quick check).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("HINTCOLOR_ROOT", str(ROOT))
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
sys.path.insert(0, str(ROOT / "src"))

import torch  # noqa: E402
from reports import publish  # noqa: E402

from hintcolor.build import build_datamodule  # noqa: E402
from hintcolor.data.shards import photo_source, shard_options, split_url, write_split  # noqa: E402

POOL = ROOT.parent / "shared" / "data" / "train-pool"
KODAK = ROOT / "data" / "kodak24"
BATCH = 16


def compose(config: str, overrides: list[str]):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        return hydra_compose(config, overrides=overrides)


def data_overrides(size: int, out: Path) -> list[str]:
    return [
        f"data.image_size={size}",
        f"data.batch_size={BATCH}",
        "data.num_workers=1",
        f"paths.log_dir={out}",
    ]


def write_shard_sets(photos: Path, sizes: list[int], limit: int | None, out: Path) -> dict:
    """Shard directories: 'original' (the files' bytes) and one re-encoded per size."""
    folder = ["data=folder", f"data.train_dir={photos}", f"paths.log_dir={out}"]
    source = photo_source(compose("shard", [*folder, f"output_dir={out}"]).data)
    source.prepare_data()
    source.setup("fit")
    files = source.datasets["train"].files[:limit]
    sets = {"original": None, **{f"max_side={4 * s}": 4 * s for s in sizes}}
    written = {}
    for name, max_side in sets.items():
        url = split_url(str(out / "shards" / name.replace("=", "")), "train")
        options = [f"output_dir={out}", "overwrite=true", f"max_side={max_side or 'null'}"]
        cfg = compose("shard", [*folder, *options])
        start = time.perf_counter()
        count = write_split(files, url, shard_options(cfg), source.max_pixels)
        size_mb = sum(f.stat().st_size for f in Path(url).glob("*.bin")) / 1e6
        written[name] = {"url": url, "photos": count, "mb": size_mb}
        seconds = time.perf_counter() - start
        print(f"sharded {count} photos ({name}): {size_mb:.0f} MB in {seconds:.1f} s")
    return written


def epoch_rate(loader, limit: int | None) -> float:
    """img/s of one pass over ``loader`` from its first batch (start-up left out)."""
    images, start = 0, None
    for batch in loader:
        if start is None:
            start = time.perf_counter()
            continue
        images += 0 if batch is None else batch[0].shape[0]
        if limit is not None and images >= limit:
            break
    return images / (time.perf_counter() - start) if images else float("nan")


def measure(datamodule, rounds: int, limit: int | None) -> float:
    datamodule.setup("fit")
    if limit is not None and hasattr(datamodule.datasets["train"], "files"):
        # the folder's loader on the same first photos as the shards hold
        datamodule.datasets["train"].files = datamodule.datasets["train"].files[:limit]
    epoch_rate(datamodule.train_dataloader(), limit)  # warm-up: page cache, lazy imports
    return statistics.median(
        epoch_rate(datamodule.train_dataloader(), limit) for _ in range(rounds)
    )


def loader_rate(overrides: list[str], args: argparse.Namespace) -> float:
    cfg = compose("train", overrides)
    return measure(build_datamodule(cfg.data, cfg.hints), args.rounds, args.limit)


def run(args: argparse.Namespace, photos: Path) -> tuple[list[dict[str, Any]], dict]:
    shard_sets = write_shard_sets(photos, args.sizes, args.limit, args.out)
    rows = []
    for size in args.sizes:
        base = data_overrides(size, args.out)
        folder = ["data=folder", f"data.train_dir={photos}", "data.cache_images=false"]
        row = {"size": size, "folder": loader_rate([*folder, *base], args)}
        for name in ("original", f"max_side={4 * size}"):
            url = shard_sets[name]["url"]
            row[name] = loader_rate(["data=streaming", f"data.train_shards={url}", *base], args)
        print(row)
        rows.append(row)
    return rows, shard_sets


def markdown(rows: list[dict[str, Any]], photos: Path, shard_sets: dict, limit: int | None) -> str:
    count = shard_sets["original"]["photos"]
    lines = [
        f"Loader img/s per worker (1 worker, batch {BATCH}, training transforms) on {count} "
        f"photos of `{photos.name}`{f' (--limit {limit})' if limit else ''}; shards of the "
        f"files as they are ({shard_sets['original']['mb']:.0f} MB) and re-encoded to "
        "max_side = 4 x size:",
        "",
        "| size | folder (data=folder) | shards, original bytes | shards, max_side = 4 x size | "
        "original / folder |",
        "| --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        encoded = r[f"max_side={4 * r['size']}"]
        lines.append(
            f"| {r['size']} | {r['folder']:.0f} | {r['original']:.0f} | {encoded:.0f} | "
            f"{r['original'] / r['folder']:.2f} |"
        )
    at_128 = [r for r in rows if r["size"] == 128]
    if at_128:
        ratio = at_128[0]["original"] / at_128[0]["folder"]
        lines += ["", f"Shards (original bytes) / folder at 128 px: {ratio:.2f} (bar >= 1.0)."]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=Path, default=POOL)
    parser.add_argument("--sizes", type=int, nargs="+", default=[128, 256])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--limit", type=int, help="only the first N photos (a quick check)")
    parser.add_argument("--out", type=Path, default=ROOT / "logs" / "bench" / "streaming")
    parser.add_argument("--readme", type=Path, help="update this file's bench-streaming block")
    args = parser.parse_args()
    photos = args.photos if args.photos.is_dir() else KODAK
    torch.set_num_threads(1)  # the main process only collects batches here
    rows, shard_sets = run(args, photos)
    table = markdown(rows, photos, shard_sets, args.limit)
    data = {"photos": str(photos), "rows": rows, "shards": shard_sets}
    publish(table, data, args.out, "streaming", args.readme, "bench-streaming")


if __name__ == "__main__":
    main()
