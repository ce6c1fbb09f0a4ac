"""src/shard.py and data=streaming: photo folders written as LitData shards (vetted as training
vets them), read back as the folder loader reads photos, one pass per epoch across DDP ranks."""

from __future__ import annotations

import copy
import csv
import functools
import io
import json
import logging
import os
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import lightning as L
import pytest
import torch
from conftest import ROOT, compose, run_cli
from lightning.pytorch.utilities.exceptions import SIGTERMException
from litdata import StreamingDataset
from omegaconf import open_dict
from PIL import Image

from hintcolor.build import build_datamodule
from hintcolor.data.images import DEFAULT_MAX_PIXELS
from hintcolor.data.shards import (
    IMAGE_KEY,
    SOURCE_KEY,
    bounded_jpeg,
    photo_source,
    shard_options,
    write_shards,
)


def shard(folders: dict[str, Path], out: Path, overwrite: bool = False) -> dict[str, int]:
    """What ``python src/shard.py data=folder data.train_dir=... output_dir=out`` does."""
    cfg = copy.deepcopy(composed("shard", "folder"))
    cfg.data.update({f"{split}_dir": str(d) for split, d in folders.items()})
    cfg.paths.log_dir = str(out.parent)  # the vetting cache
    cfg.update(output_dir=str(out), num_workers=1, overwrite=overwrite)
    return write_shards(photo_source(cfg.data), cfg.output_dir, shard_options(cfg))


@functools.cache
def composed(config: str, data: str):
    """``python src/<config>.py data=<data>``'s config, composed once (the slow part)."""
    overrides = [f"data={data}", "data.num_workers=0"]
    if config == "shard":
        overrides.append("output_dir=set-by-the-test")
    return compose(config, overrides, Path(tempfile.gettempdir()))


def streaming(out: Path, splits=("train", "val"), **data):
    """The data=streaming module over the shards under ``out``, set up; ``data``: data.* keys."""
    cfg = copy.deepcopy(composed("train", "streaming"))
    cfg.data.update({f"{s}_shards": str(out / s) for s in splits}, **data)
    cfg.data.shard_cache_dir = str(out / "chunks")  # streamed chunks would go here
    datamodule = build_datamodule(cfg.data, cfg.hints)
    datamodule.setup("fit")
    return datamodule


def stored(shards: Path) -> dict[str, bytes]:
    """File name -> stored bytes of every sample of a shard directory, read with LitData."""
    dataset = StreamingDataset(str(shards))
    samples = [dataset[i] for i in range(len(dataset))]
    return {Path(os.fsdecode(bytes(s[SOURCE_KEY]))).name: bytes(s[IMAGE_KEY]) for s in samples}


def indices(batches) -> list[int]:
    return [int(i) for batch in batches if batch is not None for i in batch[1]]


@pytest.fixture(scope="module")
def kodak_shards(tmp_path_factory, kodak_files) -> Path:
    """Shards of 6 training and 2 validation Kodak photos (tests/conftest.py's photo_folders,
    for the whole module)."""
    root = tmp_path_factory.mktemp("kodak")
    folders = {}
    for split, files in (("train", kodak_files[:6]), ("val", kodak_files[20:22])):
        folders[split] = root / split
        folders[split].mkdir()
        for f in files:
            (folders[split] / f.name).write_bytes(f.read_bytes())
    shard(folders, root / "shards")
    return root / "shards"


def test_shards_hold_the_photos_bit_identical(kodak_shards, kodak_files):
    for split, files in (("train", kodak_files[:6]), ("val", kodak_files[20:22])):
        assert stored(kodak_shards / split) == {f.name: f.read_bytes() for f in files}
        index = json.loads((kodak_shards / split / "index.json").read_text())
        # plain bytes: no LitData image serializer (those need torchvision) decodes them
        assert set(index["config"]["data_format"]) == {"bytes"}


def test_an_unreadable_photo_is_skipped_and_counted_when_sharding(photo_folders, tmp_path, caplog):
    (photo_folders["train"] / "broken.jpg").write_bytes(b"\xff\xd8 not a photo")
    train = {"train": photo_folders["train"]}
    with caplog.at_level(logging.INFO):
        assert shard(train, tmp_path / "shards") == {"train": 6}
    assert "broken.jpg" not in stored(tmp_path / "shards" / "train")
    assert "6 usable images, 0 grayscale skipped, 1 unreadable skipped" in caplog.text
    assert "broken.jpg" in caplog.text
    with pytest.raises(FileExistsError, match="overwrite=true"):  # shards are immutable
        shard(train, tmp_path / "shards")
    assert shard(train, tmp_path / "shards", overwrite=True) == {"train": 6}


def test_max_side_stores_large_photos_as_smaller_jpegs(kodak_files):
    data = kodak_files[0].read_bytes()  # 512 x 341
    assert bounded_jpeg(data, 341, 95, DEFAULT_MAX_PIXELS) is data  # small enough: as it is
    smaller = Image.open(io.BytesIO(bounded_jpeg(data, 128, 90, DEFAULT_MAX_PIXELS)))
    assert smaller.format == "JPEG" and smaller.size == (192, 128)


def test_streaming_loaders_yield_what_the_folder_loaders_yield(kodak_shards, tmp_path):
    cfg = copy.deepcopy(composed("train", "folder"))
    folders = {s: str(kodak_shards.parent / s) for s in ("train", "val")}
    cfg.data.update(train_dir=folders["train"], val_dir=folders["val"], cache_dir=str(tmp_path))
    folder = build_datamodule(cfg.data, cfg.hints)
    folder.setup("fit")
    shards = streaming(kodak_shards)
    a, b = (next(iter(m.val_dataloader())) for m in (folder, shards))
    assert a[0].dtype == b[0].dtype == torch.uint8 and a[0].shape == b[0].shape
    assert torch.equal(a[0], b[0]) and a[1].tolist() == b[1].tolist() == [0, 1]
    # the same batch transfer: Lab, and validation hints fixed per image index
    a, b = folder.on_after_batch_transfer(a, 0), shards.on_after_batch_transfer(b, 0)
    assert torch.equal(a["input"], b["input"]) and a["hint_count"].sum() > 0
    # all six training photos in one short batch of 8 (one process: none left out)
    train_batch = next(iter(shards.train_dataloader()))
    assert train_batch[0].shape == (6, 3, 128, 128)


def test_a_corrupt_sample_is_skipped_and_counted_when_reading(
    kodak_shards, kodak_files, tmp_path, caplog
):
    copy = tmp_path / "shards"
    for split in ("train", "val"):
        (copy / split).mkdir(parents=True)
        for f in (kodak_shards / split).iterdir():
            (copy / split / f.name).write_bytes(f.read_bytes())
    chunk = next((copy / "train").glob("*.bin"))
    data = bytearray(chunk.read_bytes())
    photo = kodak_files[2].read_bytes()
    at = data.find(photo[:4096])
    assert at >= 0  # stored as the file's bytes
    data[at : at + 2] = b"\0\0"  # its JPEG start-of-image marker: no decoder takes it now
    chunk.write_bytes(bytes(data))
    datamodule = streaming(copy, batch_size=6)
    with caplog.at_level(logging.WARNING):
        batches = list(datamodule.train_dataloader())
    assert len(indices(batches)) == 5
    (bad,) = datamodule.datasets["train"].skipped
    assert bad not in indices(batches)
    assert f"skipping unreadable sample {bad}" in caplog.text and kodak_files[2].name in caplog.text


def test_missing_shards_are_an_error_naming_the_key(tmp_path):
    (tmp_path / "train").mkdir()  # a folder, but not shards
    with pytest.raises(FileNotFoundError, match=r"data\.train_shards: .* has no index\.json"):
        streaming(tmp_path, splits=("train",))
    with pytest.raises(FileNotFoundError, match=r"data\.val_shards: .* does not exist"):
        streaming(tmp_path, splits=("val",))
    with pytest.raises(ValueError, match=r"no data: set data\.train_shards"):
        streaming(tmp_path, splits=())


def test_loader_state_resumes_mid_epoch_with_the_same_unseen_samples(kodak_shards):
    """What a checkpoint keeps of the data module: a new one loaded with it continues the epoch
    with the samples not yet seen, cropped as the uninterrupted epoch crops them."""
    full = list(streaming(kodak_shards, batch_size=2).train_dataloader())
    stopped = streaming(kodak_shards, batch_size=2)
    seen = [next(iter(stopped.train_dataloader()))]
    resumed = streaming(kodak_shards, batch_size=2)
    resumed.load_state_dict(stopped.state_dict())
    rest = list(resumed.train_dataloader())
    assert indices(seen + rest) == indices(full) and sorted(indices(full)) == list(range(6))
    for a, b in zip(seen + rest, full, strict=True):
        assert torch.equal(a[0], b[0])
    # the next epoch of a loader: a new order (and new crops) of the same samples
    loader = streaming(kodak_shards, batch_size=2).train_dataloader()
    first, second = indices(loader), indices(loader)
    assert sorted(second) == list(range(6)) and second != first


@pytest.mark.slow
def test_cli_shards_folders_then_trains_from_them(photo_folders, tmp_path):
    folders = [f"data.{split}_dir={d}" for split, d in photo_folders.items()]
    out = tmp_path / "shards"
    log_dir = f"hydra.run.dir={tmp_path / 'shard-run'}"
    proc = run_cli("shard.py", "data=folder", *folders, f"output_dir={out}", log_dir, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"train: wrote 6 photos to {out}/train" in proc.stdout + proc.stderr
    run = tmp_path / "run"
    proc = run_cli(
        "train.py",
        "data=streaming",
        *(f"data.{split}_shards={out / split}" for split in ("train", "val")),
        "debug=fast",
        "data.image_size=64",
        "logger=csv",
        f"hydra.run.dir={run}",
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = list(csv.DictReader((run / "csv" / "metrics.csv").open()))
    assert [float(r["val/psnr"]) for r in rows if r.get("val/psnr")][-1] > 10
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", weights_only=False)
    # the loader's own state, which a resumed run loads before its first batch
    state = ckpt["StreamingDataModule"]["train_loader"]
    assert state["current_epoch"] == 1 and state["num_samples_yielded"] == 8  # batches of 4


class StopAt(L.Callback):
    """What SIGTERM (a cluster's pre-emption) does after batch ``batch`` of epoch ``epoch``:
    Lightning stops at the end of that step and writes last.ckpt mid-epoch."""

    def __init__(self, epoch: int, batch: int) -> None:
        self.epoch, self.batch = epoch, batch

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.current_epoch == self.epoch and batch_idx == self.batch:
            trainer._signal_connector.received_sigterm = True


@pytest.mark.slow
def test_resume_mid_epoch_from_shards_reaches_the_same_weights(kodak_shards, tmp_path):
    from hintcolor.training import train

    tiny = [
        "data=streaming",
        *(f"data.{s}_shards={kodak_shards / s}" for s in ("train", "val")),
        "data.image_size=32",
        "data.batch_size=2",  # 3 batches an epoch
        "data.num_workers=1",
        "trainer.max_epochs=2",
        "trainer.precision=32-true",
        "+trainer.limit_val_batches=1",
        "model.backbone.widths=[4,8,8,16,16]",
        "model.backbone.bridge=16",
        "logger=csv",
        "callbacks.progress_bar=null",
        "callbacks.validation_images=null",
        "callbacks.model_summary=null",
    ]
    train(compose("train", tiny, tmp_path / "full"))
    cfg = compose("train", tiny, tmp_path / "stopped")
    with open_dict(cfg):
        cfg.callbacks.stop = {"_target_": f"{__name__}.StopAt", "epoch": 1, "batch": 0}
    with pytest.raises(SIGTERMException):
        train(cfg)
    last = tmp_path / "stopped" / "checkpoints" / "last.ckpt"
    assert torch.load(last, weights_only=False)["global_step"] == 3 + 1
    train(compose("train", [*tiny, f"ckpt_path={last}"], tmp_path / "resumed"))
    weights = [
        torch.load(tmp_path / run / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
        for run in ("full", "resumed")
    ]
    worst = max((weights[0][k].float() - weights[1][k].float()).abs().max() for k in weights[0])
    assert worst <= 1e-5, worst


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_each_sample_once_per_epoch_across_two_ddp_processes(kodak_shards, tmp_path):
    port = _free_port()
    env = {**os.environ, "HINTCOLOR_ROOT": str(ROOT)}
    procs = [
        subprocess.Popen(
            [sys.executable, __file__, str(rank), str(port), str(kodak_shards), str(tmp_path)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for rank in range(2)
    ]
    for proc in procs:
        out, _ = proc.communicate(timeout=300)
        assert proc.returncode == 0, out[-3000:]
    seen = [json.loads((tmp_path / f"rank{rank}.json").read_text()) for rank in range(2)]
    for epoch in range(2):
        # batch 3: 6 samples = 2 processes x 3, so every sample exactly once
        a, b = seen[0]["3"][epoch], seen[1]["3"][epoch]
        assert sorted(a + b) == list(range(6)) and len(a) == len(b) == 3
        # batch 2: whole batches only, as many on each process (DDP steps in lockstep):
        # 4 samples, none twice; the 2 that fill no batch for both wait for another epoch
        a, b = seen[0]["2"][epoch], seen[1]["2"][epoch]
        assert len(a) == len(b) == 2 and len(set(a + b)) == 4


def _rank_main(rank: int, port: int, shards: Path, out: Path) -> None:
    """One of two DDP processes: the indices its training loader yields, two epochs each at
    batch 3 and batch 2, to out/rank<rank>.json."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    # set up before the process group exists, as src/train.py sets up its data
    datamodule = streaming(shards, num_workers=1)
    torch.distributed.init_process_group("gloo", rank=rank, world_size=2)
    seen = {}
    for batch_size in (3, 2):
        datamodule.batch_size = batch_size
        loader = datamodule.train_dataloader()  # as Lightning asks for it: after the group
        seen[batch_size] = [indices(loader) for _ in range(2)]
    (out / f"rank{rank}.json").write_text(json.dumps(seen))
    torch.distributed.destroy_process_group()


if __name__ == "__main__":
    _rank_main(int(sys.argv[1]), int(sys.argv[2]), Path(sys.argv[3]), Path(sys.argv[4]))
