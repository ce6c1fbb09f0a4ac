"""Hydra's sweep syntax (``interval``, ``tag(log, ...)``, ``choice``, ``range``) -> Optuna.

Kept apart from the sweeper so the mapping is a small pure function with its own tests.
``range(a, b, s)`` keeps Python's (and Hydra's) end-exclusive meaning.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import optuna
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep, Override, RangeSweep

Suggest = Callable[[optuna.trial.Trial], Any]


def _range_suggest(name: str, sweep: RangeSweep) -> Suggest:
    start, stop, step = sweep.start, sweep.stop, sweep.step
    if step is None or step == 0:
        raise ValueError(f"{name}: range step must be non-zero")
    n = math.ceil((stop - start) / step)  # end-exclusive, as in Python
    if n <= 0:
        raise ValueError(f"{name}: range({start}, {stop}, {step}) is empty")
    last = start + (n - 1) * step
    low, high = min(start, last), max(start, last)
    if all(float(v).is_integer() for v in (start, stop, step)):
        return lambda t: t.suggest_int(name, int(low), int(high), step=int(abs(step)))
    return lambda t: t.suggest_float(name, low, high, step=abs(step))


def to_suggest(name: str, override: Override) -> Suggest | None:
    """A function drawing ``name`` from ``trial``; None when the value is fixed."""
    if not override.is_sweep_override():
        return None
    sweep = override.value()
    log = "log" in (getattr(sweep, "tags", None) or set())
    if isinstance(sweep, IntervalSweep):  # continuous, as in Hydra; use range() for ints
        low, high = float(sweep.start), float(sweep.end)
        return lambda t: t.suggest_float(name, low, high, log=log)
    if isinstance(sweep, RangeSweep):
        return _range_suggest(name, sweep)
    if isinstance(sweep, ChoiceSweep):
        choices = list(sweep.list)
        return lambda t: t.suggest_categorical(name, choices)
    raise ValueError(f"{name}: unsupported sweep {override.input_line!r}")


def parse_search_space(
    params: Mapping[str, Any], arguments: Sequence[str] = ()
) -> tuple[dict[str, Suggest], list[str]]:
    """``hydra.sweeper.params`` plus command-line ``arguments`` -> (suggest functions by key,
    fixed overrides); a sweep given on the command line joins the search space."""
    parser = OverridesParser.create()
    lines = [f"{key}={value}" for key, value in params.items()] + list(arguments)
    space: dict[str, Suggest] = {}
    fixed: list[str] = []
    for override in parser.parse_overrides(lines):
        key = override.get_key_element()
        suggest = to_suggest(key, override)
        if suggest is None:
            fixed.append(override.input_line)
        else:
            space[key] = suggest
    return space, fixed


def trial_overrides(trial: optuna.trial.Trial, space: Mapping[str, Suggest]) -> list[str]:
    """Draw every parameter and return them as Hydra overrides."""
    return [f"{key}={_format(suggest(trial))}" for key, suggest in space.items()]


def _format(value: Any) -> str:
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, str) and any(c in value for c in " ,=[]{}()'\""):
        return "'" + value.replace("'", "\\'") + "'"
    return str(value)
