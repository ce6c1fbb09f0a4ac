"""The training order: a function of (seed, epoch) alone, so a resumed run replays it exactly.

torch's ``RandomSampler`` draws its order, and the loader its workers' seeds, from the global
RNG at the moment Lightning creates the epoch's iterator, which for the first epoch after a
resume happens before any hook could reseed it; and persistent workers carry augmentation
RNG state across epochs. Neither survives a resume. Here the order is drawn from
(seed, epoch), and each sample gets a key ``epoch * n + index`` from which the dataset seeds
its augmentation, whichever worker draws it.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import Sampler

# A large odd multiplier keeps (seed, x) pairs from colliding for small seeds.
MIX = 1_000_003


def mix_seed(seed: int, value: int) -> int:
    """A 32-bit seed for ``value`` (an epoch, a sample key) under run seed ``seed``."""
    return (seed * MIX + value) % 2**32


class EpochSampler(Sampler[int]):
    """A fresh random order every epoch, yielding sample keys ``epoch * n + index``.

    Lightning calls :meth:`set_epoch` at every epoch start (and forwards it through its
    distributed wrapper); ``epoch`` at construction is where a resumed run starts, ``skip``
    how many of that epoch's samples it trained on before it stopped (mid-epoch resume).
    """

    def __init__(self, n: int, seed: int, epoch: int = 0, skip: int = 0) -> None:
        self.n, self.seed, self.epoch = n, int(seed), int(epoch)
        # samples of ``epoch`` already trained on before a mid-epoch stop: not drawn again
        self.skip = int(skip)
        self._skip_epoch = self.epoch

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.n

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(mix_seed(self.seed, self.epoch))
        order = torch.randperm(self.n, generator=generator)
        if self.epoch == self._skip_epoch and self.skip:
            order, self.skip = order[self.skip :], 0  # once: later epochs are whole
        return iter((order + self.epoch * self.n).tolist())
