"""What the benchmark scripts share: running the project's entry points as subprocesses."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _exit_on_signal(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def run_entry_point(args: list[str], log: Path | None = None) -> None:
    """Run ``python <args>`` in the repository root, W&B offline, output to ``log`` (or none).

    A failure stops the benchmark with the log's tail, so a broken run is never reported.
    """
    env = {**os.environ, "HINTCOLOR_ROOT": str(ROOT), "WANDB_MODE": "offline"}
    env.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
    if log:
        log.parent.mkdir(parents=True, exist_ok=True)
    with open(log or os.devnull, "w") as out:
        # its own session: on Ctrl-C, SIGTERM or an error here the run and everything it started
        # (loader workers) are killed together, so a stuck run is never left behind
        proc = subprocess.Popen(
            [sys.executable, *args],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        in_main = threading.current_thread() is threading.main_thread()
        previous = signal.signal(signal.SIGTERM, _exit_on_signal) if in_main else None
        try:
            proc.wait()
        finally:
            if in_main:
                signal.signal(signal.SIGTERM, previous or signal.SIG_DFL)
            if proc.returncode is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
    if proc.returncode != 0:
        tail = log.read_text()[-3000:] if log else ""
        raise SystemExit(f"{' '.join(args[:1])} failed (exit {proc.returncode}):\n{tail}")
