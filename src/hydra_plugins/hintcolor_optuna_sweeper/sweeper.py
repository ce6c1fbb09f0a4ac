"""An Optuna study driven through Hydra's launcher: ask a batch, launch it, tell the results."""

from __future__ import annotations

import contextlib
import logging
import math
import shutil
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import optuna
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.plugins import Plugins
from hydra.core.utils import JobReturn, JobStatus
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf, read_write
from optuna.trial import TrialState

from hintcolor.tuning import build_pruner, build_sampler, seeded_per_trial

from .config import OptunaSweeperConf
from .results import write_results
from .search_space import Suggest, parse_search_space, trial_overrides
from .settings import check_settings, job_settings
from .storage import Heartbeat, database_file, open_storage, open_study, study_lock

log = logging.getLogger(__name__)

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
KEEP_CHECKPOINTS = ("best", "none", "all")


class OptunaSweeper(Sweeper):
    def __init__(self, **conf: Any) -> None:
        self._configure(conf)

    def _configure(self, conf: Mapping[str, Any]) -> None:
        self.conf = OmegaConf.merge(OmegaConf.structured(OptunaSweeperConf), conf)
        self.params = OmegaConf.to_container(self.conf.params) or {}
        if self.conf.keep_checkpoints not in KEEP_CHECKPOINTS:
            raise ValueError(
                f"hydra.sweeper.keep_checkpoints: {self.conf.keep_checkpoints!r} is not one "
                f"of {list(KEEP_CHECKPOINTS)}"
            )

    def setup(
        self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig
    ) -> None:
        self.hydra_context = hydra_context
        self.config = config
        self._rename_study(study_name(config))
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config
        )
        self._warn_if_sqlite_on_a_cluster()

    def _warn_if_sqlite_on_a_cluster(self) -> None:
        """SLURM jobs run on other machines: an SQLite file, and the lock beside it, are not
        safe to share between machines (network file systems lock unreliably, if at all)."""
        launcher = str(self.config.hydra.launcher.get("_target_", ""))
        url = self.conf.storage
        if launcher.endswith("SlurmLauncher") and url and database_file(url) is not None:
            log.warning(
                f"hydra.sweeper.storage={url}: SQLite is for one machine; SLURM jobs on other "
                "nodes need a database server: hydra.sweeper.storage=postgresql://... "
                "(sweeps/README.md)"
            )

    def _rename_study(self, name: str) -> None:
        if name == self.conf.study_name:
            return
        # The storage URL and the sweep dir interpolate the name: set it where they read it
        # (the launcher shares this config), then read the sweeper's settings again.
        with read_write(self.config.hydra):
            self.config.hydra.sweeper.study_name = name
        self._configure(OmegaConf.to_container(self.config.hydra.sweeper, resolve=True))
        log.info(f"debug run: study {name!r}, apart from the real one")

    # -- study ---------------------------------------------------------------------------
    def _sampler(self, trial_number: int | None = None) -> optuna.samplers.BaseSampler:
        if self.conf.sampler.name == "grid" and "search_space" not in (
            self.conf.sampler.kwargs or {}
        ):
            return build_sampler(self.conf.sampler, search_space=_grid(self.params))
        return build_sampler(self.conf.sampler, trial_number)

    def _ask(
        self, study: optuna.study.Study, space: dict[str, Suggest], fixed: Sequence[str]
    ) -> tuple[optuna.trial.Trial, list[str]]:
        """A new trial and its job's overrides, drawn by a sampler seeded for its number
        when the sampler's seed would otherwise replay earlier draws on resume
        (``tuning.SEEDED_PER_TRIAL``). Drawn at once, before the next ask: a trial draws
        with ``study.sampler`` as it is then, so each trial of a batch (``n_jobs``) gets its
        own seed, and the same parameters as one at a time."""
        if seeded_per_trial(self.conf.sampler):
            # under the study lock: the next trial's number is the number of trials so far
            study.sampler = self._sampler(trial_number=len(study.get_trials(deepcopy=False)))
        trial = study.ask()
        return trial, self._job_overrides(trial, space, fixed)

    def _settings(self, space: Mapping[str, Suggest], fixed: Sequence[str]) -> dict[str, Any]:
        """The settings of this run's trial jobs: their config, composed as the launcher
        composes it, less the searched parameters."""
        job = self.hydra_context.config_loader.load_sweep_config(self.config, list(fixed))
        return job_settings(job, searched=space)

    # -- sweep ---------------------------------------------------------------------------
    def sweep(self, arguments: list[str]) -> optuna.study.Study:
        space, fixed = parse_search_space(self.params, arguments)
        sweep_dir = Path(self.config.hydra.sweep.dir)
        with _log_to(sweep_dir / "sweep.log"):
            return self._sweep(space, fixed, sweep_dir)

    def _sweep(
        self, space: dict[str, Suggest], fixed: list[str], sweep_dir: Path
    ) -> optuna.study.Study:
        settings = self._settings(space, fixed)
        # Under the lock: workers starting together would race to create the tables, and
        # to record the study's settings.
        with study_lock(self.conf.storage, self.conf.study_name):
            storage = open_storage(
                self.conf.storage, self.conf.heartbeat_interval, self.conf.grace_period
            )
            study = open_study(
                storage,
                self.conf.study_name,
                direction=self.conf.direction,
                sampler=self._sampler(),
                pruner=build_pruner(self.conf.pruner),
            )
            check_settings(study, settings, self.conf.ignore_settings, searched=space)
        log.info(
            f"study {study.study_name!r} ({self.conf.storage or 'in memory'}): "
            f"{_count(study, FINISHED)}/{self.conf.n_trials} trials finished so far"
        )
        failures: list[BaseException | str] = []
        while True:
            with study_lock(self.conf.storage, self.conf.study_name):
                if storage is not None:
                    optuna.storages.fail_stale_trials(study)
                finished = _count(study, FINISHED)
                running = _count(study, (TrialState.RUNNING, TrialState.WAITING))
                remaining = self.conf.n_trials - finished - running
                if remaining > 0:
                    n = min(self.conf.n_jobs, remaining)
                    asked = [self._ask(study, space, fixed) for _ in range(n)]
                    trials, batch = [t for t, _ in asked], [o for _, o in asked]
                    numbers = [t.number for t in trials]
                    heartbeat = Heartbeat(
                        storage, study.study_name, numbers, self.conf.heartbeat_interval
                    )
                    heartbeat.beat()  # at once, under the lock: see Heartbeat.beat
            if remaining <= 0:
                if running == 0:
                    break
                # Trials of other workers, or of a killed run waiting for its heartbeat to
                # go stale: wait for them so that the study ends with no trial left RUNNING.
                time.sleep(self.conf.heartbeat_interval)
                continue
            with heartbeat:
                self.validate_batch_is_legal(batch)
                returns = self._launch(batch, trials[0].number)
            for trial, ret in zip(trials, returns, strict=True):
                self._tell(study, trial, ret, failures)
                self._drop_checkpoints(study, sweep_dir)
            self._stop_if_failing(study, failures, sweep_dir, space)
        write_results(study, sweep_dir, space)
        return study

    def _launch(self, batch: list[list[str]], first: int) -> list[JobReturn]:
        """Run a batch of trial jobs; one result per job, a failed one when the launcher
        itself raised. A trial's own error (a time-out included) comes back in its result;
        the launcher raises when a job ended without one (submitit: killed, out of memory,
        cancelled, its node lost), and then no result of the batch reaches us. Those trials
        become FAIL at once: left RUNNING, they would hold the study until their heartbeats
        went stale."""
        try:
            return list(self.launcher.launch(batch, initial_job_idx=first))
        except Exception as exc:
            log.error(f"trials {first}..{first + len(batch) - 1}: no result came back: {exc!r}")
            # its first lines name the job and what became of it; the rest is its stderr
            lost = RuntimeError(
                f"job lost: {type(exc).__name__}: " + " ".join(str(exc).split("\n")[:2])
            )
            lost.__cause__ = exc
            return [_failed_job(overrides, lost) for overrides in batch]

    def _stop_if_failing(
        self,
        study: optuna.study.Study,
        failures: list[BaseException | str],
        sweep_dir: Path,
        space: dict[str, Suggest],
    ) -> None:
        """Past ``max_failure_rate`` of the trials failed: the results so far, then an error
        naming the last failure."""
        if not failures or len(failures) <= self.conf.max_failure_rate * self.conf.n_trials:
            return
        write_results(study, sweep_dir, space)
        cause = failures[-1]
        message = f"{len(failures)} trial(s) failed (max_failure_rate={self.conf.max_failure_rate})"
        log.error(f"sweep stopped: {message}")
        if isinstance(cause, BaseException):
            raise RuntimeError(f"{message}; last error: {cause!r}") from cause
        raise RuntimeError(f"{message}; last: {cause}")

    def _job_overrides(
        self, trial: optuna.trial.Trial, space: dict[str, Suggest], fixed: Sequence[str]
    ) -> list[str]:
        name = _trial_dir(trial.number)
        trial_info = [
            f"+optuna.study_name={self.conf.study_name}",
            f"+optuna.trial_number={trial.number}",
            f"+optuna.trial_name={name}",  # names the trial's tracker run (W&B)
            f"hydra.sweep.subdir={name}",
            # the job reaches the study (pruning) through its own copy of these settings
            f"hydra.sweeper.study_name={self.conf.study_name}",
        ]
        return [*fixed, *trial_overrides(trial, space), *trial_info]

    def _tell(
        self, study: optuna.study.Study, trial: optuna.trial.Trial, ret: Any, failures: list
    ) -> None:
        try:
            value = ret.return_value
        except optuna.TrialPruned:
            step = study.tell(trial, state=TrialState.PRUNED).last_step
            detail = "" if step is None else f"at step {step}"
            log.info(self._progress(study, trial, "pruned", detail))
            return
        except Exception as exc:  # the job raised: this trial fails, the sweep goes on
            study.tell(trial, state=TrialState.FAIL)
            failures.append(exc)
            log.warning(self._progress(study, trial, "failed", repr(exc)))
            return
        if value is None or not math.isfinite(float(value)):
            study.tell(trial, state=TrialState.FAIL)
            failures.append(f"trial {trial.number} returned {value}")
            log.warning(self._progress(study, trial, "failed", f"objective {value}"))
            return
        study.tell(trial, float(value))
        log.info(self._progress(study, trial, "finished", f"{float(value):.4f} {trial.params}"))

    def _progress(
        self, study: optuna.study.Study, trial: optuna.trial.Trial, state: str, detail: str
    ) -> str:
        """``trial_002 finished (3/20): 19.7123 {...} (best so far 19.8000 in trial_001)``:
        the trial, how many of the study's trials have finished, and the best so far."""
        done = _count(study, FINISHED)
        if _count(study, (TrialState.COMPLETE,)):
            best = study.best_trial
            so_far = f"best so far {best.value:.4f} in {_trial_dir(best.number)}"
        else:
            so_far = "no trial completed yet"
        return (
            f"{_trial_dir(trial.number)} {state} ({done}/{self.conf.n_trials}): {detail} ({so_far})"
        )

    def _drop_checkpoints(self, study: optuna.study.Study, sweep_dir: Path) -> None:
        """Delete the checkpoints of finished trials that ``keep_checkpoints`` does not keep
        (best: all but the best trial's; none: all). Running trials, of this worker or of
        others, are never touched: their checkpoints are still being written."""
        if self.conf.keep_checkpoints == "all":
            return
        keep = set()
        if self.conf.keep_checkpoints == "best" and _count(study, (TrialState.COMPLETE,)):
            keep.add(study.best_trial.number)
        for t in study.get_trials(deepcopy=False, states=FINISHED):
            if t.number not in keep:
                shutil.rmtree(sweep_dir / _trial_dir(t.number) / "checkpoints", ignore_errors=True)


def study_name(config: DictConfig) -> str:
    """The study a run works on: ``hydra.sweeper.study_name``, with ``-debug`` added for
    ``debug=...`` runs so that a smoke test never adds its few-batch trials to the real
    study (nor its folders to the real sweep dir), unless the name is given on the
    command line."""
    name = config.hydra.sweeper.study_name
    overrides = OverridesParser.create().parse_overrides(list(config.hydra.overrides.hydra))
    if any(o.key_or_group == "hydra.sweeper.study_name" for o in overrides):
        return name
    if config.hydra.runtime.choices.get("debug") is None:
        return name
    return f"{name}-debug"


def _trial_dir(number: int) -> str:
    """A trial's run folder in the sweep dir (``hydra.sweep.subdir``)."""
    return f"trial_{number:03d}"


@contextlib.contextmanager
def _log_to(path: Path) -> Iterator[None]:
    """Also write this plugin's log lines to ``path``: Hydra points the root logger at each
    trial's log file in turn, so the sweep's progress needs a file of its own."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("[%(asctime)s][%(levelname)s] %(message)s"))
    plugin = logging.getLogger(__package__)
    plugin.addHandler(handler)
    try:
        yield
    finally:
        plugin.removeHandler(handler)
        handler.close()


def _failed_job(overrides: Sequence[str], error: BaseException) -> JobReturn:
    """The result of a job that the launcher could not bring back: it raises ``error``."""
    ret = JobReturn(overrides=list(overrides), status=JobStatus.FAILED)
    ret.return_value = error
    return ret


def _count(study: optuna.study.Study, states: Sequence[TrialState]) -> int:
    return len(study.get_trials(deepcopy=False, states=tuple(states)))


def _grid(params: dict[str, Any]) -> dict[str, list]:
    """The grid sampler's search space: every ``choice``/``range`` expanded."""
    grid = {}
    for override in OverridesParser.create().parse_overrides(
        [f"{k}={v}" for k, v in params.items()]
    ):
        if override.is_sweep_override():
            grid[override.get_key_element()] = list(override.sweep_iterator())
    return grid
