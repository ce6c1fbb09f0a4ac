"""Experiment tracking: a W&B logger that never costs a run, run metadata, finishing runs.

Tracking is a convenience, training is the product: W&B missing, unreachable or failing at
start-up gives a warning and the run goes on with its other loggers (always a CSV copy).
"""

from __future__ import annotations

import logging
import netrc
import os
import platform
import subprocess
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import lightning as L
import optuna
import torch
from lightning.pytorch.loggers import Logger
from lightning.pytorch.utilities.exceptions import SIGTERMException
from torch import nn

log = logging.getLogger(__name__)


def has_wandb_credentials() -> bool:
    """An API key in the environment or in ~/.netrc (where ``wandb login`` writes it)."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    host = urlparse(os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai")).hostname
    try:
        return netrc.netrc().authenticators(host or "") is not None
    except (OSError, netrc.NetrcParseError):
        return False


def resolve_wandb_mode(mode: str) -> str | None:
    """``auto``: WANDB_MODE if set, else online with credentials and offline without.

    Offline without credentials means no login prompt, no hang and no network attempt.
    None leaves the choice to W&B (it reads WANDB_MODE itself).
    """
    if mode != "auto":
        return mode
    if os.environ.get("WANDB_MODE"):
        return None
    return "online" if has_wandb_credentials() else "offline"


def wandb_logger(*, mode: str = "auto", init_timeout: float = 60, **kwargs: Any) -> Logger | None:
    """A started ``WandbLogger``, or None (with a warning) when W&B cannot run.

    The run is started here, not at the first metric, so that a failure surfaces before
    training rather than in the middle of it. An online start that fails (server unreachable)
    is retried offline, so the run can still be uploaded later with ``wandb sync``.
    """
    try:
        import wandb
        from lightning.pytorch.loggers import WandbLogger
    except ImportError as exc:
        log.warning(f"W&B is not available ({exc}); logging locally only")
        return None
    resolved = resolve_wandb_mode(mode)
    attempts = [resolved, "offline"] if resolved in ("online", None) else [resolved]
    for attempt in attempts:
        try:
            settings = wandb.Settings(init_timeout=init_timeout)
            logger = WandbLogger(mode=attempt, settings=settings, **kwargs)
            _ = logger.experiment  # start the run now
            return logger
        except Exception as exc:  # any tracking failure must not stop training
            log.warning(f"W&B failed to start in mode {attempt or 'from WANDB_MODE'}: {exc}")
            _finish_quietly(wandb)
    log.warning("continuing without W&B; metrics are still written locally (CSV)")
    return None


def _finish_quietly(wandb: Any) -> None:
    try:
        if wandb.run is not None:
            wandb.finish(exit_code=1)
    except Exception:  # best effort: the run is being abandoned anyway
        pass


def code_version(root: str | os.PathLike[str]) -> dict[str, Any]:
    """The git commit of the code that ran, and whether it had uncommitted changes."""

    def git(*args: str) -> str:
        out = subprocess.run(
            ["git", "-C", str(root), *args], capture_output=True, text=True, timeout=10
        )
        return out.stdout.strip() if out.returncode == 0 else ""

    try:
        commit = git("rev-parse", "HEAD")
        dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
    except (OSError, subprocess.SubprocessError):
        commit, dirty = "", False
    return {"commit": commit or "unknown", "dirty": dirty}


def run_metadata(backbone: nn.Module, trainer: L.Trainer, root: str | Path) -> dict[str, Any]:
    """What a comparison needs beyond the config: code version, model size, machine."""
    params = sum(p.numel() for p in backbone.parameters())
    trainable = sum(p.numel() for p in backbone.parameters() if p.requires_grad)
    cuda = torch.cuda.is_available()
    return {
        "code": code_version(root),
        "model_size": {"params": params, "trainable_params": trainable},
        "system": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "lightning": L.__version__,
            "cpu_count": os.cpu_count(),
            "accelerator": torch.cuda.get_device_name(0) if cuda else platform.processor() or "cpu",
            "devices": trainer.num_devices,
            "precision": str(trainer.precision),
        },
    }


def finish_runs(loggers: Sequence[Logger], state: str) -> None:
    """Close this job's W&B runs with their final state (complete / time_limit / pruned /
    interrupted / failed).

    Needed after every job: in a sweep all trials share one process, and a run left open
    would swallow the next trial's metrics.
    """
    for logger in loggers:
        run = getattr(logger, "_experiment", None)  # only runs this job actually started
        if run is None or not hasattr(run, "finish"):
            continue
        try:
            run.summary["final_state"] = state
            run.finish(exit_code=1 if state in ("failed", "interrupted") else 0)
        except Exception as exc:  # closing a tracker must not mask the result
            log.warning(f"W&B run did not finish cleanly: {exc}")


@contextmanager
def tracked_runs(loggers: Sequence[Logger]) -> Iterator[dict[str, str]]:
    """Finish the loggers' runs however the job ends: complete, pruned, interrupted or failed.

    Yields a dict whose ``"state"`` the job may set for a normal end (``time_limit`` when the
    run stopped at its time budget), so the tracker's ``final_state`` says how it ended.
    """
    outcome = {"state": "complete"}
    try:
        yield outcome
    except optuna.TrialPruned:
        finish_runs(loggers, "pruned")
        raise
    except (KeyboardInterrupt, SIGTERMException):
        finish_runs(loggers, "interrupted")
        raise
    except BaseException:
        finish_runs(loggers, "failed")
        raise
    finish_runs(loggers, outcome["state"])
