"""An Optuna study driven through Hydra's launcher: ask a batch, launch it, tell the results."""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import optuna
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.plugins import Plugins
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf
from optuna.storages._heartbeat import BaseHeartbeat  # public API has no name for it
from optuna.trial import TrialState

from hintcolor.tuning import build_pruner, build_sampler

from .config import OptunaSweeperConf
from .locking import study_lock
from .results import write_results
from .search_space import Suggest, parse_search_space, trial_overrides

log = logging.getLogger(__name__)

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)


class OptunaSweeper(Sweeper):
    def __init__(self, **conf: Any) -> None:
        self.conf = OmegaConf.merge(OmegaConf.structured(OptunaSweeperConf), conf)
        self.params = OmegaConf.to_container(self.conf.params) or {}

    def setup(
        self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig
    ) -> None:
        self.hydra_context = hydra_context
        self.config = config
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config
        )

    # -- study ---------------------------------------------------------------------------
    def _storage(self) -> optuna.storages.BaseStorage | None:
        url = self.conf.storage
        if url is None:
            return None
        if url.startswith("sqlite:///"):
            Path(url[len("sqlite:///") :]).parent.mkdir(parents=True, exist_ok=True)
        return optuna.storages.RDBStorage(
            url,
            heartbeat_interval=self.conf.heartbeat_interval,
            grace_period=self.conf.grace_period,
        )

    def _sampler(self) -> optuna.samplers.BaseSampler:
        if self.conf.sampler.name == "grid" and "search_space" not in (
            self.conf.sampler.kwargs or {}
        ):
            return build_sampler(self.conf.sampler, search_space=_grid(self.params))
        return build_sampler(self.conf.sampler)

    # -- sweep ---------------------------------------------------------------------------
    def sweep(self, arguments: list[str]) -> optuna.study.Study:
        space, fixed = parse_search_space(self.params, arguments)

        # Under the lock: workers starting together would race to create the tables.
        with study_lock(self.conf.storage, self.conf.study_name):
            storage = self._storage()
            study = optuna.create_study(
                study_name=self.conf.study_name,
                storage=storage,
                sampler=self._sampler(),
                pruner=build_pruner(self.conf.pruner),
                direction=self.conf.direction,
                load_if_exists=True,
            )
        sweep_dir = Path(self.config.hydra.sweep.dir)
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
                    trials = [study.ask() for _ in range(min(self.conf.n_jobs, remaining))]
                    heartbeat = _Heartbeat(study, trials, self.conf.heartbeat_interval)
                    heartbeat.beat()  # at once: a trial that never beat is never found stale
            if remaining <= 0:
                if running == 0:
                    break
                # Trials of other workers, or of a killed run waiting for its heartbeat to
                # go stale: wait for them so that the study ends with no trial left RUNNING.
                time.sleep(self.conf.heartbeat_interval)
                continue
            with heartbeat:
                batch = [self._job_overrides(t, space, fixed) for t in trials]
                self.validate_batch_is_legal(batch)
                returns = self.launcher.launch(batch, initial_job_idx=trials[0].number)
            for trial, ret in zip(trials, returns, strict=True):
                self._tell(study, trial, ret, failures)
            if failures and len(failures) > self.conf.max_failure_rate * self.conf.n_trials:
                write_results(study, sweep_dir, space)
                cause = failures[-1]
                rate = self.conf.max_failure_rate
                message = f"{len(failures)} trial(s) failed (max_failure_rate={rate})"
                if isinstance(cause, BaseException):
                    raise RuntimeError(f"{message}; last error: {cause!r}") from cause
                raise RuntimeError(f"{message}; last: {cause}")
        write_results(study, sweep_dir, space)
        return study

    def _job_overrides(
        self, trial: optuna.trial.Trial, space: dict[str, Suggest], fixed: Sequence[str]
    ) -> list[str]:
        name = f"trial_{trial.number:03d}"
        trial_info = [
            f"+optuna.study_name={self.conf.study_name}",
            f"+optuna.trial_number={trial.number}",
            f"+optuna.trial_name={name}",  # names the trial's tracker run (W&B)
            f"hydra.sweep.subdir={name}",
        ]
        return [*fixed, *trial_overrides(trial, space), *trial_info]

    def _tell(
        self, study: optuna.study.Study, trial: optuna.trial.Trial, ret: Any, failures: list
    ) -> None:
        try:
            value = ret.return_value
        except optuna.TrialPruned:
            study.tell(trial, state=TrialState.PRUNED)
            log.info(f"trial {trial.number} pruned")
            return
        except Exception as exc:  # the job raised: this trial fails, the sweep goes on
            study.tell(trial, state=TrialState.FAIL)
            failures.append(exc)
            log.warning(f"trial {trial.number} failed: {exc!r}")
            return
        if value is None or not math.isfinite(float(value)):
            study.tell(trial, state=TrialState.FAIL)
            failures.append(f"trial {trial.number} returned {value}")
            log.warning(f"trial {trial.number} failed: objective {value}")
            return
        study.tell(trial, float(value))
        log.info(f"trial {trial.number}: {float(value):.4f} {trial.params}")


class _Heartbeat:
    """Beats for the trials this worker runs, so a killed worker's trials become FAIL.

    Optuna beats only inside ``study.optimize``; with ask/tell the sweeper must do it.
    """

    def __init__(self, study: optuna.study.Study, trials: list, interval: int) -> None:
        self.storage = study._storage
        self.trial_ids = [t._trial_id for t in trials]
        self.interval = interval
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def beat(self) -> None:
        if isinstance(self.storage, BaseHeartbeat):
            for trial_id in self.trial_ids:
                self.storage.record_heartbeat(trial_id)

    def _run(self) -> None:
        while not self.stop.wait(self.interval):
            self.beat()

    def __enter__(self) -> _Heartbeat:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join()


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
