"""Thread lanes: where the page's heavy work runs, off the server's event loop.

Decoding, the network and image encoding run on a lane's threads; the event loop only reads
requests and answers them. A lane holds a bounded number of waiting jobs; past that it answers
503 at once rather than letting work pile up.
"""

from __future__ import annotations

import asyncio
import os
import sys
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import torch
from fastapi import HTTPException

BUSY = "busy, try again"
T = TypeVar("T")


class Lane:
    """Threads for one kind of job, with at most ``queue`` jobs waiting for them.

    Each job runs torch on ``threads()`` cores, asked as it starts (torch's thread count is
    per thread: jobs on two lanes each have their own). ``nice`` lowers the lane's CPU
    priority (Linux, where it is per thread): background work that yields the cores to the
    page's clicks at once when they want them (a click's threads at nice 0 get ~9/10 of a
    core a nice-10 thread also wants).
    """

    def __init__(
        self, name: str, workers: int, queue: int, threads: Callable[[], int], nice: int = 0
    ) -> None:
        def start_thread() -> None:
            if nice and sys.platform == "linux":
                os.nice(nice)

        self.executor = ThreadPoolExecutor(workers, f"hintcolor-{name}", start_thread)
        self.slots = threading.BoundedSemaphore(workers + queue)
        self.threads = threads

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)`` on this lane's threads; HTTP 503 at once when the lane is full."""
        if not self.slots.acquire(blocking=False):
            raise HTTPException(503, BUSY, headers={"Retry-After": "1"})
        try:
            future = self.executor.submit(self._job, fn, *args)
        except BaseException:
            self.slots.release()
            raise
        future.add_done_callback(lambda _: self.slots.release())
        return await asyncio.wrap_future(future)

    def _job(self, fn: Callable[..., T], *args: Any) -> T:
        torch.set_num_threads(self.threads())
        return fn(*args)

    def shutdown(self) -> None:
        self.executor.shutdown(wait=False, cancel_futures=True)
