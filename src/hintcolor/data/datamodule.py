"""The LightningDataModule: photo folders in, model-ready batches out."""

from __future__ import annotations

import logging
import os
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import lightning as L
import torch
from torch.utils.data import DataLoader

from hintcolor.data.color import rgb_uint8_to_normalized_lab
from hintcolor.data.dataset import PhotoDataset, collate_skip_failed, seed_worker
from hintcolor.data.hints import HintSimulator, model_input
from hintcolor.data.images import DEFAULT_MAX_PIXELS, IMAGE_EXTENSIONS, describe_others, list_images
from hintcolor.data.sampler import EpochSampler
from hintcolor.data.vetting import ScanReport, log_report, scan_images, usable_cores

log = logging.getLogger(__name__)

STAGES = ("train", "val", "test")
# JPEGs decode at reduced size (DCT scaling) while their shorter side keeps this many times
# data.image_size: training crops (>= 1/4 of the area) and the evaluation's resize still
# only ever shrink, so quality is unchanged; only photos >= 8x image_size are affected.
DECODE_SIDE_FACTOR = 4


def make_batch(
    rgb: torch.Tensor, simulator: HintSimulator, indices: torch.Tensor | None = None
) -> dict[str, torch.Tensor]:
    """uint8 RGB (B,3,H,W) -> the model's batch, computed on ``rgb``'s device.

    Done once per batch rather than per sample in the workers: Lab conversion and hint
    rendering vectorise over the batch and run on the accelerator when there is one.
    ``indices`` make the hints deterministic per image (evaluation).
    """
    l_norm, ab = rgb_uint8_to_normalized_lab(rgb)
    hints = simulator(ab, indices)
    return {
        "input": model_input(l_norm, hints),
        "l": l_norm,
        "ab": ab,
        "rgb": rgb.float() / 255.0,
        "hint_count": hints.count(rgb.shape[0]),
    }


# A folder, or several whose photos are used together (e.g. a large collection kept in
# several places); None: not used.
Folders = str | os.PathLike | Sequence[str | os.PathLike] | None


def _as_folders(value: Folders) -> tuple[str, ...] | None:
    if value is None:
        return None
    if isinstance(value, (str, os.PathLike)):
        return (str(value),)
    folders = tuple(str(v) for v in value)
    return folders or None


class ColorizationDataModule(L.LightningDataModule):
    """Photos from ``train_dir``/``val_dir``/``test_dir``, or ``root`` split by seed; each may
    be one folder or a list of folders.

    Missing or empty folders fail at construction/set-up, naming the path; grayscale,
    unreadable and over-large (``max_pixels``) photos are skipped and counted in the log,
    and so are files of other formats. ``vet=False`` trusts the folders: nothing is decoded
    at start-up, grayscale photos are used, and files that fail when read are skipped and
    counted at the end of the run (:meth:`teardown`).
    """

    def __init__(
        self,
        hints: HintSimulator,
        train_transform: Callable[..., dict],
        eval_transform: Callable[..., dict],
        train_dir: Folders = None,
        val_dir: Folders = None,
        test_dir: Folders = None,
        root: Folders = None,
        split: Mapping[str, float] | None = None,
        split_seed: int = 0,
        image_size: int = 128,
        batch_size: int = 16,
        eval_batch_size: int | None = None,
        num_workers: int = 0,
        train_repeats: int = 1,
        pin_memory: bool = False,
        cache_dir: str | None = None,
        eval_hints: HintSimulator | None = None,
        cache_images: bool = False,
        max_pixels: int = DEFAULT_MAX_PIXELS,
        *,
        vet: bool,
    ) -> None:
        super().__init__()
        if batch_size < 1:
            raise ValueError(f"data.batch_size must be >= 1, got {batch_size}")
        if image_size < 1:
            raise ValueError(f"data.image_size must be >= 1, got {image_size}")
        if not isinstance(max_pixels, int) or isinstance(max_pixels, bool) or max_pixels < 1:
            raise ValueError(
                f"data.max_pixels must be a positive integer (pixels per photo, e.g. "
                f"50000000 for 50 MP), got {max_pixels!r}"
            )
        self.hints = hints
        # Validation/test hints may differ from the training law: a study that tunes the
        # training hint density must still compare its trials on the same validation hints.
        self.eval_hints = eval_hints if eval_hints is not None else hints
        self.transforms = {"train": train_transform, "val": eval_transform, "test": eval_transform}
        self.dirs = {
            "train": _as_folders(train_dir),
            "val": _as_folders(val_dir),
            "test": _as_folders(test_dir),
        }
        self.root = _as_folders(root)
        self.split = dict(split or {"train": 0.8, "val": 0.1, "test": 0.1})
        self.split_seed = split_seed
        self.image_size = image_size
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size or batch_size
        self.num_workers = num_workers
        self.train_repeats = train_repeats
        self.pin_memory = pin_memory
        self.cache_images = cache_images
        self.cache_dir, self.max_pixels, self.vet = cache_dir, max_pixels, vet  # vetting's
        self._reports: dict[str, ScanReport] = {}  # prepare_data's, reused by set-up
        self.datasets: dict[str, PhotoDataset] = {}
        self._resume_at = (0, 0)  # (epoch, batches done) where the training order starts
        self._listings: dict[str, tuple[list[Path], Counter[str]]] = {}
        self._check_paths()

    def _check_paths(self) -> None:
        """Fail at start-up, naming the path, rather than when a loader first needs it."""
        named = {f"data.{s}_dir": d for s, d in self.dirs.items() if d is not None}
        if self.root is not None:
            if named:
                raise ValueError(f"set either data.root or {', '.join(named)}, not both")
            named = {"data.root": self.root}
            bad = {k: v for k, v in self.split.items() if k not in STAGES or v < 0}
            if bad or not 0 < sum(self.split.values()) <= 1.0 + 1e-9:
                raise ValueError(
                    f"data.split must be fractions of train/val/test, got {self.split}"
                )
        elif not named:
            raise ValueError("no data: set data.train_dir/val_dir/test_dir or data.root")
        for key, folders in named.items():
            for path in folders:
                if not Path(path).is_dir():
                    raise FileNotFoundError(f"{key}: folder {path} does not exist")

    def _folders(self) -> list[tuple[str, str]]:
        """(config key, folder) for the folders this module reads."""
        if self.root is not None:
            return [("data.root", f) for f in self.root]
        return [(f"data.{s}_dir", f) for s, d in self.dirs.items() if d is not None for f in d]

    def _listing(self, folder: str) -> tuple[list[Path], Counter[str]]:
        # Listed once: a folder of 100,000 files takes a while to walk.
        if folder not in self._listings:
            self._listings[folder] = list_images(folder)
        return self._listings[folder]

    def _photos(self, folders: tuple[str, ...]) -> list[Path]:
        return [f for folder in folders for f in self._listing(folder)[0]]

    def _files(self) -> dict[str, list[Path]]:
        if self.root is None:
            return {s: self._photos(d) for s, d in self.dirs.items() if d is not None}
        files = self._photos(self.root)
        order = torch.randperm(len(files), generator=torch.Generator().manual_seed(self.split_seed))
        shuffled = [files[i] for i in order]
        out, start = {}, 0
        for stage in STAGES:
            n = round(self.split.get(stage, 0.0) * len(files))
            if n:
                out[stage] = sorted(shuffled[start : start + n])
            start += n
        return out

    def _scan(self, files: list[Path]) -> ScanReport:
        workers = usable_cores()
        return scan_images(files, self.cache_dir, workers=workers, max_pixels=self.max_pixels)

    def prepare_data(self) -> None:
        # Lightning calls this on local rank 0 of each node while the other ranks wait at a
        # barrier, then set-up on every rank reads the cache. Called by several processes at
        # once, the cache's lock makes all but one wait and then read its verdicts.
        if self.vet and not self._reports:  # Lightning calls it again in fit
            self._reports = {name: self._scan(files) for name, files in self._files().items()}

    def _usable(self, name: str, files: list[Path]) -> list[Path]:
        """The photos of split ``name`` to train on: vetted (from prepare_data or the cache;
        a file missing from it is vetted now), or all of them with ``vet=False``."""
        if not self.vet:
            log.info(
                f"{name}: {len(files)} photos used unvetted (data.vet=false): grayscale photos "
                f"are trained on too; unreadable and over-large ones are skipped when read and "
                f"counted at the end of the run"
            )
            return files
        report = self._reports.get(name)
        if report is None:
            report = self._scan(files)
        log_report(report, name)
        return report.usable

    def setup(self, stage: str | None = None) -> None:
        if self.datasets:
            return
        files = self._files()
        self._log_other_files()
        for name, stage_files in files.items():
            usable = self._usable(name, stage_files)
            if not usable:
                where = ", ".join(self.dirs.get(name) or self.root)
                raise ValueError(f"{name}: no usable colour photos under {where}")
            repeats = self.train_repeats if name == "train" else 1
            dataset = PhotoDataset(
                usable,
                self.transforms[name],
                repeats,
                self.cache_images,
                min_side=DECODE_SIDE_FACTOR * self.image_size,
                max_pixels=self.max_pixels,
            )
            # Follows torch's seed (``seed=``); workers reseed themselves in seed_worker,
            # training samples each from its own key (EpochSampler).
            dataset.reseed(torch.initial_seed() + len(self.datasets))
            if name == "train":
                dataset.seed_per_sample(torch.initial_seed())
            self.datasets[name] = dataset

    def teardown(self, stage: str) -> None:
        """Count the photos that failed when read (the loader's workers each log only their
        own), at the end of every fit, validate or test run."""
        rank = ""
        if self.trainer is not None and self.trainer.world_size > 1:
            rank = f" (rank {self.trainer.global_rank})"
        for name, dataset in self.datasets.items():
            failures = getattr(dataset, "failures", None)  # a PhotoDataset's
            line = failures.describe(name) if failures is not None else None
            if line is not None:
                log.warning(line + rank)

    def _log_other_files(self) -> None:
        """Say how many files of each folder are not used because of their format."""
        for key, folder in self._folders():
            others = self._listing(folder)[1]
            if others:
                log.info(
                    f"{key}: {describe_others(others)} not used: not a photo format read here "
                    f"({', '.join(IMAGE_EXTENSIONS)})"
                )

    def dataloader(self, name: str) -> DataLoader:
        """The loader of split ``name`` (train, val or test)."""
        if name not in self.datasets:
            raise ValueError(f"no {name} data configured (set data.{name}_dir or data.root)")
        train = name == "train"
        return DataLoader(
            self.datasets[name],
            batch_size=self.batch_size if train else self.eval_batch_size,
            sampler=self._train_sampler() if train else None,
            drop_last=train and len(self.datasets[name]) > self.batch_size,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            pin_memory=self.pin_memory,
            collate_fn=collate_skip_failed,
            worker_init_fn=seed_worker,
        )

    def _train_sampler(self) -> EpochSampler:
        dataset = self.datasets["train"]
        epoch, batches_done = self._resume_at
        skip = batches_done * self.batch_size
        return EpochSampler(len(dataset), dataset.sample_seed or 0, epoch, skip)

    def state_dict(self) -> dict[str, Any]:
        # Where the training order continues: the epoch, and for a mid-epoch stop the batches
        # of it already trained on. Lightning builds (and starts) the training loader before
        # it restores its loops - and calls set_epoch only after - so a resumed run learns
        # this from its checkpoint here, in time.
        if self.trainer is None:
            return {}
        epochs = self.trainer.fit_loop.epoch_progress.current
        mid_epoch = epochs.started > epochs.processed
        batches = self.trainer.fit_loop.epoch_loop.batch_progress.current.completed
        return {"next_epoch": epochs.processed, "batches_done": batches if mid_epoch else 0}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._resume_at = (
            int(state_dict.get("next_epoch", 0)),
            int(state_dict.get("batches_done", 0)),
        )

    def train_dataloader(self) -> DataLoader:
        return self.dataloader("train")

    def val_dataloader(self) -> DataLoader:
        return self.dataloader("val")

    def test_dataloader(self) -> DataLoader:
        return self.dataloader("test")

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        if batch is None:  # every sample of the batch failed to load
            return None
        rgb, indices = batch
        training = self.trainer is not None and self.trainer.training
        if training:
            return make_batch(rgb, self.hints, None)
        return make_batch(rgb, self.eval_hints, indices)
