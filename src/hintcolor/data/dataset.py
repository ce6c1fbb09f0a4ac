"""A dataset of photo files: decode, augment, hand back uint8 RGB and the image's index."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset, default_collate, get_worker_info

from hintcolor.data.images import DEFAULT_MAX_PIXELS, PhotoTooLarge, load_rgb, shown
from hintcolor.data.sampler import mix_seed

log = logging.getLogger(__name__)

# Why a photo could not be used when read.
FAILURE_KINDS = ("unreadable", "over data.max_pixels", "failed in the transforms")
UNREADABLE, TOO_LARGE, TRANSFORM_FAILED = range(len(FAILURE_KINDS))


class ReadFailures:
    """Which photos failed to load, in memory shared with the loader's worker processes, so
    that the run can count them (each worker only logs its own)."""

    def __init__(self, n_files: int) -> None:
        # A shared tensor rather than a multiprocessing.Array: it also survives being
        # pickled outside a process start (a plain copy then, never an error).
        self._codes = torch.zeros(max(n_files, 1), dtype=torch.uint8).share_memory_()

    def record(self, index: int, kind: int) -> None:
        self._codes[index] = kind + 1  # 0: read fine (or not yet)

    def counts(self) -> dict[str, int]:
        """Photos per kind of failure (kinds with none left out)."""
        found = torch.bincount(self._codes, minlength=len(FAILURE_KINDS) + 1)[1:].tolist()
        return {kind: n for kind, n in zip(FAILURE_KINDS, found, strict=True) if n}

    def describe(self, name: str) -> str | None:
        """'train: 3 photo(s) could not be read ...', or None when all were read."""
        counts = self.counts()
        if not counts:
            return None
        kinds = ", ".join(f"{n} {kind}" for kind, n in counts.items())
        return (
            f"{name}: {sum(counts.values())} photo(s) could not be used when read and were "
            f"skipped ({kinds}; each named in a warning above)"
        )


class PhotoDataset(Dataset):
    """Photos as ``(rgb uint8 (3,H,W), index)``; colour conversion happens on the batch.

    ``repeats`` makes an epoch visit each photo several times (with fresh random crops),
    which keeps epochs of a small folder from being a handful of steps long.
    ``min_side`` lets large JPEGs decode at reduced size (see :func:`load_rgb`): the
    transforms shrink them to the training crop anyway, and a full decode of a 48 MP photo
    at every read would dominate the data pipeline.
    A file that fails to decode (or is over ``max_pixels``) is logged once, counted in
    ``failures`` and yields ``None``, which :func:`collate_skip_failed` drops, so a bad file
    never stops a run.
    """

    def __init__(
        self,
        files: Sequence[Path],
        transform: Callable[..., dict] | None = None,
        repeats: int = 1,
        cache: bool = False,
        min_side: int | None = None,
        max_pixels: int = DEFAULT_MAX_PIXELS,
    ) -> None:
        if repeats < 1:
            raise ValueError(f"repeats must be >= 1, got {repeats}")
        self.files = list(files)
        self.transform = transform
        self.repeats = repeats
        self.min_side = min_side
        self.max_pixels = max_pixels
        self._reported: set[int] = set()
        self.failures = ReadFailures(len(self.files))
        self.sample_seed: int | None = None
        # Decoded once here, before the loader forks its workers: they share these pages
        # (copy-on-write) instead of each decoding every photo again every epoch.
        self._decoded: list[np.ndarray | None] | None = None
        if cache:
            self._decoded = [self._decode(i) for i in range(len(self.files))]

    def _decode(self, index: int) -> np.ndarray | None:
        try:
            rgb = load_rgb(self.files[index], min_side=self.min_side, max_pixels=self.max_pixels)
        except PhotoTooLarge as exc:  # unvetted (data.vet=false), or grown since vetting
            self._report(index, exc, TOO_LARGE)
            return None
        except Exception as exc:  # unvetted, or a file that changed after the start-up scan
            self._report(index, exc, UNREADABLE)
            return None
        rgb.setflags(write=False)  # a transform writing in place must not alter the cache
        return rgb

    def _report(self, index: int, exc: Exception, kind: int) -> None:
        self.failures.record(index, kind)
        if index not in self._reported:
            self._reported.add(index)
            log.warning(f"skipping {shown(self.files[index])} ({FAILURE_KINDS[kind]}): {exc}")

    def seed_per_sample(self, seed: int) -> None:
        """Augment each sample with its own seed, from ``seed`` and the sample's key (see
        :class:`~hintcolor.data.sampler.EpochSampler`): the same crops whichever worker
        draws it, so a resumed run sees what the uninterrupted one would have."""
        self.sample_seed = int(seed)

    def reseed(self, seed: int) -> None:
        """Seed the augmentation pipeline (albumentations keeps its own RNG, which global
        seeds do not reach)."""
        if hasattr(self.transform, "set_random_seed"):
            self.transform.set_random_seed(seed % 2**32)

    def __len__(self) -> int:
        return len(self.files) * self.repeats

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int] | None:
        if self.sample_seed is not None:
            self.reseed(mix_seed(self.sample_seed, index))
        index = index % len(self.files)
        rgb = self._decoded[index] if self._decoded is not None else self._decode(index)
        if rgb is None:
            return None
        try:
            return to_sample(rgb, self.transform, index)
        except Exception as exc:  # e.g. a photo smaller than a fixed-size crop
            self._report(index, exc, TRANSFORM_FAILED)
            return None


def to_sample(
    rgb: np.ndarray, transform: Callable[..., dict] | None, index: int
) -> tuple[torch.Tensor, int]:
    """A decoded photo (H, W, 3) through the augmentation ``transform`` (which may raise), as
    the loaders yield it: (uint8 RGB (3, H, W), index)."""
    if transform is not None:
        rgb = transform(image=rgb)["image"]
    return torch.from_numpy(np.ascontiguousarray(rgb.transpose(2, 0, 1))), index


def seed_worker(worker_id: int) -> None:
    """DataLoader ``worker_init_fn``: a distinct, reproducible augmentation seed per worker.

    Without it every worker would replay the same crops (albumentations copies its RNG
    state into each worker), and ``seed=`` would not make runs reproducible.
    """
    info = get_worker_info()
    if info is not None:
        info.dataset.reseed(info.seed)


def collate_skip_failed(samples: list) -> tuple[torch.Tensor, torch.Tensor] | None:
    """Default collation minus the samples that failed to load (None if all failed)."""
    samples = [s for s in samples if s is not None]
    return default_collate(samples) if samples else None
