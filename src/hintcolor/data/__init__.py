"""Photos, colour space and simulated hints.

The exports are imported on first use: a process that only vets or decodes photos
(hintcolor.data.vetting, .images - the vetting workers, a scan in a subprocess) then starts
without importing Lightning.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "ColorizationDataModule": "hintcolor.data.datamodule",
    "make_batch": "hintcolor.data.datamodule",
    "DensityHints": "hintcolor.data.hints",
    "FixedHints": "hintcolor.data.hints",
    "HintSimulator": "hintcolor.data.hints",
    "UniformHints": "hintcolor.data.hints",
    "Zhang17Hints": "hintcolor.data.hints",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
