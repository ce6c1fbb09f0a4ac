"""Where studies live (the sweeper plugin's storage module): URLs, the study lock, opening a
study and a trial by number, heartbeats; real SQLite files (PostgreSQL: tests/test_sweep.py)."""

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from hydra_plugins.hintcolor_optuna_sweeper.storage import (
    Heartbeat,
    configured_url,
    database_file,
    load_trial,
    open_storage,
    open_study,
    study_lock,
)


def test_database_file_of_each_url():
    assert database_file("sqlite:///logs/optuna/a.db") == Path("logs/optuna/a.db")
    assert database_file("sqlite:////abs/a.db") == Path("/abs/a.db")
    assert database_file("postgresql+psycopg2://u:p@host:5432/optuna") is None
    for url in ("mysql://u@host/db", "sqlite://", "sqlite:///:memory:"):
        with pytest.raises(ValueError, match="unsupported database"):
            database_file(url)


def test_configured_url_is_the_one_conf_composes(tmp_path):
    assert configured_url("demo", [f"paths.log_dir={tmp_path}"]) == (
        f"sqlite:///{tmp_path}/optuna/demo.db"
    )
    # every study shares base.yaml's storage; the default log dir is the repository's
    assert configured_url("hintcolor", ["hparams_search=optuna"]) == (
        f"sqlite:///{os.environ['HINTCOLOR_ROOT']}/logs/optuna/hintcolor.db"
    )
    assert configured_url("demo", ["hydra.sweeper.storage=null"]) is None


def test_storage_command_prints_the_url(tmp_path):
    """What `make dashboard` runs to find a study."""
    proc = subprocess.run(
        [sys.executable, "-m", "hydra_plugins.hintcolor_optuna_sweeper.storage", "demo"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == f"sqlite:///{os.environ['HINTCOLOR_ROOT']}/logs/optuna/demo.db"


def test_sqlite_lock_excludes_other_holders(tmp_path):
    url = f"sqlite:///{tmp_path}/new/study.db"
    order = []

    def second() -> None:
        with study_lock(url, "study"):
            order.append("second")

    with study_lock(url, "study"):
        thread = threading.Thread(target=second)
        thread.start()
        time.sleep(0.3)  # the second holder waits for the first
        order.append("first")
    thread.join(timeout=10)
    assert order == ["first", "second"]
    assert (tmp_path / "new" / "study.db.lock").is_file()  # beside the database
    with study_lock(None, "study"):  # in memory: nothing to share, nothing to lock
        pass


def _study(url: str, name: str = "study") -> tuple[optuna.storages.RDBStorage, optuna.Study]:
    storage = open_storage(url, heartbeat_interval=1, grace_period=1)
    study = open_study(
        storage,
        name,
        direction="maximize",
        sampler=optuna.samplers.RandomSampler(seed=0),
        pruner=optuna.pruners.NopPruner(),
    )
    return storage, study


def test_open_study_creates_then_loads(tmp_path):
    url = f"sqlite:///{tmp_path}/deep/folder/s.db"
    _, study = _study(url)
    study.tell(study.ask(), 1.0)
    _, again = _study(url)  # another run of the same study
    assert [t.value for t in again.trials] == [1.0]
    assert open_storage(None) is None  # in memory


def test_load_trial_reaches_a_running_trial_by_number(tmp_path):
    url = f"sqlite:///{tmp_path}/s.db"
    _, study = _study(url)
    for _ in range(2):
        study.ask()
    trial = load_trial(url, "study", 1, optuna.pruners.NopPruner())
    trial.report(0.5, step=3)  # what a training job does each epoch
    assert trial.number == 1 and not trial.should_prune()
    assert study.trials[1].intermediate_values == {3: 0.5}
    assert study.trials[0].intermediate_values == {}


def test_a_trial_that_stops_beating_becomes_stale(tmp_path):
    storage, study = _study(f"sqlite:///{tmp_path}/s.db")
    beating, silent = study.ask(), study.ask()
    Heartbeat(storage, "study", [silent.number], interval=1).beat()  # beats once, then dies
    with Heartbeat(storage, "study", [beating.number], interval=1) as heartbeat:
        heartbeat.beat()
        time.sleep(2.5)  # past the grace period of the silent one
        optuna.storages.fail_stale_trials(study)
    states = [t.state for t in study.trials]
    assert states == [TrialState.RUNNING, TrialState.FAIL]


def test_heartbeat_of_a_study_in_memory_is_a_no_op():
    with Heartbeat(None, "study", [0], interval=1) as heartbeat:
        heartbeat.beat()
    assert heartbeat.ids == []
