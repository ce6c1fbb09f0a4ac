"""``data=streaming``: photos from LitData shards (``src/shard.py``), local or ``s3://``.

The loaders yield what :class:`~hintcolor.data.datamodule.ColorizationDataModule`'s do -
``(uint8 RGB (3,H,W), index)`` samples, undecodable ones dropped by ``collate_skip_failed`` -
so its ``on_after_batch_transfer`` (Lab conversion, hint simulation) applies unchanged.

Training streams through ``StreamingDataLoader``: chunks are assigned to processes and
workers, shuffled per epoch from (seed, epoch); the loader's own state (litdata's
``state_dict``) travels in checkpoints through the data module's, so a run stopped mid-epoch
resumes with the samples it had not seen. Validation and test read the shards by index, like
a folder: every photo once, in order, split across DDP processes by Lightning's sampler as
data=folder's are.
"""

from __future__ import annotations

import io
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from litdata import StreamingDataLoader, StreamingDataset
from litdata.streaming.sampler import ChunkedIndex
from torch.utils.data import DataLoader, Dataset

from hintcolor.data.datamodule import DECODE_SIDE_FACTOR, STAGES, ColorizationDataModule
from hintcolor.data.dataset import collate_skip_failed, to_sample
from hintcolor.data.hints import HintSimulator
from hintcolor.data.images import load_rgb, shown
from hintcolor.data.sampler import mix_seed
from hintcolor.data.shards import IMAGE_KEY, INDEX_FILE, SOURCE_KEY

log = logging.getLogger(__name__)

Sample = tuple[torch.Tensor, int]


class PhotoShards(StreamingDataset):
    """A shard directory's photos as ``(rgb uint8 (3,H,W), index)``, decoded and augmented as
    :class:`~hintcolor.data.dataset.PhotoDataset` does a file's.

    ``augment_seed`` seeds each sample's augmentation from (seed, epoch, index): the same
    crops whichever worker draws it, so a resumed run replays what the uninterrupted one saw.
    A sample that fails to decode is logged once, counted in ``skipped`` and yields None.
    """

    def __init__(
        self,
        input_dir: str,
        photo_transform: Callable[..., dict] | None,
        min_side: int | None,
        max_pixels: int,
        augment_seed: int | None = None,
        **streaming: Any,
    ) -> None:
        super().__init__(input_dir, **streaming)
        # not ``transform``: StreamingDataset applies an attribute of that name to raw items
        self.photo_transform = photo_transform
        self.min_side = min_side
        self.max_pixels = max_pixels
        self.augment_seed = augment_seed
        # index -> why, of the samples that failed in this process (each worker has its own)
        self.skipped: dict[int, str] = {}

    def __getitem__(self, index: Any) -> Any:
        item = super().__getitem__(index)
        if isinstance(index, ChunkedIndex):
            return self.photo(item, index.index)
        if isinstance(index, int):
            return self.photo(item, index)
        return item  # slices, keys: the raw samples

    def total(self) -> int:
        """Samples in the shards, whatever this process's share of them."""
        return sum(end - start for start, end in self.region_of_interest)

    def photo(self, item: dict[str, Any], index: int) -> Sample | None:
        """The sample ``index`` (raw ``item``: its fields are bytes-like, memory views of the
        chunk) decoded and augmented; None if it cannot be."""
        if self.augment_seed is not None and hasattr(self.photo_transform, "set_random_seed"):
            key = mix_seed(mix_seed(self.augment_seed, self.current_epoch), index)
            self.photo_transform.set_random_seed(key)
        try:
            photo = io.BytesIO(item[IMAGE_KEY])
            rgb = load_rgb(photo, min_side=self.min_side, max_pixels=self.max_pixels)
            return to_sample(rgb, self.photo_transform, index)
        except Exception as exc:  # any decoder error, or a photo smaller than a fixed crop
            self._report(index, item, exc)
            return None

    def _report(self, index: int, item: dict[str, Any], exc: Exception) -> None:
        if index not in self.skipped:
            self.skipped[index] = f"{type(exc).__name__}: {exc}"
            source = shown(os.fsdecode(bytes(item.get(SOURCE_KEY, b"?"))))
            shards = self.input_dir.url or self.input_dir.path
            log.warning(
                f"skipping unreadable sample {index} of the shards at {shards} (from {source}): "
                f"{exc} ({len(self.skipped)} skipped by this process)"
            )


class IndexedShards(Dataset):
    """A shard directory read by index (map-style), for validation and test."""

    def __init__(self, shards: PhotoShards) -> None:
        self.shards = shards

    def __len__(self) -> int:
        return self.shards.total()

    def __getitem__(self, index: int) -> Sample | None:
        return self.shards[int(index)]


class StreamingDataModule(ColorizationDataModule):
    """Photos from the shard directories ``train_shards``/``val_shards``/``test_shards``
    (local folders or ``s3://`` URLs, written by ``src/shard.py``), with data=folder's
    decoding, augmentation and hints.

    ``folder_options`` are :class:`ColorizationDataModule`'s (image_size, batch_size,
    num_workers, max_pixels, ...); its folder keys (train_dir, root, ...) are not read. A
    missing shard directory fails at set-up, naming its key.
    """

    def __init__(
        self,
        hints: HintSimulator,
        train_transform: Callable[..., dict],
        eval_transform: Callable[..., dict],
        *,
        train_shards: str | None,
        val_shards: str | None,
        test_shards: str | None,
        drop_last: bool | None,
        shard_cache_dir: str | None,
        max_cache_size: int | str | None,
        storage_options: dict | None,
        **folder_options: Any,
    ) -> None:
        self.shards = {"train": train_shards, "val": val_shards, "test": test_shards}
        self.drop_last = drop_last
        self._train_loader: StreamingDataLoader | None = None
        self._resume_state: dict[str, Any] | None = None  # from a checkpoint, for the next loader
        self.streaming_options = {
            "cache_dir": shard_cache_dir,
            "max_cache_size": max_cache_size,
            "storage_options": dict(storage_options) if storage_options else None,
        }
        super().__init__(hints, train_transform, eval_transform, **folder_options)
        if self.train_repeats != 1:
            raise ValueError(
                f"data.train_repeats={self.train_repeats}: data=streaming passes over the "
                "shards once per epoch; train longer with trainer.max_epochs"
            )

    def _check_paths(self) -> None:
        # Nothing to check at construction: shards may be s3:// URLs, opened at set-up.
        return

    def prepare_data(self) -> None:
        # The photos were vetted when the shards were written (src/shard.py).
        return

    def setup(self, stage: str | None = None) -> None:
        if self.datasets:
            return
        if not any(self.shards.values()):
            raise ValueError(
                "no data: set data.train_shards and data.val_shards (shard directories written "
                "by python src/shard.py, or s3:// URLs); data=streaming does not read "
                "data.train_dir/val_dir/test_dir/root"
            )
        for split in STAGES:
            if self.shards[split]:
                shards = self._open(split)
                self.datasets[split] = shards if split == "train" else IndexedShards(shards)
                log.info(f"{split}: {shards.total()} photos in the shards at {self.shards[split]}")

    def _open(self, split: str) -> PhotoShards:
        """Split ``split``'s shards; a missing or foreign directory is an error naming its key."""
        key, url = f"data.{split}_shards", str(self.shards[split])
        if "://" not in url and not (Path(url) / INDEX_FILE).is_file():
            what = "does not exist" if not Path(url).is_dir() else f"has no {INDEX_FILE}"
            raise FileNotFoundError(
                f"{key}: shard directory {url} {what}; write shards with python src/shard.py "
                "data=folder data.train_dir=... data.val_dir=... output_dir=..."
            )
        train = split == "train"
        seed = torch.initial_seed()  # follows ``seed=``, as data=folder's order and crops do
        try:
            return PhotoShards(
                url,
                self.transforms[split],
                min_side=DECODE_SIDE_FACTOR * self.image_size,
                max_pixels=self.max_pixels,
                augment_seed=seed if train else None,
                shuffle=train,
                drop_last=self.drop_last if train else False,
                seed=seed % 2**32,
                **self.streaming_options,
            )
        except Exception as exc:  # an unreachable bucket, missing credentials, a bad index
            raise ValueError(f"{key}: cannot read the shards at {url}: {exc}") from exc

    def dataloader(self, name: str) -> DataLoader:
        """The loader of split ``name`` (train, val or test)."""
        if name not in self.datasets:
            raise ValueError(f"no {name} data configured (set data.{name}_shards)")
        if name != "train":
            return DataLoader(
                self.datasets[name],
                batch_size=self.eval_batch_size,
                num_workers=self.num_workers,
                persistent_workers=self.num_workers > 0,
                pin_memory=self.pin_memory,
                collate_fn=collate_skip_failed,
            )
        # Opened again here: by now Lightning has set up the process group, from which
        # LitData takes this process's share of the chunks.
        self.datasets["train"] = self._open("train")
        self._train_loader = StreamingDataLoader(
            self.datasets["train"],
            batch_size=self.batch_size,
            num_workers=self.num_workers,
            # fresh workers each epoch: each takes the epoch (order, crops) from the loader;
            # persistent ones would keep the previous epoch's after a shortened epoch
            persistent_workers=False,
            pin_memory=self.pin_memory,
            collate_fn=collate_skip_failed,
            # workers' base seeds from a generator of the loader's own: this loader starts its
            # iterator at the first batch, and a draw from torch's global generator there
            # would shift the training hints of a resumed run (EpochSeed restores it before)
            generator=torch.Generator().manual_seed(torch.initial_seed()),
        )
        if self._resume_state:  # once: where the checkpoint left the epoch
            self._train_loader.load_state_dict(self._resume_state)
            self._resume_state = None
        return self._train_loader

    # Resume: the training loader's own state (litdata: epoch, samples yielded per worker)
    # goes into each checkpoint here and comes back into the next loader before its first
    # batch. Lightning's fit loop keeps that state too, but loads it only into a loader built
    # after the restore, and ours is built before (the schedule's estimated_stepping_batches),
    # so a resumed run would start the epoch over.
    def state_dict(self) -> dict[str, Any]:
        return {"train_loader": self._train_loader.state_dict()} if self._train_loader else {}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._resume_state = state_dict.get("train_loader")
