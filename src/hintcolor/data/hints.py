"""Simulated user hints: which pixels the "user" revealed, and with which colour.

Every strategy draws, for each image, a list of square patches (top-left corner and side);
:func:`render_patches` then writes each patch's mean ab into every pixel of the patch and
sets the mask there. Drawing the few patch parameters per image is cheap; the rendering is
one vectorised gather/scatter over the whole batch on the batch's device.

Training hints are fresh random draws (torch's global RNG, so ``seed=`` makes a run
reproducible). Evaluation hints are deterministic per image: pass ``indices`` and each
image gets its own generator seeded from ``seed`` and its index, so a validation metric
means the same thing every epoch and in every run.
"""

from __future__ import annotations

import math
import numbers
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from hintcolor.config import ParameterError

LOCATIONS = ("gaussian", "uniform")


@dataclass
class Patches:
    """Hint patches of one image: top-left corners and sides, int64 tensors of length N."""

    y: Tensor
    x: Tensor
    size: Tensor


@dataclass
class Hints:
    """Rendered hints of a batch.

    ``ab`` (B,2,H,W) holds the hint colour where ``mask`` (B,1,H,W) is 1 and 0 elsewhere.
    ``points`` describes every hint as (batch index, centre y, centre x) in ``centers``
    (N,3) and its colour in ``colors`` (N,2); non-learned baselines (IDW) use them.
    """

    ab: Tensor
    mask: Tensor
    centers: Tensor
    colors: Tensor

    def count(self, batch_size: int) -> Tensor:
        """Number of hints per image, (B,)."""
        return torch.bincount(self.centers[:, 0].long(), minlength=batch_size)


def render_patches(ab: Tensor, patches: Sequence[Patches]) -> Hints:
    """Write each patch's mean ab into the patch; ``patches[i]`` belongs to image ``i``.

    Where patches overlap, the one drawn later wins.
    """
    b, _, h, w = ab.shape
    device = ab.device
    if len(patches) != b:
        raise ValueError(f"got patches for {len(patches)} images, batch has {b}")
    batch = torch.cat([torch.full_like(p.y, i) for i, p in enumerate(patches)]).to(device)
    y = torch.cat([p.y for p in patches]).to(device)
    x = torch.cat([p.x for p in patches]).to(device)
    size = torch.cat([p.size for p in patches]).to(device)
    hint_ab = torch.zeros_like(ab)
    mask = torch.zeros(b, 1, h, w, dtype=ab.dtype, device=device)
    n = y.numel()
    if n == 0:
        empty = torch.zeros(0, 3, device=device)
        return Hints(hint_ab, mask, empty, torch.zeros(0, 2, device=device, dtype=ab.dtype))

    # Every (hint, offset) pair inside the largest patch, keeping those inside each patch.
    side = int(size.max())
    offsets = torch.arange(side, device=device)
    dy = offsets.repeat_interleave(side)
    dx = offsets.repeat(side)
    inside = (dy[None] < size[:, None]) & (dx[None] < size[:, None])
    hint_id = torch.arange(n, device=device)[:, None].expand_as(inside)[inside]
    yy = (y[:, None] + dy[None])[inside]
    xx = (x[:, None] + dx[None])[inside]
    bb = batch[hint_id]

    pixels = ab[bb, :, yy, xx]  # (P, 2)
    colors = torch.zeros(n, 2, dtype=ab.dtype, device=device).index_add_(0, hint_id, pixels)
    colors = colors / (size * size).to(ab.dtype)[:, None]
    # Where patches overlap the later hint wins; resolved explicitly because index_put
    # with repeated indices has no defined order, and eval hints must be reproducible.
    flat = (bb * h + yy) * w + xx
    order = torch.argsort(flat * n + hint_id)  # by pixel, then by hint
    flat, owner = flat[order], hint_id[order]
    last = torch.ones_like(flat, dtype=torch.bool)
    last[:-1] = flat[1:] != flat[:-1]
    bb, yy, xx, owner = bb[order][last], yy[order][last], xx[order][last], owner[last]
    hint_ab[bb, :, yy, xx] = colors[owner]
    mask[bb, 0, yy, xx] = 1.0
    half = (size.to(torch.float32) - 1) / 2
    centers = torch.stack([batch.float(), y.float() + half, x.float() + half], dim=1)
    return Hints(hint_ab, mask, centers, colors)


def _clipped_gaussian(n: int, free: Tensor, generator: torch.Generator | None) -> Tensor:
    """Top-left coordinates for patches around the centre: N((free)/2, (free)/4), clipped.

    ``free`` is the number of valid top-left positions per patch (side - size + 1), as in
    the original colorization-pytorch sampler.
    """
    z = torch.randn(n, generator=generator)
    pos = torch.round(free / 2 + z * free / 4)
    return torch.minimum(pos.clamp_min(0), free - 1).long()


class HintSimulator(ABC):
    """Base class of the strategies; subclasses only say how to draw one image's patches."""

    def __init__(self, seed: int = 0) -> None:
        self.seed = _integer("seed", seed, None)

    @abstractmethod
    def sample(self, height: int, width: int, generator: torch.Generator | None) -> Patches:
        """Draw one image's patches with ``generator`` (None = torch's global RNG)."""

    def __call__(self, ab: Tensor, indices: Sequence[int] | Tensor | None = None) -> Hints:
        """Hints for a normalised ab batch (B,2,H,W).

        With ``indices`` (dataset indices of the images) the draw is deterministic per image.
        """
        b, _, h, w = ab.shape
        if indices is None:
            patches = [self.sample(h, w, None) for _ in range(b)]
        else:
            patches = [self.sample(h, w, self.generator_for(int(i))) for i in indices]
        return render_patches(ab, patches)

    def generator_for(self, index: int) -> torch.Generator:
        # A large odd multiplier keeps (seed, index) pairs from colliding for small seeds.
        return torch.Generator().manual_seed(self.seed * 1_000_003 + index)

    @staticmethod
    def _locations(
        sizes: Tensor, height: int, width: int, location: str, generator: torch.Generator | None
    ) -> tuple[Tensor, Tensor]:
        free_y = (height - sizes + 1).float()
        free_x = (width - sizes + 1).float()
        n = sizes.numel()
        if location == "gaussian":
            return _clipped_gaussian(n, free_y, generator), _clipped_gaussian(n, free_x, generator)
        if location == "uniform":
            uy = torch.rand(n, generator=generator)
            ux = torch.rand(n, generator=generator)
            return (uy * free_y).long(), (ux * free_x).long()
        raise ValueError(f"unknown hint location law {location!r}; use 'gaussian' or 'uniform'")


# Parameter checks of the constructors: a value out of range fails when the law is built
# (at start-up), as one line naming the config key, not at the first batch.
def _is_int(value: object) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _integer(key: str, value: object, low: int | None) -> int:
    if not _is_int(value) or (low is not None and value < low):
        allowed = "an integer" if low is None else f"an integer >= {low}"
        raise ParameterError(key, allowed, value)
    return int(value)


def _fraction(key: str, value: object, allowed: str, low_open: bool) -> float:
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool)
    x = float(value) if ok else math.nan
    if not (0.0 < x <= 1.0 if low_open else 0.0 <= x <= 1.0):
        raise ParameterError(key, allowed, value)
    return x


def _location(value: object) -> str:
    if value not in LOCATIONS:
        raise ParameterError("location", " or ".join(repr(v) for v in LOCATIONS), value)
    return str(value)


def _check_sizes(patch_sizes: Sequence[int]) -> list[int]:
    sizes = list(patch_sizes) if isinstance(patch_sizes, Sequence) else []
    if not sizes or not all(_is_int(s) and s >= 1 for s in sizes):
        raise ParameterError("patch_sizes", "a non-empty list of positive integers", patch_sizes)
    return [int(s) for s in sizes]


class Zhang17Hints(HintSimulator):
    """Zhang et al. 2017: k ~ Geometric(p) hints, P(k) = (1-p)^k p (mean (1-p)/p).

    Each hint is a square patch whose side is drawn from ``patch_sizes``, placed with a
    clipped Gaussian around the image centre (std = a quarter of the side) or uniformly.
    """

    def __init__(
        self,
        p: float = 0.125,
        patch_sizes: Sequence[int] = (1, 2, 3, 4, 5, 6, 7, 8, 9),
        location: str = "gaussian",
        max_hints: int | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__(seed)
        # p is the geometric law's success probability: mean (1-p)/p hints, P(0 hints) = p
        self.p = _fraction("p", p, "in (0, 1] (mean hints (1-p)/p)", low_open=True)
        self.patch_sizes = torch.tensor(_check_sizes(patch_sizes))
        self.location = _location(location)
        self.max_hints = None if max_hints is None else _integer("max_hints", max_hints, 0)

    def sample_count(self, generator: torch.Generator | None) -> int:
        if self.p == 1.0:
            return 0
        # Inverse-CDF draw: P(floor(log U / log(1-p)) >= n) = (1-p)^n.
        u = torch.rand(1, generator=generator).clamp_min(1e-12)
        k = math.floor(math.log(float(u)) / math.log1p(-self.p))
        return k if self.max_hints is None else min(k, self.max_hints)

    def sample(self, height: int, width: int, generator: torch.Generator | None) -> Patches:
        k = self.sample_count(generator)
        choice = torch.randint(len(self.patch_sizes), (k,), generator=generator)
        sizes = self.patch_sizes[choice].clamp(max=min(height, width))
        y, x = self._locations(sizes, height, width, self.location, generator)
        return Patches(y, x, sizes)


class DensityHints(HintSimulator):
    """Every pixel revealed independently with probability rho, rho drawn from ``rates``."""

    def __init__(self, rates: Sequence[float] = (0.005, 0.01, 0.03), seed: int = 0) -> None:
        super().__init__(seed)
        allowed = "a non-empty list of fractions in [0, 1]"
        if not isinstance(rates, Sequence) or isinstance(rates, str) or not rates:
            raise ParameterError("rates", allowed, rates)
        self.rates = [_fraction("rates", r, allowed, low_open=False) for r in rates]

    def sample(self, height: int, width: int, generator: torch.Generator | None) -> Patches:
        rho = self.rates[int(torch.randint(len(self.rates), (1,), generator=generator))]
        revealed = torch.rand(height, width, generator=generator) < rho
        y, x = revealed.nonzero(as_tuple=True)
        return Patches(y, x, torch.ones_like(y))


class UniformHints(HintSimulator):
    """iColoriT style: k ~ U{0..max_hints} distinct ``cell`` x ``cell`` grid cells."""

    def __init__(self, max_hints: int = 128, cell: int = 2, seed: int = 0) -> None:
        super().__init__(seed)
        self.max_hints = _integer("max_hints", max_hints, 0)
        self.cell = _integer("cell", cell, 1)

    def sample(self, height: int, width: int, generator: torch.Generator | None) -> Patches:
        cell = min(self.cell, height, width)
        rows, cols = height // cell, width // cell
        k = int(torch.randint(self.max_hints + 1, (1,), generator=generator))
        chosen = torch.randperm(rows * cols, generator=generator)[:k]
        return Patches(
            (chosen // cols) * cell, (chosen % cols) * cell, torch.full_like(chosen, cell)
        )


class FixedHints(HintSimulator):
    """Exactly ``k`` patches of side ``patch_size``: the evaluation protocol's hints."""

    def __init__(
        self, k: int = 10, patch_size: int = 6, location: str = "gaussian", seed: int = 0
    ) -> None:
        super().__init__(seed)
        self.k = _integer("k", k, 0)
        self.patch_size = _integer("patch_size", patch_size, 1)
        self.location = _location(location)

    def sample(self, height: int, width: int, generator: torch.Generator | None) -> Patches:
        sizes = torch.full((self.k,), min(self.patch_size, height, width), dtype=torch.long)
        y, x = self._locations(sizes, height, width, self.location, generator)
        return Patches(y, x, sizes)


def model_input(l_norm: Tensor, hints: Hints) -> Tensor:
    """The network's 4-channel input: L, hint a, hint b, mask."""
    return torch.cat([l_norm, hints.ab, hints.mask], dim=1)
