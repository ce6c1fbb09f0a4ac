"""Photos, colour space and simulated hints."""

from hintcolor.data.datamodule import ColorizationDataModule, make_batch
from hintcolor.data.hints import (
    DensityHints,
    FixedHints,
    HintSimulator,
    UniformHints,
    Zhang17Hints,
)

__all__ = [
    "ColorizationDataModule",
    "DensityHints",
    "FixedHints",
    "HintSimulator",
    "UniformHints",
    "Zhang17Hints",
    "make_batch",
]
