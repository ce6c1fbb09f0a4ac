"""Hydra's submitit launchers (``conf/hydra/launcher/local.yaml``, ``slurm.yaml``), with one
change: a requeued trial resumes from its last checkpoint instead of training from scratch.

submitit requeues a pre-empted job (and a timed-out one, up to ``max_num_timeout`` times) by
calling the launcher's ``checkpoint`` in the job, which resubmits the same call. Here the
resubmitted call also gets ``ckpt_path=<trial dir>/checkpoints/last.ckpt`` when the trial has
one (conf/callbacks/default.yaml writes it after every epoch): the trial goes on from its last
epoch, under the same trial number, while the sweeper keeps its heartbeat.

The plugin's own ``hydra/launcher=submitit_local`` and ``submitit_slurm`` work as well; a
requeued trial then starts again from its first epoch.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig

try:
    from hydra_plugins.hydra_submitit_launcher.submitit_launcher import (
        LocalLauncher,
        SlurmLauncher,
    )
except ImportError:  # the `scale` extra is not installed (`make train` does not need it)
    LocalLauncher = SlurmLauncher = None

RESUME_KEY = "ckpt_path"


def resume_overrides(overrides: Sequence[str], last_checkpoint: Path) -> list[str]:
    """A trial job's overrides, resuming from ``last_checkpoint`` when it exists."""
    if not last_checkpoint.is_file():
        return list(overrides)
    kept = [o for o in overrides if o.lstrip("+").split("=", 1)[0] != RESUME_KEY]
    return [*kept, f"{RESUME_KEY}='{last_checkpoint}'"]


def _last_checkpoint() -> Path:
    """This job's ``last.ckpt`` (conf/callbacks/default.yaml: ``last_checkpoint``)."""
    return Path(HydraConfig.get().runtime.output_dir) / "checkpoints" / "last.ckpt"


class _ResumeFromLastCheckpoint:
    """Mixed into a submitit launcher: its requeued calls resume from ``last.ckpt``."""

    def checkpoint(self, sweep_overrides: Sequence[str], *args: Any, **kwargs: Any) -> Any:
        overrides = resume_overrides(sweep_overrides, _last_checkpoint())
        return super().checkpoint(overrides, *args, **kwargs)  # type: ignore[misc]


# Defined only with the plugin installed: Hydra imports every module of hydra_plugins at start,
# and a failed import would print a warning on every command of a user without the extra
# (hydra/launcher=local|slurm then fail to compose, naming submitit_local/submitit_slurm).
if LocalLauncher is not None and SlurmLauncher is not None:

    class ResumingLocalLauncher(_ResumeFromLastCheckpoint, LocalLauncher):
        """``submitit_local``; a requeued trial resumes from its ``last.ckpt``."""

    class ResumingSlurmLauncher(_ResumeFromLastCheckpoint, SlurmLauncher):
        """``submitit_slurm``; a requeued (pre-empted) trial resumes from its ``last.ckpt``."""
