"""Learning-rate schedules defined over a run's budget of steps *and* time.

A cosine over ``max_epochs`` assumes every epoch is reached. With a wall-clock cap
(``trainer.max_time``, which ``make train`` sets) a slower machine - fp32 on a CPU without
bf16 is ~6x slower - stops with the schedule barely started, and its model is worse than
interpolation. :class:`BudgetCosineLR` anneals over whichever ends first, the steps or the
time, so a slow machine trains fewer steps but still ends at the floor.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler

# Anneal over this share of the time budget and hold the floor for the rest: the last
# validation and checkpoint also take time, and the final steps should be at the floor.
TIME_SHARE = 0.95


def seconds(max_time: str | Mapping[str, float] | timedelta | float | None) -> float | None:
    """Lightning's ``max_time`` ("DD:HH:MM:SS", {days: .., hours: ..}, timedelta) in seconds."""
    if max_time is None:
        return None
    if isinstance(max_time, timedelta):
        return max_time.total_seconds()
    if isinstance(max_time, int | float):
        return float(max_time)
    if isinstance(max_time, Mapping):
        return timedelta(**{k: float(v) for k, v in max_time.items()}).total_seconds()
    days, hours, minutes, secs = (float(p) for p in str(max_time).split(":"))
    return timedelta(days=days, hours=hours, minutes=minutes, seconds=secs).total_seconds()


class BudgetCosineLR(LRScheduler):
    """Linear warm-up, then cosine from the base lr to ``eta_min`` over the budget.

    Progress is the larger of ``steps / total_steps`` and ``training time / max_time``
    (times ``TIME_SHARE``). Training time is measured from the scheduler's creation and kept
    in the state dict, so a resumed run continues where it stopped and the time it was down does not
    count. Without ``max_time`` the schedule is purely step-based, hence reproducible.

    ``total_steps`` is filled in by the LightningModule (the run's optimiser steps, as
    Lightning estimates them).
    """

    def __init__(
        self,
        optimizer: Optimizer,
        total_steps: float,
        eta_min: float = 0.0,
        warmup_steps: int = 0,
        max_time: Any = None,
        last_epoch: int = -1,
    ) -> None:
        if not total_steps > 0:
            raise ValueError(f"scheduler: total_steps must be positive, got {total_steps}")
        self.total_steps = total_steps  # inf without max_epochs/max_steps: time alone counts
        self.eta_min = float(eta_min)
        self.warmup_steps = max(0, int(warmup_steps))
        self.max_seconds = seconds(max_time)
        self.elapsed = 0.0
        # From creation (the start of fit), as Lightning's max_time Timer counts, so the
        # schedule reaches its floor before the Timer stops the run.
        self._last_tick = time.monotonic()
        super().__init__(optimizer, last_epoch)

    def progress(self) -> float:
        """How much of the budget is spent, in [0, 1]."""
        by_steps = self.last_epoch / self.total_steps
        by_time = self.elapsed / (self.max_seconds * TIME_SHARE) if self.max_seconds else 0.0
        return min(1.0, max(by_steps, by_time))

    def step(self, epoch: int | None = None) -> None:
        now = time.monotonic()
        self.elapsed += now - self._last_tick
        self._last_tick = now
        super().step(epoch)

    def get_lr(self) -> list[float]:
        step = self.last_epoch
        if step < self.warmup_steps:
            return [base * (step + 1) / self.warmup_steps for base in self.base_lrs]
        cosine = 0.5 * (1 + math.cos(math.pi * self.progress()))
        return [self.eta_min + (base - self.eta_min) * cosine for base in self.base_lrs]

    def state_dict(self) -> dict[str, Any]:
        return {k: v for k, v in super().state_dict().items() if k != "_last_tick"}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        super().load_state_dict(state_dict)
        self._last_tick = time.monotonic()  # time spent stopped is not training time
