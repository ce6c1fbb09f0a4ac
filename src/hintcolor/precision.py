"""A precision setting ("auto", "bf16-mixed", "32-true", ...) -> what a network runs in.

Training hands Lightning the resolved setting (:func:`resolve_precision`); evaluation and
inference, which run the network themselves, enter :func:`autocast` for it. The settings are
Lightning's: ``auto`` is the fastest safe one on the hardware
(:func:`~hintcolor.utils.hardware.fast_precision`); ``bf16-*`` and ``16-*`` run the network
in autocast to that dtype; ``32-true`` and ``64-true`` run it as it is.
"""

from __future__ import annotations

import contextlib

import torch

from hintcolor.utils.hardware import fast_precision


def resolve_precision(precision: str | int, accelerator: str = "auto") -> str | int:
    """``precision``, with ``auto`` replaced by the fastest safe one on ``accelerator``
    (``auto``, ``gpu``, ``cuda``, ``cpu``: a device type names its accelerator)."""
    return fast_precision(str(accelerator)) if precision == "auto" else precision


def autocast_dtype(precision: str | int) -> torch.dtype | None:
    """The dtype a resolved ``precision`` runs the network's matmuls and convolutions in
    under autocast; None: no autocast (full precision)."""
    name = str(precision)
    if name.startswith("bf16"):
        return torch.bfloat16
    if name.startswith("16"):
        return torch.float16
    return None


def autocast(precision: str | int, device: torch.device | str) -> contextlib.AbstractContextManager:
    """The context a network on ``device`` runs in at ``precision`` (``auto`` resolved for
    that device): ``torch.autocast`` to a 16-bit dtype, or nothing."""
    device_type = torch.device(device).type
    dtype = autocast_dtype(resolve_precision(precision, device_type))
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type, dtype=dtype)
