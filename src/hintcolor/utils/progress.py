"""Progress as log lines, for long work whose output is a file, a batch job or CI, where a
live bar shows nothing: the evaluation (off a terminal) and the start-up vetting."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import timedelta


def duration(seconds: float) -> str:
    """'0:01:05'."""
    return str(timedelta(seconds=round(seconds)))


class ProgressLog:
    """A line to ``log`` every ``every_percent`` % of ``total`` or every ``every_s`` seconds,
    whichever comes first: '<verb> 20/200 <noun> (10 %)[, 4 <rate_unit>/s], 0:00:05 elapsed,
    ETA 0:00:45'."""

    def __init__(
        self,
        log: logging.Logger,
        total: int,
        verb: str,
        noun: str,
        rate_unit: str | None = None,
        every_percent: float = 10.0,
        every_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.log, self.total, self.verb, self.noun = log, max(total, 1), verb, noun
        self.rate_unit, self.every_percent, self.every_s = rate_unit, every_percent, every_s
        self.clock = clock
        self.done = 0
        self.start = self._last_line = clock()
        self._next_percent = every_percent

    def advance(self, n: int) -> None:
        self.done += n
        now = self.clock()
        percent = 100.0 * self.done / self.total
        if percent >= self._next_percent or now - self._last_line >= self.every_s:
            self._last_line = now
            while self._next_percent <= percent:
                self._next_percent += self.every_percent
            self.log.info(self.line(now))

    def line(self, now: float) -> str:
        elapsed = now - self.start
        eta = duration(elapsed / self.done * (self.total - self.done)) if self.done else "unknown"
        rate = (
            f"{self.done / max(elapsed, 1e-9):.0f} {self.rate_unit}/s, " if self.rate_unit else ""
        )
        return (
            f"{self.verb} {self.done}/{self.total} {self.noun} "
            f"({100 * self.done / self.total:.0f} %), {rate}{duration(elapsed)} elapsed, ETA {eta}"
        )
