"""Sweeps whose trials run as separate jobs: Hydra's submitit launchers under our Optuna sweeper
(conf/hydra/launcher/local.yaml and slurm.yaml, or the plugin's submitit_local/submitit_slurm).

Real subprocess jobs (submitit's local executor), real SQLite files, the PostgreSQL test
server; a killed job and a pre-empted one are real signals sent to the job's process."""

from __future__ import annotations

import math
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import optuna
import pytest
from conftest import ROOT
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import OmegaConf
from optuna.trial import TrialState

from hydra_plugins.hintcolor_optuna_sweeper.launchers import resume_overrides
from hydra_plugins.hintcolor_optuna_sweeper.storage import configured_url

STUDY = "hintcolor-debug"  # debug=fast sweeps use a study of their own
SWEEP = [
    "-m",
    "hparams_search=optuna",
    "debug=fast",
    "logger=none",
    "callbacks.progress_bar=null",
    "callbacks.model_summary=null",
    "callbacks.validation_images=null",
    "data.image_size=64",
    # one epoch: one report to the study (the median pruner's warm-up: never pruned)
    "trainer.max_epochs=1",
    "hydra.sweeper.heartbeat_interval=1",
    "hydra.sweeper.grace_period=10",
]


# -- fast: the launcher configs compose with the sweeper ------------------------------------


@pytest.mark.parametrize(
    ("launcher", "target"),
    [
        ("local", "launchers.ResumingLocalLauncher"),
        ("slurm", "launchers.ResumingSlurmLauncher"),
        ("submitit_slurm", "submitit_launcher.SlurmLauncher"),  # the plugin's, as documented
    ],
)
def test_launcher_configs_compose_with_the_sweeper(tmp_path, launcher, target):
    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        cfg = compose(
            "train",
            ["hparams_search=optuna", f"hydra/launcher={launcher}", f"paths.log_dir={tmp_path}"],
            return_hydra_config=True,
        )
    conf = OmegaConf.to_container(cfg.hydra.launcher, resolve=True)
    assert conf["_target_"].endswith(target)
    # job logs beside the study's trial folders
    assert conf["submitit_folder"] == f"{tmp_path}/optuna/hintcolor/.submitit/%j"
    if launcher != "submitit_slurm":
        assert conf["name"] == "hintcolor" and conf["timeout_min"] >= 240
    if launcher == "slurm":
        assert conf["gpus_per_node"] == 1 and conf["partition"] is None
    # what the sweeper does with it (no job is submitted: that needs a cluster)
    assert type(instantiate(conf)).__name__ == target.split(".")[-1]


# Run in a fresh interpreter where the submitit plugin cannot be imported, as for a user who
# installed without the `scale` extra: Hydra's plugin scan imports our launchers module too.
WITHOUT_SUBMITIT = """
import importlib.abc, sys, warnings

class NoSubmitit(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.startswith(("hydra_plugins.hydra_submitit_launcher", "submitit")):
            raise ImportError(f"no module named {name!r}")

sys.meta_path.insert(0, NoSubmitit())
import pkgutil
walk = pkgutil.walk_packages  # Hydra's scan walks the installed plugins: leave it out there too
pkgutil.walk_packages = lambda *a, **k: (m for m in walk(*a, **k) if "submitit" not in m.name)
from hydra.core.plugins import Plugins
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    Plugins.instance()
print("\\n".join(str(w.message) for w in caught))
print("scanned:", *sorted(Plugins.instance().stats.modules_import_time))
"""


def test_without_the_scale_extra_hydra_starts_without_a_warning_from_our_plugin():
    proc = subprocess.run(
        [sys.executable, "-c", WITHOUT_SUBMITIT], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    warnings, scanned = proc.stdout.split("scanned:")
    assert "hydra_plugins.hintcolor_optuna_sweeper.launchers" in scanned.split()
    assert "submitit" not in scanned  # the simulation holds: no submitit plugin to import
    assert "hintcolor_optuna_sweeper" not in warnings + proc.stderr


def test_a_requeued_trial_resumes_only_from_an_existing_checkpoint(tmp_path):
    last = tmp_path / "last.ckpt"
    overrides = ["optimizer.lr=0.01", "+optuna.trial_number=3"]
    assert resume_overrides(overrides, last) == overrides  # no epoch finished: from scratch
    last.write_bytes(b"weights")
    resumed = resume_overrides([*overrides, "ckpt_path='/old/last.ckpt'"], last)
    assert resumed == [*overrides, f"ckpt_path='{last}'"]


# -- slow: real sweeps, trials as subprocess jobs --------------------------------------------


def _sweep(tmp_path: Path, *args: str) -> subprocess.Popen:
    """``python src/train.py -m ... args`` started; ``_finish`` waits for it."""
    cmd = [sys.executable, str(ROOT / "src" / "train.py"), *SWEEP, f"paths.log_dir={tmp_path}"]
    env = {**os.environ, "HINTCOLOR_ROOT": str(ROOT)}
    with open(tmp_path / "sweep.out", "w") as out:  # a file: a full pipe would stall the sweep
        return subprocess.Popen(
            [*cmd, *args], cwd=tmp_path, env=env, stdout=out, stderr=subprocess.STDOUT
        )


def _finish(sweep: subprocess.Popen, tmp_path: Path) -> str:
    """Wait for the sweep; the end of its output."""
    sweep.wait(timeout=900)
    return (tmp_path / "sweep.out").read_text()[-4000:]


def _job_window(log: Path) -> tuple[datetime, datetime]:
    """When a submitit job started and ended, from its own log's timestamps."""
    stamps = re.findall(r"submitit INFO \((\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+)\)", log.read_text())
    parsed = [datetime.strptime(s, "%Y-%m-%d %H:%M:%S,%f") for s in stamps]
    return min(parsed), max(parsed)


def _check_finished_study(storage: str, out: Path) -> None:
    study = optuna.load_study(study_name=STUDY, storage=storage)
    trials = study.trials
    assert [t.number for t in trials] == [0, 1, 2, 3]  # exactly n_trials
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 4
    assert all(math.isfinite(t.value) and t.value > 0 for t in trials)  # PSNR in dB
    # each job reported its epochs to the study from its own process (what pruning reads)
    assert all(list(t.intermediate_values) == [0] for t in trials)
    # each trial ran as its own submitit job, with its logs under <sweep dir>/.submitit/
    jobs = [t.user_attrs["job_id"] for t in trials]
    assert len(set(jobs)) == 4 and str(os.getpid()) not in jobs
    logs = [out / ".submitit" / j / f"{j}_0_log.out" for j in jobs]
    assert all("Job completed successfully" in log.read_text() for log in logs)
    for n in range(4):  # and wrote into its trial folder, as the in-process sweeps do
        overrides = (out / f"trial_{n:03d}" / ".hydra" / "overrides.yaml").read_text()
        assert f"+optuna.trial_number={n}" in overrides
    # n_jobs=2: trials 0 and 1 ran at the same time, then 2 and 3
    for a, b in ((0, 1), (2, 3)):
        (start_a, end_a), (start_b, end_b) = _job_window(logs[a]), _job_window(logs[b])
        assert start_a < end_b and start_b < end_a
    assert _job_window(logs[1])[1] <= _job_window(logs[2])[0]


@pytest.mark.slow
def test_submitit_local_sweep_on_sqlite(tmp_path):
    started = time.time()
    # the plugin's own config, as its documentation uses it
    launcher = "hydra/launcher=submitit_local"
    sweep = _sweep(tmp_path, launcher, "hydra.sweeper.n_trials=4", "hydra.sweeper.n_jobs=2")
    out = _finish(sweep, tmp_path)
    assert sweep.returncode == 0, out
    url = configured_url(STUDY, [f"paths.log_dir={tmp_path}"])
    _check_finished_study(url, tmp_path / "optuna" / STUDY)
    print(f"4 trials as submitit_local jobs on SQLite: {time.time() - started:.0f} s")


@pytest.mark.slow
def test_submitit_local_sweep_on_postgresql(tmp_path, postgres_url):
    started = time.time()
    sweep = _sweep(
        tmp_path,
        "hydra/launcher=local",  # ours
        "hydra.sweeper.n_trials=4",
        "hydra.sweeper.n_jobs=2",
        f"hydra.sweeper.storage='{postgres_url}'",
    )
    out = _finish(sweep, tmp_path)
    assert sweep.returncode == 0, out
    _check_finished_study(postgres_url, tmp_path / "optuna" / STUDY)
    print(f"4 trials as submitit_local jobs on PostgreSQL: {time.time() - started:.0f} s")


def _descendants(pid: int) -> list[int]:
    children = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        kids = children.get(todo.pop(), [])
        found += kids
        todo += kids
    return found


def _job_process(
    sweep: subprocess.Popen, tmp_path: Path, ready: Callable[[], bool], timeout: float = 300
) -> int:
    """The pid of the sweep's running trial job (the process running the task, below
    submitit's controller) once ``ready()``."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        assert sweep.poll() is None, _finish(sweep, tmp_path)
        for pid in _descendants(sweep.pid):
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            except OSError:
                continue
            if b"submitit.core._submit" in cmdline and ready():
                return pid
        time.sleep(0.2)
    raise AssertionError("no trial job started")


def _study_now(tmp_path: Path) -> optuna.study.Study | None:
    url = configured_url(STUDY, [f"paths.log_dir={tmp_path}"])
    try:  # read only: never race the sweep to create the tables
        storage = optuna.storages.RDBStorage(url, skip_table_creation=True)
        return optuna.load_study(study_name=STUDY, storage=storage)
    except Exception:  # not created yet
        return None


@pytest.mark.slow
def test_a_killed_job_fails_its_trial_and_the_sweep_goes_on(tmp_path):
    # n_jobs=1: trial 0's job is killed (as the kernel's OOM killer would), trial 1 runs
    sweep = _sweep(
        tmp_path,
        "hydra/launcher=local",
        "hydra.sweeper.n_trials=2",
        "hydra.sweeper.max_failure_rate=0.5",
    )
    os.kill(_job_process(sweep, tmp_path, lambda: True), signal.SIGKILL)
    out = _finish(sweep, tmp_path)
    assert sweep.returncode == 0, out
    trials = _study_now(tmp_path).trials
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.COMPLETE]
    log = (tmp_path / "optuna" / STUDY / "sweep.log").read_text()
    assert "trial_000 failed (1/2)" in log and "UncompletedJobError" in log


@pytest.mark.slow
def test_a_preempted_job_is_requeued_and_resumes_its_trial(tmp_path):
    trial_dir = tmp_path / "optuna" / STUDY / "trial_000"
    # epochs left after the first, so that the signal comes while it trains
    sweep = _sweep(
        tmp_path, "hydra/launcher=local", "hydra.sweeper.n_trials=1", "trainer.max_epochs=4"
    )

    def first_epoch_saved() -> bool:
        return (trial_dir / "checkpoints" / "last.ckpt").is_file()

    # what submitit sends before a pre-emption (and a time-out): its USR2 signal
    os.kill(_job_process(sweep, tmp_path, first_epoch_saved), signal.SIGUSR2)
    out = _finish(sweep, tmp_path)
    assert sweep.returncode == 0, out
    (trial,) = _study_now(tmp_path).trials
    assert trial.state == TrialState.COMPLETE and sorted(trial.intermediate_values) == [0, 1, 2, 3]
    job_log = (tmp_path / "optuna" / STUDY / ".submitit").rglob("*_0_log.out")
    assert any("Requeued job" in log.read_text() for log in job_log)
    # the requeued run went on from the trial's last checkpoint
    last = trial_dir / "checkpoints" / "last.ckpt"
    assert f"ckpt_path='{last}'" in (trial_dir / ".hydra" / "overrides.yaml").read_text()
    assert "resumed at epoch" in (trial_dir / "debug.log").read_text()
