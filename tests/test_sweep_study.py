"""The sweeper's study handling, run in-process on the real configs with a stand-in launcher.

The launcher is the only fake: configs are composed from conf/ as the CLI composes them, the
sweeper is instantiated and set up by Hydra, and the study lives in a real SQLite file. A job
"trains" in no time: it writes a checkpoint file and returns a value computed from its params.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import optuna
import pytest
from conftest import ROOT
from hydra.core.plugins import Plugins
from hydra.core.utils import JobReturn, JobStatus
from hydra.types import HydraContext
from optuna.trial import TrialState

from hintcolor.tuning import trial_seed
from hydra_plugins.hintcolor_optuna_sweeper import settings as settings_module
from hydra_plugins.hintcolor_optuna_sweeper import sweeper as sweeper_module
from hydra_plugins.hintcolor_optuna_sweeper.storage import configured_url

Objective = Callable[[dict[str, str]], Any]


@pytest.fixture(autouse=True)
def _no_summary(monkeypatch):
    """No best_params.yaml and plots after each sweep here (tests/test_sweep.py has them):
    the plots would take most of these tests' time."""
    # Hydra's plugin scan runs the plugin's modules once more (new classes and functions in
    # the same module objects): let it happen first, and look names up at call time.
    Plugins.instance()
    monkeypatch.setattr(sweeper_module, "write_results", lambda *args: None)
    # Hydra composes every job to check its overrides, ~1 s each here; the launcher composes
    # them again anyway (tests/test_sweep.py), so skip the check in these in-process runs.
    monkeypatch.setattr(sweeper_module.OptunaSweeper, "validate_batch_is_legal", lambda *a: None)


def _value(params: dict[str, str]) -> float:
    """A smooth made-up objective of the main study's parameters (any value would do)."""
    return -sum((float(v) - 0.1) ** 2 for k, v in params.items() if k in ("hints.p", "loss.l1"))


class FakeLauncher:
    """Runs each job at once: writes trial_NNN/checkpoints/last.ckpt and returns
    ``objective(overrides)`` (an exception instance: the job raised it)."""

    def __init__(self, sweep_dir: Path, objective: Objective) -> None:
        self.sweep_dir = sweep_dir
        self.objective = objective
        self.jobs: list[list[str]] = []

    def launch(self, job_overrides: list[list[str]], initial_job_idx: int) -> list[JobReturn]:
        returns = []
        for overrides in job_overrides:
            self.jobs.append(list(overrides))
            values = dict(o.lstrip("+").split("=", 1) for o in overrides)
            checkpoints = self.sweep_dir / values["hydra.sweep.subdir"] / "checkpoints"
            checkpoints.mkdir(parents=True, exist_ok=True)
            (checkpoints / "last.ckpt").write_bytes(b"weights")
            result = self.objective(values)
            ret = JobReturn()
            ret.status = (
                JobStatus.FAILED if isinstance(result, BaseException) else JobStatus.COMPLETED
            )
            ret.return_value = result
            returns.append(ret)
        return returns


@contextlib.contextmanager
def _sweeper(log_dir: Path, *overrides: str, objective: Objective = _value) -> Iterator[Any]:
    """The OptunaSweeper of ``train.py -m hparams_search=optuna overrides``, composed and set
    up as Hydra's multirun does it, with the stand-in launcher."""
    from hydra import initialize_config_dir
    from hydra._internal.callbacks import Callbacks
    from hydra.core.global_hydra import GlobalHydra
    from hydra.types import RunMode

    args = ["hparams_search=optuna", f"paths.log_dir={log_dir}", *overrides]
    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        hydra = GlobalHydra.instance().hydra
        cfg = hydra.compose_config("train", args, run_mode=RunMode.MULTIRUN)
        context = HydraContext(config_loader=hydra.config_loader, callbacks=Callbacks(cfg))
        sweeper = Plugins.instance().instantiate_sweeper(
            config=cfg, hydra_context=context, task_function=lambda _: None
        )
        sweeper.launcher = FakeLauncher(Path(cfg.hydra.sweep.dir), objective)
        yield sweeper


def _run(log_dir: Path, *overrides: str, objective: Objective = _value) -> optuna.study.Study:
    with _sweeper(log_dir, *overrides, objective=objective) as sweeper:
        return sweeper.sweep(list(sweeper.config.hydra.overrides.task))


def _params(study: optuna.study.Study) -> list[tuple]:
    return [tuple(sorted(t.params.items())) for t in study.trials]


# -- a resumed study goes on with new draws, the same on every fresh run ---------------------

# tpe with 5 start-up trials (conf/hparams_search/optuna.yaml): trials 0-4 are its random
# start-up draws, 5 a TPE one
SAMPLERS = {
    "tpe": [],
    "random": [
        "hydra.sweeper.sampler.name=random",
        "~hydra.sweeper.sampler.kwargs.n_startup_trials",
    ],
}


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_resumed_seeded_study_draws_new_params_reproducibly(tmp_path, sampler):
    def two_steps(log_dir: Path) -> optuna.study.Study:
        _run(log_dir, "hydra.sweeper.n_trials=3", *SAMPLERS[sampler])
        return _run(log_dir, "hydra.sweeper.n_trials=6", *SAMPLERS[sampler])

    resumed = _params(two_steps(tmp_path / "a"))
    assert len(resumed) == 6 and len(set(resumed)) == 6  # no parameter set drawn twice
    assert _params(two_steps(tmp_path / "b")) == resumed  # the same again on a fresh study
    # and the same as one uninterrupted run: resuming does not change the study
    assert _params(_run(tmp_path / "c", "hydra.sweeper.n_trials=6", *SAMPLERS[sampler])) == resumed


def test_trials_of_a_batch_draw_as_one_at_a_time(tmp_path):
    # n_jobs=2 (parallel jobs): each trial still draws with its own seed, so the study is
    # the one a sweep of one trial at a time makes
    one_by_one = _params(_run(tmp_path / "a", "hydra.sweeper.n_trials=4"))
    batches = _run(tmp_path / "b", "hydra.sweeper.n_trials=4", "hydra.sweeper.n_jobs=2")
    assert _params(batches) == one_by_one and len(set(one_by_one)) == 4


def test_trial_seeds_are_reproducible_and_distinct():
    seeds = [trial_seed(42, n) for n in range(100)]
    assert seeds == [trial_seed(42, n) for n in range(100)]
    assert len(set(seeds)) == 100 and trial_seed(43, 0) not in seeds


def test_resumed_grid_study_runs_every_combination_once(tmp_path):
    # grid keeps one seed for the whole study (it indexes its shuffled grid by trial number)
    def run(n: int) -> optuna.study.Study:
        return _run(tmp_path, "hparams_search=hint_density", f"hydra.sweeper.n_trials={n}")

    run(4)
    params = _params(run(10))
    assert len(params) == 10 and len(set(params)) == 10


# -- debug runs use their own study ---------------------------------------------------------


def _url(log_dir: Path, name: str = "hintcolor") -> str:
    """Where a study of these runs is stored (conf/hparams_search/base.yaml)."""
    return configured_url(name, [f"paths.log_dir={log_dir}"])


def test_debug_run_uses_its_own_study(tmp_path):
    url = _url(tmp_path, "hintcolor-debug")
    with _sweeper(tmp_path, "debug=fast", "hydra.sweeper.n_trials=2") as sweeper:
        assert sweeper.conf.study_name == "hintcolor-debug"
        assert sweeper.conf.storage == url
        sweeper.sweep(list(sweeper.config.hydra.overrides.task))
        # each job reaches the same study (pruning) and writes into its sweep dir
        job = sweeper.hydra_context.config_loader.load_sweep_config(
            sweeper.config, sweeper.launcher.jobs[0]
        )
    assert job.hydra.sweeper.storage == sweeper.conf.storage
    assert job.optuna.study_name == "hintcolor-debug"
    assert sorted(p.name for p in (tmp_path / "optuna").iterdir()) == [
        "hintcolor-debug",
        "hintcolor-debug.db",
        "hintcolor-debug.db.lock",
    ]
    assert (
        len(
            optuna.load_study(
                study_name="hintcolor-debug", storage=job.hydra.sweeper.storage
            ).trials
        )
        == 2
    )


@pytest.mark.parametrize(
    ("overrides", "name"),
    [
        (["debug=fast", "hydra.sweeper.study_name=smoke"], "smoke"),  # given: used as is
        (["hydra.sweeper.study_name=hintcolor", "debug=fast"], "hintcolor"),
        ([], "hintcolor"),  # not a debug run
    ],
)
def test_study_name_given_on_the_command_line_is_kept(tmp_path, overrides, name):
    url = _url(tmp_path, name)
    with _sweeper(tmp_path, *overrides) as sweeper:
        assert sweeper.conf.study_name == name
        assert sweeper.conf.storage == url
        assert sweeper.config.hydra.sweep.dir == f"{tmp_path}/optuna/{name}"


# -- a study keeps the settings it was started with ---------------------------------------


def test_study_refuses_a_run_with_other_settings(tmp_path):
    base = ["trainer.max_epochs=2", "hydra.sweeper.n_trials=2"]
    study = _run(tmp_path, *base)
    settings = study.user_attrs["settings"]
    assert settings["trainer.max_epochs"] == 2 and settings["model"] == "resunet"
    assert "optimizer.lr" not in settings and "hints.p" not in settings  # searched

    with pytest.raises(settings_module.SettingsMismatchError) as refused:
        _run(tmp_path, "trainer.max_epochs=3", "hydra.sweeper.n_trials=4")
    message = str(refused.value)
    assert "\n" not in message and "trainer.max_epochs: 2 -> 3" in message
    with pytest.raises(settings_module.SettingsMismatchError) as refused:
        _run(tmp_path, *base, "model=unet", "hydra.sweeper.n_trials=4")
    assert "model: resunet -> unet" in str(refused.value)
    assert "model._target_" not in str(refused.value)  # a changed group is named once
    assert len(_study_of(tmp_path).trials) == 2  # refused before asking any trial

    # the same settings (display and where runs write may differ): the study goes on
    study = _run(tmp_path, *base, "hydra.sweeper.n_trials=4", "callbacks.progress_bar=null")
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 4


def test_searching_a_setting_does_not_count_as_a_difference(tmp_path):
    # a setting fixed when the study started may join the search space later
    _run(tmp_path, "hydra.sweeper.n_trials=1", "trainer.max_epochs=2")
    study = _run(tmp_path, "hydra.sweeper.n_trials=2", "trainer.max_epochs=choice(2,3)")
    assert len(study.trials) == 2 and "trainer.max_epochs" in study.trials[1].params


def _study_of(log_dir: Path, name: str = "hintcolor") -> optuna.study.Study:
    return optuna.load_study(study_name=name, storage=_url(log_dir, name))


# -- checkpoints kept -------------------------------------------------------------------------


def _kept(log_dir: Path) -> list[int]:
    runs = sorted((log_dir / "optuna" / "hintcolor").glob("trial_*"))
    assert runs  # every trial keeps its run folder
    return [int(p.name[-3:]) for p in runs if (p / "checkpoints" / "last.ckpt").is_file()]


@pytest.mark.parametrize("keep", ["best", "none", "all"])
def test_keep_checkpoints(tmp_path, keep):
    # trial 1 is the best; trial 3 fails, trial 4 is pruned
    values = {0: 1.0, 1: 5.0, 2: 2.0, 3: RuntimeError("boom"), 4: optuna.TrialPruned()}
    study = _run(
        tmp_path,
        "hydra.sweeper.n_trials=5",
        f"hydra.sweeper.keep_checkpoints={keep}",
        "hydra.sweeper.max_failure_rate=0.5",
        objective=lambda job: values[int(job["optuna.trial_number"])],
    )
    assert study.best_trial.number == 1
    assert _kept(tmp_path) == {"best": [1], "none": [], "all": [0, 1, 2, 3, 4]}[keep]


def test_a_new_best_trial_frees_the_former_best(tmp_path):
    for n, value in enumerate([1.0, 3.0, 2.0, 4.0]):
        _run(tmp_path, f"hydra.sweeper.n_trials={n + 1}", objective=lambda _, v=value: v)
        assert _kept(tmp_path) == [[0], [1], [1], [3]][n]


def test_running_trials_keep_their_checkpoints(tmp_path):
    study = optuna.create_study(direction="maximize")
    study.add_trial(optuna.trial.create_trial(value=1.0))
    study.add_trial(optuna.trial.create_trial(value=2.0))
    study.ask()  # trial 2, still running (e.g. on another worker)
    for n in range(3):
        (tmp_path / f"trial_{n:03d}" / "checkpoints").mkdir(parents=True)
        (tmp_path / f"trial_{n:03d}" / "checkpoints" / "last.ckpt").write_bytes(b"w")
    sweeper_module.OptunaSweeper(keep_checkpoints="best")._drop_checkpoints(study, tmp_path)
    kept = sorted(p.parent.parent.name for p in tmp_path.glob("trial_*/checkpoints/last.ckpt"))
    assert kept == ["trial_001", "trial_002"]


def test_unknown_keep_checkpoints_is_refused():
    with pytest.raises(ValueError, match="keep_checkpoints"):
        sweeper_module.OptunaSweeper(keep_checkpoints="some")


# -- progress ---------------------------------------------------------------------------------


def test_progress_line_after_each_trial(tmp_path, caplog):
    values = {0: 1.5, 1: 3.25, 2: optuna.TrialPruned(), 3: RuntimeError("boom")}
    caplog.set_level(logging.INFO)
    _run(
        tmp_path,
        "hydra.sweeper.n_trials=4",
        "hydra.sweeper.max_failure_rate=0.5",
        objective=lambda job: values[int(job["optuna.trial_number"])],
    )
    lines = [r.getMessage() for r in caplog.records if "(best so far" in r.getMessage()]
    assert [line.split(":")[0] for line in lines] == [
        "trial_000 finished (1/4)",
        "trial_001 finished (2/4)",
        "trial_002 pruned (3/4)",
        "trial_003 failed (4/4)",
    ]
    assert lines[0].startswith("trial_000 finished (1/4): 1.5000 ")
    assert lines[0].endswith("(best so far 1.5000 in trial_000)")
    assert lines[3].endswith("(best so far 3.2500 in trial_001)") and "boom" in lines[3]
    # the sweep's own log file has them too, whatever Hydra does to the root logger
    log_file = (tmp_path / "optuna" / "hintcolor" / "sweep.log").read_text()
    assert all(line in log_file for line in lines)


# -- jobs lost by the launcher ----------------------------------------------------------------


class LosingLauncher(FakeLauncher):
    """Raises for its first batch, as submitit's launcher does when a job is killed (no result
    of the batch comes back), then runs jobs as FakeLauncher."""

    def launch(self, job_overrides: list[list[str]], initial_job_idx: int) -> list[JobReturn]:
        if initial_job_idx == 0:
            raise RuntimeError(
                "Job 4242 (task: 0) with path /x/4242_0_result.pkl\n"
                "has not produced any output (state: INTERRUPTED)\nError stream produced:\n..."
            )
        return super().launch(job_overrides, initial_job_idx)


def test_a_batch_lost_by_the_launcher_fails_and_the_sweep_goes_on(tmp_path, caplog):
    caplog.set_level(logging.INFO)
    with _sweeper(
        tmp_path,
        "hydra.sweeper.n_trials=4",
        "hydra.sweeper.n_jobs=2",
        "hydra.sweeper.max_failure_rate=0.5",
    ) as sweeper:
        sweeper.launcher = LosingLauncher(sweeper.launcher.sweep_dir, _value)
        study = sweeper.sweep(list(sweeper.config.hydra.overrides.task))
    states = [t.state for t in study.trials]
    assert states == [TrialState.FAIL] * 2 + [TrialState.COMPLETE] * 2  # never left RUNNING
    failed = [r.getMessage() for r in caplog.records if " failed (" in r.getMessage()]
    assert failed[0].startswith("trial_000 failed (1/4): RuntimeError('job lost: RuntimeError: ")
    # the job and what became of it, not its whole stderr
    assert "Job 4242" in failed[0] and "(state: INTERRUPTED)" in failed[0]
    assert "Error stream" not in failed[0]


def test_an_sqlite_study_with_slurm_jobs_is_warned_about(tmp_path, caplog):
    # jobs on other nodes cannot share an SQLite file safely; a server database is fine
    caplog.set_level(logging.WARNING)
    with _sweeper(tmp_path, "hydra/launcher=slurm"):
        pass
    assert "SQLite is for one machine" in caplog.text
    caplog.clear()
    with _sweeper(tmp_path, "hydra/launcher=slurm", "hydra.sweeper.storage=postgresql://u@h/db"):
        pass
    with _sweeper(tmp_path, "hydra/launcher=local"):
        pass
    assert "SQLite" not in caplog.text
