"""The data module on real photo folders, including the files that break naive loaders."""

import os
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from conftest import compose
from hydra.utils import instantiate
from PIL import Image
from torch.utils.data import DataLoader

from hintcolor.build import build_datamodule
from hintcolor.data import ColorizationDataModule, Zhang17Hints
from hintcolor.data.dataset import PhotoDataset, collate_skip_failed
from hintcolor.data.images import shown


def _datamodule(tmp_path: Path, **data) -> ColorizationDataModule:
    overrides = [f"data.{k}={v}" for k, v in data.items()]
    cfg = compose("train", ["data.num_workers=0", "data.image_size=64", *overrides], tmp_path)
    return instantiate(cfg.data, hints=instantiate(cfg.hints))


@pytest.fixture
def messy_folder(tmp_path: Path, kodak_files) -> Path:
    d = tmp_path / "messy"
    (d / "nested").mkdir(parents=True)
    photos = [Image.open(f).convert("RGB") for f in kodak_files[:5]]
    for i, p in enumerate(photos[:2]):
        p.save(d / f"photo{i}.jpg", quality=90)
    rgba = photos[2].convert("RGBA")
    rgba.putalpha(200)
    rgba.save(d / "nested" / "rgba.png")
    rgb16 = (np.asarray(photos[3]).astype(np.uint16) * 257)[..., ::-1]
    cv2.imwrite(str(d / "rgb16.png"), np.ascontiguousarray(rgb16))
    photos[4].convert("CMYK").save(d / "cmyk.jpg")
    photos[0].convert("L").convert("RGB").save(d / "grayscale.jpg")
    good = (d / "photo0.jpg").read_bytes()
    (d / "corrupt.jpg").write_bytes(good[: len(good) // 3])
    return d


def test_messy_folder_is_vetted_and_counted(tmp_path, messy_folder, photo_folders, caplog):
    dm = _datamodule(tmp_path, train_dir=messy_folder, val_dir=photo_folders["val"])
    with caplog.at_level("INFO"):
        dm.prepare_data()
        dm.setup("fit")
    names = sorted(p.name for p in dm.datasets["train"].files)
    assert names == ["cmyk.jpg", "photo0.jpg", "photo1.jpg", "rgb16.png", "rgba.png"]
    assert "train: 5 usable images, 1 grayscale skipped, 1 unreadable skipped" in caplog.text
    assert caplog.text.count("corrupt.jpg") == 1  # listed once
    ds = dm.datasets["train"]
    samples = [ds[i] for i in range(len(ds.files))]
    assert all(s is not None and s[0].shape == (3, 64, 64) for s in samples)
    rgb, _ = next(iter(dm.train_dataloader()))
    assert rgb.dtype == torch.uint8 and rgb.shape == (dm.batch_size, 3, 64, 64)


def test_batch_transfer_builds_model_input(tmp_path, photo_folders):
    dm = _datamodule(tmp_path, train_dir=photo_folders["train"], val_dir=photo_folders["val"])
    dm.setup("fit")
    rgb, idx = next(iter(dm.val_dataloader()))
    batch = dm.on_after_batch_transfer((rgb, idx), 0)
    x = batch["input"]
    assert x.shape == (2, 4, 64, 64)
    assert torch.equal(x[:, :1], batch["l"])
    mask = x[:, 3:]
    assert set(mask.unique().tolist()) <= {0.0, 1.0}
    assert torch.equal(x[:, 1:3] * (1 - mask), torch.zeros_like(x[:, 1:3]))
    # validation hints are the same at every pass
    again = dm.on_after_batch_transfer(next(iter(dm.val_dataloader())), 0)
    assert torch.equal(again["input"], x)


def test_file_broken_mid_run_is_skipped_not_fatal(tmp_path, photo_folders):
    folders = dict(train_dir=photo_folders["train"], val_dir=photo_folders["val"])
    dm = _datamodule(tmp_path, cache_images="false", **folders)  # decoded when needed
    dm.setup("fit")
    victim = dm.datasets["train"].files[0]
    victim.write_bytes(b"overwritten after the start-up scan")
    ds = dm.datasets["train"]
    loader = DataLoader(ds, batch_size=4, collate_fn=collate_skip_failed)  # keeps every sample
    seen = sum(b[0].shape[0] for b in loader if b is not None)
    assert seen == (len(ds.files) - 1) * ds.repeats


def test_missing_and_empty_folders_fail_at_start_up(tmp_path, photo_folders):
    with pytest.raises(Exception, match="does-not-exist"):
        _datamodule(tmp_path, train_dir=tmp_path / "does-not-exist", val_dir=photo_folders["val"])
    (tmp_path / "empty").mkdir()
    dm = _datamodule(tmp_path, train_dir=tmp_path / "empty", val_dir=photo_folders["val"])
    with pytest.raises(FileNotFoundError, match="empty"):
        dm.setup("fit")


def test_root_split_is_seeded_and_disjoint(tmp_path, kodak_files):
    kw = dict(train_dir="null", val_dir="null", root=kodak_files[0].parents[1])
    a = _datamodule(tmp_path, **kw)
    a.setup("fit")
    b = _datamodule(tmp_path, **kw)
    b.setup("fit")
    sets = {s: {p.name for p in a.datasets[s].files} for s in ("train", "val", "test")}
    assert [len(sets[s]) for s in ("train", "val", "test")] == [19, 2, 2]  # round(0.8/0.1/0.1 * 24)
    assert not (sets["train"] & sets["val"]) and not (sets["train"] & sets["test"])
    assert sets["val"] == {p.name for p in b.datasets["val"].files}
    c = _datamodule(tmp_path, split_seed=1, **kw)
    c.setup("fit")
    assert {p.name for p in c.datasets["val"].files} != sets["val"]


def test_hints_are_fresh_in_training(tmp_path, photo_folders):
    dm = _datamodule(tmp_path, train_dir=photo_folders["train"], val_dir=photo_folders["val"])
    dm.hints = Zhang17Hints(p=0.05)

    class _Trainer:
        training = True

    dm.trainer = _Trainer()
    rgb = torch.randint(0, 256, (4, 3, 32, 32), dtype=torch.uint8)
    a = dm.on_after_batch_transfer((rgb, torch.arange(4)), 0)
    b = dm.on_after_batch_transfer((rgb, torch.arange(4)), 0)
    assert not torch.equal(a["input"][:, 3], b["input"][:, 3])


def test_validation_uses_eval_hints_when_given(tmp_path, photo_folders):
    """A study tuning the training hint density must validate every trial on the same hints."""
    cfg = compose(
        "train",
        ["data.num_workers=0", "+hints@eval_hints=zhang17", "hints.p=0.9", "eval_hints.p=0.01"],
        tmp_path,
    )
    assert cfg.hints.p == 0.9 and cfg.eval_hints.p == 0.01
    dm = build_datamodule(cfg.data, cfg.hints, cfg.eval_hints)
    rgb = torch.randint(0, 256, (16, 3, 64, 64), dtype=torch.uint8)
    val = dm.on_after_batch_transfer((rgb, torch.arange(16)), 0)  # no trainer: evaluation
    # p=0.9 gives 0 hints 90 % of the time; p=0.01 gives about 99 hints per image
    assert val["hint_count"].float().mean() > 20
    assert torch.equal(
        val["hint_count"], dm.on_after_batch_transfer((rgb, torch.arange(16)), 0)["hint_count"]
    )
    same = build_datamodule(cfg.data, cfg.hints)  # no eval_hints: the training law
    assert same.eval_hints is same.hints


def test_cached_photos_are_decoded_once_and_protected(tmp_path, kodak_files):
    files = []
    for f in kodak_files[:3]:
        files.append(tmp_path / f.name)
        files[-1].write_bytes(f.read_bytes())
    cfg = compose("train", ["data.image_size=64"], tmp_path)
    transform = instantiate(cfg.data.eval_transform)
    plain_set = PhotoDataset(files, transform)
    cached = PhotoDataset(files, transform, cache=True)
    files[0].unlink()  # decoded at construction: the cached set no longer needs the file
    assert torch.equal(cached[1][0], plain_set[1][0])
    assert cached[0] is not None and plain_set[0] is None
    with pytest.raises(ValueError):  # a transform writing in place cannot corrupt the cache
        cached._decoded[1][0, 0, 0] = 0
    assert cached[3][1] == 0  # repeats wrap around the cached photos


def test_every_file_of_the_folder_is_used_or_reported(tmp_path, kodak_files, photo_folders, caplog):
    """Odd names, GIFs, over-large photos and other formats: used, or counted with a reason."""
    d = tmp_path / "odd"
    d.mkdir()
    photo = Image.open(kodak_files[0]).convert("RGB")
    photo.save(os.fsdecode(os.fsencode(d) + b"/caf\xe9.jpg"))  # Latin-1 name, not UTF-8
    photo.quantize(64).save(d / "palette.gif")
    photo.resize((1200, 800)).save(d / "large.png")
    (d / "notes.txt").write_text("x")
    dm = _datamodule(tmp_path, train_dir=d, val_dir=photo_folders["val"], max_pixels=500_000)
    assert dm.max_pixels == 500_000
    with caplog.at_level("INFO"):
        dm.prepare_data()
        dm.setup("fit")
    assert sorted(shown(p.name) for p in dm.datasets["train"].files) == [
        "caf\\xe9.jpg",
        "palette.gif",
    ]
    text = caplog.text
    assert "train: 2 usable images, 0 grayscale skipped, 0 unreadable skipped, 1 over" in text
    assert "large.png: 1200x800" in text and "data.max_pixels=500000" in text
    assert "data.train_dir: 1 other file(s) (.txt: 1) not used" in text
    text.encode("utf-8")
    assert dm.datasets["train"].min_side == 4 * dm.image_size  # large JPEGs decode reduced
    with pytest.raises(Exception, match=r"data\.max_pixels must be a positive integer"):
        _datamodule(tmp_path, train_dir=d, val_dir=photo_folders["val"], max_pixels=0)


def test_several_folders_make_one_split(tmp_path, kodak_files):
    """data.root / data.train_dir take a list: photos kept in several places train together;
    a missing one is named at start-up."""
    kodak = kodak_files[0].parents[1]  # kodak24/{train,val}
    dm = _datamodule(tmp_path, train_dir=f"[{kodak}/train,{kodak}/val]", val_dir=f"{kodak}/val")
    dm.setup("fit")
    assert len(dm.datasets["train"].files) == 24 and len(dm.datasets["val"].files) == 4
    kw = dict(train_dir="null", val_dir="null", root=f"[{kodak}/train,{kodak}/val]")
    split = _datamodule(tmp_path, **kw)
    split.setup("fit")
    names = [{p.name for p in split.datasets[s].files} for s in ("train", "val", "test")]
    assert [len(n) for n in names] == [19, 2, 2] and not (names[0] & names[1])
    with pytest.raises(Exception, match=r"data\.train_dir: folder .*nowhere"):
        _datamodule(tmp_path, train_dir=f"[{kodak}/train,{tmp_path}/nowhere]", val_dir=kodak)
