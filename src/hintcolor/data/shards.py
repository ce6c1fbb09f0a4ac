"""Photo folders -> LitData shards (``litdata.optimize``), for ``data=streaming``.

The photos are vetted exactly as training vets them (the data config's own data module:
grayscale, unreadable and over-large photos skipped and counted in the log), then each usable
photo is stored as its encoded bytes: the file as it is, or, with ``max_side``, a JPEG whose
shorter side is ``max_side`` when the photo is larger. Decoding stays with the reader
(:mod:`hintcolor.data.streaming`), which decodes like the folder loader does; no LitData
image serializer is involved (those import torchvision).
"""

from __future__ import annotations

import io
import logging
import os
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from hydra.utils import instantiate
from litdata import StreamingDataset, optimize
from omegaconf import DictConfig
from PIL import Image

from hintcolor.data.datamodule import ColorizationDataModule
from hintcolor.data.images import allow_pixels, load_rgb, shown

log = logging.getLogger(__name__)

# The fields of a shard sample: the encoded photo, and the file it came from (as bytes: a
# str naming an existing file would be stored by LitData as that file's image).
IMAGE_KEY, SOURCE_KEY = "image", "source"
INDEX_FILE = "index.json"


@dataclass(frozen=True)
class ShardOptions:
    """How shards are written (conf/shard.yaml says what each means)."""

    max_side: int | None
    jpeg_quality: int
    num_workers: int | None
    chunk_bytes: str | int
    overwrite: bool
    start_method: str | None


def shard_options(cfg: DictConfig) -> ShardOptions:
    """conf/shard.yaml's options, checked: a bad value is one line naming its key."""
    options = ShardOptions(**{k: cfg[k] for k in ShardOptions.__dataclass_fields__})
    for key, low, high in (
        ("max_side", 1, None),
        ("jpeg_quality", 1, 100),
        ("num_workers", 1, None),
    ):
        value = getattr(options, key)
        if value is None and key != "jpeg_quality":
            continue
        if not isinstance(value, int) or value < low or (high is not None and value > high):
            allowed = f"an integer in {low}..{high}" if high else f"an integer >= {low} or null"
            raise ValueError(f"{key} must be {allowed}, got {value!r}")
    return options


def photo_source(data_cfg: DictConfig) -> ColorizationDataModule:
    """The data config's data module, for its photos alone: the same folders, split and
    vetting as training, without hints or decoded copies in memory."""
    datamodule = instantiate(data_cfg, hints=None, eval_hints=None, cache_images=False)
    if type(datamodule) is not ColorizationDataModule:
        raise ValueError(
            "src/shard.py writes shards from photo folders: use data=folder (data.train_dir, "
            f"data.val_dir, data.test_dir or data.root), not {data_cfg._target_}"
        )
    return datamodule


def shard_sample(
    path: str, max_side: int | None, jpeg_quality: int, max_pixels: int
) -> dict[str, bytes] | None:
    """One shard sample for the photo at ``path``; None (left out, logged) if it can no longer
    be read - it passed vetting moments ago, so it changed or vanished since."""
    try:
        data = Path(path).read_bytes()
        if max_side is not None:
            data = bounded_jpeg(data, max_side, jpeg_quality, max_pixels)
    except Exception as exc:  # any reader or decoder error: one photo must not stop the job
        log.warning(f"left out {shown(path)}: {exc}")
        return None
    return {IMAGE_KEY: data, SOURCE_KEY: os.fsencode(path)}


def bounded_jpeg(data: bytes, max_side: int, jpeg_quality: int, max_pixels: int) -> bytes:
    """``data`` itself when the photo's shorter side is <= ``max_side``, else the photo as a
    JPEG whose shorter side is ``max_side`` (EXIF orientation applied, as training reads it)."""
    allow_pixels(max_pixels)
    with Image.open(io.BytesIO(data)) as img:
        if min(img.size) <= max_side:
            return data
    # reduced decode (JPEG DCT scaling) down to no less than max_side, then an exact resize
    rgb = Image.fromarray(load_rgb(io.BytesIO(data), min_side=max_side))
    scale = max_side / min(rgb.size)
    size = (max(1, round(rgb.width * scale)), max(1, round(rgb.height * scale)))
    out = io.BytesIO()
    rgb.resize(size, Image.Resampling.LANCZOS).save(out, "JPEG", quality=jpeg_quality)
    return out.getvalue()


def split_url(output_dir: str, split: str) -> str:
    """Where split ``split`` goes: ``output_dir/split`` (a local folder or an s3:// URL)."""
    return f"{str(output_dir).rstrip('/')}/{split}"


def write_split(files: list[Path], output: str, options: ShardOptions, max_pixels: int) -> int:
    """Write ``files`` as one shard directory at ``output``; returns the samples written."""
    fn = partial(
        shard_sample,
        max_side=options.max_side,
        jpeg_quality=options.jpeg_quality,
        max_pixels=max_pixels,
    )
    optimize(
        fn=fn,
        inputs=[str(f) for f in files],
        output_dir=output,
        num_workers=min(options.num_workers or os.cpu_count() or 1, len(files)),
        chunk_bytes=options.chunk_bytes,
        # an existing shard directory is refused unless the user asks to replace it
        mode="overwrite" if options.overwrite else None,
        start_method=options.start_method,
        reorder_files=False,  # the listing's order: shards read back in a predictable order
        verbose=False,
    )
    return len(StreamingDataset(output))


def write_shards(
    datamodule: ColorizationDataModule, output_dir: str, options: ShardOptions
) -> dict[str, int]:
    """Vet the data module's photos as training does, then write one shard directory per
    split (train, val, test: those configured) under ``output_dir``; returns the number of
    samples written per split."""
    # prepare_data then setup, as a training run does: the same vetting, cache and log lines
    datamodule.prepare_data()
    datamodule.setup("fit")
    existing = [s for s in datamodule.datasets if _has_index(split_url(output_dir, s))]
    if existing and not options.overwrite:
        where = ", ".join(split_url(output_dir, s) for s in existing)
        raise FileExistsError(
            f"output_dir: shards already exist at {where}; choose another output_dir "
            "or set overwrite=true to replace them"
        )
    written = {}
    for split, dataset in datamodule.datasets.items():
        files = list(dataset.files)
        output = split_url(output_dir, split)
        written[split] = write_split(files, output, options, datamodule.max_pixels)
        left_out = len(files) - written[split]
        note = f" ({left_out} left out: unreadable since vetting, see above)" if left_out else ""
        log.info(f"{split}: wrote {written[split]} photos to {output}{note}")
    return written


def _has_index(url: str) -> bool:
    # Remote outputs are checked by litdata itself (it refuses a non-empty prefix).
    return "://" not in url and (Path(url) / INDEX_FILE).is_file()
