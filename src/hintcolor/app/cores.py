"""How many cores the page's heavy work may use right now: the ones other processes leave free.

torch runs each operation as an OpenMP parallel region whose threads all have to arrive before
the next one starts. When another process keeps one core busy (a training run, the browser),
a second thread waits for that core at every region: measured here, a preview (~2,000 small
operations) took 3.1 s with 2 threads against 58 ms with 1. So opening a photo and a download
ask :class:`CpuWatch` first and use every core only while no other process needs one. (A click
always runs on one core: see the server.)
"""

from __future__ import annotations

import os
import threading
import time
from collections import deque


def _busy_seconds() -> float | None:
    """CPU seconds all processes have used since boot (every core), from /proc/stat."""
    try:
        with open("/proc/stat") as f:
            fields = [int(v) for v in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


class CpuWatch:
    """The cores other processes kept busy (a daemon thread samples /proc/stat every
    ``period`` seconds; this process's own CPU time is left out), and from that the threads a
    job should use: every core while others used less than ``slack`` of one in each of the
    last ``window`` periods, else the cores they leave (at least one). A bursty neighbour
    (a browser, a job starting) counts at its busiest: a job on one core too many costs far
    more than one on a core too few. Where /proc/stat cannot be read, always every core."""

    def __init__(
        self, cores: int, period: float = 0.25, slack: float = 0.25, window: int = 4
    ) -> None:
        self.cores, self.period, self.slack = max(1, cores), period, slack
        self.others = 0.0  # cores busy with other processes' work: the most in the window
        self._recent: deque[float] = deque(maxlen=window)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        if _busy_seconds() is not None:
            self._thread = threading.Thread(target=self._sample, name="cpu-watch", daemon=True)
            self._thread.start()

    def _sample(self) -> None:
        last = (time.monotonic(), _busy_seconds(), time.process_time())
        while not self._stop.wait(self.period):
            now = (time.monotonic(), _busy_seconds(), time.process_time())
            if now[1] is None or last[1] is None:
                return
            wall = max(now[0] - last[0], 1e-3)
            self._recent.append(max(0.0, (now[1] - last[1] - (now[2] - last[2])) / wall))
            self.others = max(self._recent)
            last = now

    def threads(self) -> int:
        """Threads for a job starting now."""
        free = self.cores - self.others
        return max(1, min(self.cores, int(free + self.slack)))

    def stop(self) -> None:
        self._stop.set()
