"""kill -9 at a random moment of training, then resume; N times. Prints a table.

    python scripts/kill_resume.py [--trials 20] [--epochs 6] [--seed 0]

Each trial starts a small training run (fp32, the embedded photos), sends SIGKILL to its whole
process group after a random delay, then resumes from ``last.ckpt`` (or starts again when the
kill came before the first epoch ended) until the run completes. It checks that every
checkpoint left behind loads, that the resumed run completes its epochs and that no partial
file of an interrupted write is left after it; exit status 1 if any trial did not.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
TINY = [
    "callbacks.progress_bar=null",
    "callbacks.validation_images=null",
    "callbacks.model_summary=null",
    "logger=csv",
    "trainer.precision=32-true",
    "data.image_size=64",
    "data.train_repeats=2",
    "+trainer.limit_val_batches=1",
]


def run(args: list[str], kill_after: float | None) -> tuple[int, float]:
    """Run train.py; with ``kill_after``, SIGKILL its process group then. (rc, seconds)."""
    env = {**os.environ, "HINTCOLOR_ROOT": str(ROOT), "WANDB_MODE": "offline"}
    env.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
    start = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "src" / "train.py"), *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        rc = proc.wait(timeout=kill_after)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        rc = proc.wait()
    except BaseException:
        os.killpg(proc.pid, signal.SIGKILL)
        raise
    return rc, time.monotonic() - start


def step_of(path: Path) -> int | None:
    """The checkpoint's global step; raises if it does not load (the check)."""
    if not path.exists():
        return None
    return int(torch.load(path, map_location="cpu", weights_only=True)["global_step"])


def trial(out: Path, epochs: int, rng: random.Random, full_s: float) -> dict:
    ckpts = out / "checkpoints"
    last = ckpts / "last.ckpt"
    kill_at = rng.uniform(0.2, 1.0) * full_s
    base = [*TINY, f"trainer.max_epochs={epochs}", f"hydra.run.dir={out}"]
    rc, _ = run(base, kill_after=kill_at)
    killed_step = step_of(last)  # loads, or raises: a kill must never leave it unloadable
    # a kill in the middle of a write leaves the write's partial file (never the target);
    # the resumed run's first save must remove it
    killed_mid_write = len(list(ckpts.glob(".*.partial"))) if ckpts.exists() else 0
    resume = [*base, f"ckpt_path={last}"] if killed_step is not None else base
    rc_resumed, _ = run(resume, kill_after=None)
    return {
        "kill_s": kill_at,
        "killed": rc != 0,
        "step_at_kill": killed_step,
        "partial_after_kill": killed_mid_write,
        "partial_files": len(list(ckpts.glob(".*.partial"))),
        "resumed_rc": rc_resumed,
        "final_step": step_of(last),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        reference = Path(tmp) / "reference"
        rc, full_s = run(
            [*TINY, f"trainer.max_epochs={args.epochs}", f"hydra.run.dir={reference}"], None
        )
        expected = step_of(reference / "checkpoints" / "last.ckpt")
        if rc != 0 or expected is None:
            print(f"the uninterrupted run failed (exit {rc})")
            return 1
        print(
            f"uninterrupted run: {full_s:.1f} s, {expected} steps; "
            f"CPU capability {torch.backends.cpu.get_cpu_capability()}"
        )
        columns = ["trial", "kill at (s)", "killed", "last.ckpt step at kill"]
        columns += ["partial file after kill", "resumed exit", "final step", "partial files left"]
        print("| " + " | ".join(columns) + " |\n|" + " --- |" * len(columns))
        bad = 0
        for i in range(args.trials):
            r = trial(Path(tmp) / f"trial{i:02d}", args.epochs, rng, full_s)
            ok = r["resumed_rc"] == 0 and r["final_step"] == expected and not r["partial_files"]
            bad += not ok
            cells = [i, f"{r['kill_s']:.1f}", r["killed"], r["step_at_kill"]]
            cells += [r["partial_after_kill"], r["resumed_rc"], r["final_step"]]
            cells += [f"{r['partial_files']}{'' if ok else ' FAIL'}"]
            print("| " + " | ".join(str(c) for c in cells) + " |", flush=True)
    print(f"{args.trials - bad}/{args.trials} trials resumed and completed all {expected} steps")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
