"""W&B sweeps (sweeps/wandb/*.yaml): valid sweep configs, every argument the agent would pass
composes into the training config with the drawn value, and each sweep searches the same space
as its Optuna study in conf/hparams_search/ (no W&B server needed)."""

from __future__ import annotations

import copy
import itertools
import math
import re
from pathlib import Path
from typing import Any

import pytest
from conftest import ROOT, compose
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep
from hydra.errors import ConfigCompositionException
from omegaconf import OmegaConf
from wandb.sdk.launch.sweeps import utils as sweep_utils

from hintcolor.metrics import HEADLINE, METRICS
from hintcolor.wandb_sweep import load_sweep

SWEEP_DIR = ROOT / "sweeps" / "wandb"
SWEEPS = sorted(SWEEP_DIR.glob("*.yaml"))
STUDY_DIR = ROOT / "conf" / "hparams_search"
CONF = ROOT / "conf"

# A subset of W&B's sweep-config JSON schema (github.com/wandb/sweeps, config/schema.json), which
# the server applies on `wandb sweep`; the wandb client ships no validator of its own.
TOP_LEVEL = {
    "program",
    "method",
    "metric",
    "parameters",
    "command",
    "early_terminate",
    "name",
    "description",
    "entity",
    "project",
    "run_cap",
}
METHODS = {"grid", "random", "bayes"}
RANGE_DISTRIBUTIONS = {
    "uniform",
    "int_uniform",
    "q_uniform",
    "log_uniform_values",
    "q_log_uniform_values",
    "inv_log_uniform_values",
}
HYPERBAND = {"type", "min_iter", "max_iter", "s", "eta", "strict"}
PARAM_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*$")
# what `wandb agent` puts in place of these macros (wandb_agent.Agent._command_run)
AGENT_PREFIX = ["/usr/bin/env", "python"]


def _number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _schema_errors(sweep: dict) -> list[str]:
    errors = [f"unknown top-level key {k!r}" for k in sorted(set(sweep) - TOP_LEVEL)]
    errors += [f"missing {k!r}" for k in ("program", "method", "parameters") if k not in sweep]
    method = sweep.get("method")
    if method not in METHODS:
        errors.append(f"method {method!r} not in {sorted(METHODS)}")
    metric = sweep.get("metric")
    if metric is None:
        if method == "bayes" or "early_terminate" in sweep:
            errors.append("bayes search and early termination need a metric")
    elif (
        not isinstance(metric, dict)
        or set(metric) - {"name", "goal", "target"}
        or not isinstance(metric.get("name"), str)
        or metric.get("goal", "minimize") not in ("minimize", "maximize")
    ):
        errors.append(f"bad metric {metric!r}")
    stop = sweep.get("early_terminate")
    if stop is not None:
        if not isinstance(stop, dict) or stop.get("type") != "hyperband" or set(stop) - HYPERBAND:
            errors.append(f"bad early_terminate {stop!r}")
        elif "min_iter" not in stop and not {"max_iter", "s"} <= set(stop):
            errors.append("hyperband needs min_iter, or max_iter and s")
        elif "min_iter" in stop and not (type(stop["min_iter"]) is int and stop["min_iter"] >= 1):
            errors.append(f"hyperband min_iter {stop['min_iter']!r} is not an integer >= 1")
    if "run_cap" in sweep and not (type(sweep["run_cap"]) is int and sweep["run_cap"] > 0):
        errors.append(f"run_cap {sweep['run_cap']!r} is not a positive integer")
    command = sweep.get("command", [])
    if not isinstance(command, list) or not all(isinstance(c, str) for c in command):
        errors.append("command must be a list of strings")
    params = sweep.get("parameters")
    if not isinstance(params, dict) or not params:
        return [*errors, "parameters must be a non-empty mapping"]
    for name, p in params.items():
        if not PARAM_NAME.match(name):
            errors.append(f"{name}: not a valid parameter name")
        elif not isinstance(p, dict):
            errors.append(f"{name}: not a mapping")
        elif "values" in p:
            if set(p) - {"values", "distribution"} or p.get("distribution", "categorical") != (
                "categorical"
            ):
                errors.append(f"{name}: values go with nothing but distribution: categorical")
            if not isinstance(p["values"], list) or not p["values"]:
                errors.append(f"{name}: values must be a non-empty list")
        elif "value" in p:
            if set(p) - {"value", "distribution"}:
                errors.append(f"{name}: a constant takes only value")
        else:
            # explicit distribution: W&B infers int_uniform from integer bounds otherwise
            dist = p.get("distribution")
            if dist not in RANGE_DISTRIBUTIONS:
                errors.append(f"{name}: distribution {dist!r} not in {sorted(RANGE_DISTRIBUTIONS)}")
            elif set(p) - {"distribution", "min", "max", "q"}:
                errors.append(f"{name}: unknown keys {sorted(set(p) - {'distribution'})}")
            elif not (_number(p.get("min")) and _number(p.get("max"))):
                errors.append(f"{name}: min and max must be numbers (YAML: 1.0e-4, not 1e-4)")
            elif not p["min"] < p["max"]:
                errors.append(f"{name}: min must be below max")
            elif "log" in dist and p["min"] <= 0:
                errors.append(f"{name}: a log distribution needs min > 0")
            if method == "grid":
                errors.append(f"{name}: a grid sweep needs values, not a distribution")
    return errors


def _load(path: Path) -> dict:
    # as python -m hintcolor.wandb_sweep creates it: the derived values filled in
    return load_sweep(path)


def _samples(param: dict) -> list:
    """values: all of them; a distribution: min, middle (geometric for log ones), max."""
    if "values" in param:
        return list(param["values"])
    if "value" in param:
        return [param["value"]]
    lo, hi, dist = param["min"], param["max"], param["distribution"]
    if "log" in dist:
        return [lo, math.sqrt(lo * hi), hi]
    return [lo, (lo + hi) // 2 if dist == "int_uniform" else (lo + hi) / 2, hi]


def _assignments(sweep: dict) -> list[dict]:
    """Grid: every combination. Otherwise every parameter at its min, middle and max together."""
    samples = {name: _samples(p) for name, p in sweep["parameters"].items()}
    if sweep["method"] == "grid":
        return [dict(zip(samples, c, strict=True)) for c in itertools.product(*samples.values())]
    n = max(len(v) for v in samples.values())
    return [{name: v[i % len(v)] for name, v in samples.items()} for i in range(n)]


def _agent_argv(sweep: dict, assignment: dict) -> list[str]:
    """The command line `wandb agent` runs for a run with these parameters (same macro
    expansion as wandb_agent.Agent._command_run, same formatting by wandb's own helper)."""
    args = {name: {"value": value} for name, value in assignment.items()}
    macros = sweep_utils.create_sweep_command_args({"args": args})
    macros.update(env=AGENT_PREFIX[:1], interpreter=AGENT_PREFIX[1:], program=[sweep["program"]])
    argv: list[str] = []
    for chunk in map(str, sweep["command"]):
        if chunk.startswith("${") and chunk.endswith("}"):
            argv += macros.get(chunk[2:-1]) or []
        else:
            argv.append(chunk)
    return argv


def _overrides(sweep: dict, assignment: dict) -> list[str]:
    """The Hydra overrides src/train.py receives from the agent."""
    argv = _agent_argv(sweep, assignment)
    assert argv[:3] == [*AGENT_PREFIX, sweep["program"]], argv
    return argv[3:]


def _check_composes(sweep: dict, output_dir: Path) -> int:
    """Compose the training config for every sampled assignment; each parameter must land on
    its key with the drawn value, and validation must keep the fixed zhang17 hints."""
    eval_hints = OmegaConf.load(CONF / "hints" / "zhang17.yaml")
    assignments = _assignments(sweep)
    for assignment in assignments:
        cfg = compose("train", _overrides(sweep, assignment), output_dir)
        for key, value in assignment.items():
            if (CONF / key).is_dir():  # a config group: the option chosen
                assert OmegaConf.select(cfg, f"{key}.name") == value, (key, value)
            else:
                got = OmegaConf.select(cfg, key)
                assert got == value and type(got) is type(value), (key, value, got)
        assert cfg.eval_hints == eval_hints, "validation hints must not follow the swept ones"
    return len(assignments)


def _study(name: str, output_dir: Path):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    with initialize_config_dir(str(CONF), version_base="1.3"):
        return hydra_compose(
            "train",
            [f"hparams_search={name}", f"paths.log_dir={output_dir}"],
            return_hydra_config=True,
        )


def _ids(path: Path) -> str:
    return path.stem


def test_one_wandb_sweep_per_optuna_study():
    studies = {p.stem for p in STUDY_DIR.glob("*.yaml")} - {"base"}
    assert studies and {p.stem for p in SWEEPS} == studies


@pytest.mark.parametrize("path", SWEEPS, ids=_ids)
def test_sweep_config_is_valid(path):
    sweep = _load(path)
    assert _schema_errors(sweep) == []
    assert sweep["program"] == "src/train.py" and (ROOT / sweep["program"]).is_file()
    command = sweep["command"]
    assert command[:3] == ["${env}", "${interpreter}", "${program}"]
    # Hydra takes key=value: ${args} would pass --key=value
    assert "${args_no_hyphens}" in command and "${args}" not in command
    assert "logger=wandb" in command  # runs report to the sweep, which reads the metric there
    # what the module logs: <stage>/<metric> for every metric of the table, and the best
    # headline value so far (val/psnr_best, what the studies optimise)
    logged = {f"{stage}/{m.name}" for stage in ("val", "test") for m in METRICS}
    assert sweep["metric"]["name"] in logged | {f"val/{HEADLINE.name}_best"}


@pytest.mark.parametrize("path", SWEEPS, ids=_ids)
def test_every_agent_command_composes(path, tmp_path):
    assert _check_composes(_load(path), tmp_path) >= 3


@pytest.mark.parametrize("path", SWEEPS, ids=_ids)
def test_same_search_as_the_optuna_study(path, tmp_path):
    sweep, study = _load(path), _study(path.stem, tmp_path)
    sweeper = study.hydra.sweeper
    params = dict(sweeper.params)
    assert set(sweep["parameters"]) == set(params)
    parser = OverridesParser.create()
    for key, expr in params.items():
        space, param = parser.parse_override(f"{key}={expr}").value(), sweep["parameters"][key]
        if isinstance(space, ChoiceSweep):
            assert param["values"] == list(space.list), key
        elif isinstance(space, IntervalSweep):
            log = "log" in (space.tags or set())
            assert param["distribution"] == ("log_uniform_values" if log else "uniform"), key
            assert (param["min"], param["max"]) == (space.start, space.end), key
        else:
            pytest.fail(f"{key}: no W&B counterpart checked for {expr!r}")
    assert sweep["metric"] == {"name": study.optimized_metric, "goal": sweeper.direction}
    if sweep["method"] == "grid":
        assert sweeper.sampler.name == "grid"
        assert math.prod(len(p["values"]) for p in sweep["parameters"].values()) == (
            sweeper.n_trials
        )
    else:
        assert sweep["run_cap"] == sweeper.n_trials
    assert ("early_terminate" in sweep) == (sweeper.pruner.name != "none")
    # the fixed arguments give the same training config as the study's defaults (logger apart)
    assignment = _assignments(sweep)[0]
    drawn = sweep_utils.create_sweep_command_args(
        {"args": {k: {"value": v} for k, v in assignment.items()}}
    )["args_no_hyphens"]
    by_wandb = compose("train", _overrides(sweep, assignment), tmp_path)
    by_optuna = compose("train", [f"hparams_search={path.stem}", *drawn], tmp_path)
    by_wandb, by_optuna = (OmegaConf.to_container(c) for c in (by_wandb, by_optuna))
    assert by_wandb.pop("logger") and by_optuna.pop("logger")
    assert by_wandb == by_optuna


def test_a_misspelled_key_fails(tmp_path):
    with pytest.raises(ConfigCompositionException, match=r"optimizer\.lrr"):
        compose("train", ["optimizer.lrr=0.1"], tmp_path)
    sweep = _load(SWEEP_DIR / "optuna.yaml")
    bad = copy.deepcopy(sweep)
    bad["parameters"]["optimizer.lrr"] = bad["parameters"].pop("optimizer.lr")
    with pytest.raises(ConfigCompositionException, match=r"optimizer\.lrr"):
        _check_composes(bad, tmp_path)
    bad = copy.deepcopy(sweep)
    bad["command"] = [c for c in bad["command"] if not c.startswith("+hints@eval_hints")]
    with pytest.raises(AssertionError, match="validation hints"):
        _check_composes(bad, tmp_path)
    bad = _load(SWEEP_DIR / "backbones.yaml")
    bad["parameters"]["model"]["values"] = ["resnet"]
    with pytest.raises(ConfigCompositionException, match="resnet"):
        _check_composes(bad, tmp_path)


@pytest.mark.parametrize(
    "mutate",
    [
        lambda s: s.update(method="tpe"),
        lambda s: s.update(metrics=s.pop("metric")),
        lambda s: s["metric"].update(goal="max"),
        lambda s: s["early_terminate"].update(min_iter=0),
        lambda s: s["early_terminate"].update(type="median"),
        lambda s: s["parameters"]["optimizer.lr"].update(min="1e-4"),  # PyYAML: a string
        lambda s: s["parameters"]["optimizer.lr"].update(distribution="loguniform"),
        lambda s: s["parameters"]["optimizer.lr"].update(min=0.0),
        lambda s: s["parameters"]["loss.l1"].pop("distribution"),
        lambda s: s["parameters"]["hints.p"].update(min=0.3),
        lambda s: s.update(method="grid"),
        lambda s: s.update(parameters={}),
    ],
)
def test_schema_check_catches_mistakes(mutate):
    sweep = _load(SWEEP_DIR / "optuna.yaml")
    assert _schema_errors(sweep) == []
    mutate(sweep)
    assert _schema_errors(sweep)
