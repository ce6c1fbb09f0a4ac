"""The Optuna sweeper plugin: search-space syntax, failures, pruning, resuming (real SQLite)."""

import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
import yaml
from conftest import ROOT
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.utils import JobReturn, JobStatus
from optuna.trial import TrialState
from wandb_runs import offline_runs

from hydra_plugins.hintcolor_optuna_sweeper.search_space import parse_search_space, to_suggest
from hydra_plugins.hintcolor_optuna_sweeper.storage import configured_url, database_file
from hydra_plugins.hintcolor_optuna_sweeper.sweeper import OptunaSweeper


def _draws(expr: str, n: int = 200) -> set:
    (override,) = OverridesParser.create().parse_overrides([f"x={expr}"])
    suggest = to_suggest("x", override)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    values = set()
    for _ in range(n):
        trial = study.ask()
        values.add(suggest(trial))
        study.tell(trial, 0.0)
    return values


def test_range_is_end_exclusive():
    assert _draws("range(4,20,4)") == {4, 8, 12, 16}


def test_interval_log_and_choice():
    values = _draws("tag(log, interval(1e-4, 1e-2))", 300)
    assert all(1e-4 <= v <= 1e-2 for v in values)
    below = sum(v < 1e-3 for v in values) / len(values)
    assert 0.35 < below < 0.65  # log-uniform: half the draws below the geometric mean
    assert _draws("choice(resunet, unet)") == {"resunet", "unet"}
    continuous = _draws("interval(1, 3)")  # Hydra's interval is continuous, even for ints
    assert len(continuous) > 100 and all(1.0 <= v <= 3.0 for v in continuous)


def test_fixed_values_stay_overrides():
    space, fixed = parse_search_space({"a": "interval(0, 1)", "b": "7"})
    assert list(space) == ["a"] and fixed == ["b=7"]


def _tell(value=None, error=None) -> TrialState:
    sweeper = OptunaSweeper(n_trials=1)
    study = optuna.create_study(direction="maximize")
    trial = study.ask()
    ret = JobReturn()
    ret.status = JobStatus.FAILED if error else JobStatus.COMPLETED
    ret.return_value = error or value
    failures: list = []
    sweeper._tell(study, trial, ret, failures)
    return study.trials[0].state, failures


def test_raising_nan_and_pruned_trials_are_recorded():
    assert _tell(value=25.0) == (TrialState.COMPLETE, [])
    state, failures = _tell(value=math.nan)
    assert state == TrialState.FAIL and "nan" in str(failures[0])
    state, failures = _tell(error=RuntimeError("boom"))
    assert state == TrialState.FAIL and isinstance(failures[0], RuntimeError)
    assert _tell(error=optuna.TrialPruned())[0] == TrialState.PRUNED


SWEEP = [
    "-m",
    "hparams_search=optuna",
    "debug=fast",
    "callbacks.progress_bar=null",
    "callbacks.model_summary=null",
    "data.image_size=64",
    "trainer.max_epochs=2",
    "hydra.sweeper.heartbeat_interval=1",
    "hydra.sweeper.grace_period=3",
]


def _sweep(tmp_path: Path, *args: str, wait: bool = True):
    cmd = [
        sys.executable,
        str(ROOT / "src" / "train.py"),
        *SWEEP,
        f"paths.log_dir={tmp_path}",
        *args,
    ]
    env = {**os.environ, "HINTCOLOR_ROOT": str(ROOT)}
    if not wait:
        return subprocess.Popen(
            cmd, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
    return subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)


# debug=fast runs use a study of their own, apart from the real "hintcolor" one
STUDY = "hintcolor-debug"


def _url(tmp_path: Path, name: str = STUDY) -> str:
    """Where the sweeps above keep study ``name`` (conf/hparams_search/base.yaml)."""
    return configured_url(name, [f"paths.log_dir={tmp_path}"])


def _study(tmp_path: Path, name: str = STUDY) -> optuna.study.Study:
    return optuna.load_study(study_name=name, storage=_url(tmp_path, name))


def test_multirun_sweep_end_to_end(tmp_path):
    proc = _sweep(tmp_path, "hydra.sweeper.n_trials=3")
    assert proc.returncode == 0, proc.stderr[-3000:]
    study = _study(tmp_path)
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 3
    assert not database_file(_url(tmp_path, "hintcolor")).exists()  # the real study: untouched
    out = tmp_path / "optuna" / STUDY
    summary = yaml.safe_load((out / "best_params.yaml").read_text())
    assert summary["best"]["value"] == pytest.approx(study.best_value)
    assert set(summary["best"]["params"]) == {"optimizer.lr", "hints.p", "loss.l1", "loss.ssim"}
    assert (out / "trials.csv").read_text().count("COMPLETE") == 3
    assert (out / "optimization_history.png").stat().st_size > 1000
    best = study.best_trial.number
    for n in range(3):  # each trial keeps its run folder and config; only the best its weights
        assert (out / f"trial_{n:03d}" / ".hydra" / "overrides.yaml").is_file()
        assert (out / f"trial_{n:03d}" / "checkpoints" / "last.ckpt").is_file() == (n == best)
    # progress after each trial, on (non-terminal) stdout and in the sweep's own log
    progress = [
        line[line.index("trial_") :] for line in proc.stdout.splitlines() if "(best so far" in line
    ]
    assert [line.split(":")[0] for line in progress] == [
        f"trial_{n:03d} finished ({n + 1}/3)" for n in range(3)
    ]
    assert progress[-1].endswith(f"(best so far {study.best_value:.4f} in trial_{best:03d})")
    assert all(line in (out / "sweep.log").read_text() for line in progress)
    # every trial is its own W&B run (offline here), grouped by study, named by trial
    runs = offline_runs(out)
    assert len({r.run["run_id"] for r in runs}) == 3
    assert {r.run.get("run_group") for r in runs} == {STUDY}
    assert sorted(r.run.get("display_name") for r in runs) == [
        "trial_000",
        "trial_001",
        "trial_002",
    ]
    for run in runs:
        trial = study.trials[int(run.run["display_name"][-3:])]
        assert run.config["optimizer"]["lr"] == pytest.approx(trial.params["optimizer.lr"])
        assert run.summary["final_state"] == "complete" and run.values("val/psnr")
    # the study keeps its settings: a run with more epochs is refused before any trial
    refused = _sweep(tmp_path, "hydra.sweeper.n_trials=4", "trainer.max_epochs=3")
    assert refused.returncode != 0 and len(_study(tmp_path).trials) == 3
    assert "other settings (key: stored -> now): trainer.max_epochs: 2 -> 3." in refused.stderr


def test_pruning_reaches_the_trials(tmp_path):
    # A threshold no model reaches: every trial is pruned at its first validation.
    proc = _sweep(
        tmp_path,
        "hydra.sweeper.n_trials=2",
        "hydra.sweeper.pruner.name=threshold",
        "~hydra.sweeper.pruner.kwargs.n_startup_trials",
        "+hydra.sweeper.pruner.kwargs.lower=100.0",
        "hydra.sweeper.pruner.kwargs.n_warmup_steps=0",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    trials = _study(tmp_path).trials
    assert [t.state for t in trials] == [TrialState.PRUNED] * 2
    assert all(list(t.intermediate_values) == [0] for t in trials)


@pytest.mark.slow
def test_failing_trial_does_not_stop_the_sweep(tmp_path):
    # image size 16 is below the backbone's stride: that trial raises, the others run
    proc = _sweep(
        tmp_path,
        "hydra.sweeper.n_trials=4",
        "hydra.sweeper.max_failure_rate=0.75",
        "data.image_size=choice(16,64)",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    trials = _study(tmp_path).trials
    assert len(trials) == 4
    for t in trials:  # exactly the trials that drew the unusable size failed
        expected = TrialState.FAIL if t.params["data.image_size"] == 16 else TrialState.COMPLETE
        assert t.state == expected
    assert {t.state for t in trials} == {TrialState.FAIL, TrialState.COMPLETE}


@pytest.mark.slow
def test_too_many_failures_stop_with_the_cause(tmp_path):
    proc = _sweep(tmp_path, "hydra.sweeper.n_trials=3", "data.image_size=16")
    assert proc.returncode != 0
    assert "max_failure_rate" in proc.stderr and "downsampling factor" in proc.stderr
    assert len(_study(tmp_path).trials) == 1


@pytest.mark.slow
def test_killed_sweep_resumes_to_exactly_n_trials(tmp_path):
    url = _url(tmp_path)
    proc = _sweep(tmp_path, "hydra.sweeper.n_trials=4", wait=False)
    deadline = time.time() + 300
    while time.time() < deadline:  # kill it while a trial is running, after one finished
        time.sleep(0.2)
        try:  # read only: never race the sweep to create the tables
            storage = optuna.storages.RDBStorage(url, skip_table_creation=True)
            states = [t.state for t in optuna.load_study(study_name=STUDY, storage=storage).trials]
        except Exception:  # not created yet
            continue
        if TrialState.COMPLETE in states and states[-1] == TrialState.RUNNING:
            break
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed = _study(tmp_path).trials[-1]
    assert killed.state == TrialState.RUNNING
    again = _sweep(tmp_path, "hydra.sweeper.n_trials=4")
    assert again.returncode == 0, again.stderr[-3000:]
    trials = _study(tmp_path).trials
    assert len(trials) == 4
    assert all(t.state != TrialState.RUNNING for t in trials)
    assert trials[killed.number].state == TrialState.FAIL


# Trials of two workers draw different parameters, so the median pruner may stop one early
DONE = (TrialState.COMPLETE, TrialState.PRUNED)


@pytest.mark.slow
def test_two_workers_share_one_study(tmp_path):
    workers = [_sweep(tmp_path, "hydra.sweeper.n_trials=5", wait=False) for _ in range(2)]
    for w in workers:
        assert w.wait(timeout=600) == 0, w.stderr.read().decode()[-3000:]
    trials = _study(tmp_path).trials
    assert sorted(t.number for t in trials) == [0, 1, 2, 3, 4]  # exactly n_trials
    assert all(t.state in DONE for t in trials), trials
    # the same sampler seed on both workers, yet no parameter set is drawn twice
    assert len({tuple(sorted(t.params.items())) for t in trials}) == 5
    runs = tmp_path / "optuna" / STUDY
    assert sorted(p.name for p in runs.glob("trial_*")) == [f"trial_{n:03d}" for n in range(5)]


@pytest.mark.parametrize("study", ["optuna", "backbones", "hint_density"])
def test_ready_made_studies_compose_and_parse(study):
    from hydra import compose, initialize_config_dir

    from hydra_plugins.hintcolor_optuna_sweeper.sweeper import _grid

    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("train", [f"hparams_search={study}"], return_hydra_config=True)
    sweeper = cfg.hydra.sweeper
    assert sweeper._target_.endswith("OptunaSweeper") and sweeper.study_name
    space, fixed = parse_search_space(sweeper.params)
    assert space and not fixed
    if sweeper.sampler.name == "grid":  # a grid study runs every combination exactly once
        combos = math.prod(len(v) for v in _grid(dict(sweeper.params)).values())
        assert combos == sweeper.n_trials


@pytest.mark.slow
def test_two_workers_on_postgresql(tmp_path, postgres_url):
    storage = f"hydra.sweeper.storage='{postgres_url}'"
    workers = [_sweep(tmp_path, "hydra.sweeper.n_trials=5", storage, wait=False) for _ in range(2)]
    for w in workers:
        assert w.wait(timeout=600) == 0, w.stderr.read().decode()[-3000:]
    trials = optuna.load_study(study_name=STUDY, storage=postgres_url).trials
    assert sorted(t.number for t in trials) == [0, 1, 2, 3, 4]
    assert all(t.state in DONE and t.value is not None for t in trials), trials
