"""The study's summary, written at the end of a sweep and readable any time from storage."""

from __future__ import annotations

import csv
import logging
from pathlib import Path
from typing import Any

import optuna
import yaml
from optuna.trial import TrialState

log = logging.getLogger(__name__)


def write_results(study: optuna.study.Study, out: Path, space: dict[str, Any]) -> None:
    """best_params.yaml, trials.csv, importances and plots (PNG) in ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    trials = study.get_trials(deepcopy=False)
    with open(out / "trials.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["number", "state", "value", "duration_s", *space])
        for t in trials:
            duration = t.duration.total_seconds() if t.duration else ""
            writer.writerow(
                [t.number, t.state.name, t.value, duration, *(t.params.get(k) for k in space)]
            )
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    states = {s.name: sum(t.state == s for t in trials) for s in TrialState}
    summary: dict[str, Any] = {"study": study.study_name, "trials": states}
    if complete:
        best = study.best_trial
        summary["best"] = {
            "number": best.number,
            "value": best.value,
            "params": best.params,
            # pass these back: python src/train.py <overrides>
            "overrides": [f"{k}={v}" for k, v in best.params.items()],
        }
    if len(complete) >= 2 and space:
        try:
            summary["importances"] = {
                k: float(v) for k, v in optuna.importance.get_param_importances(study).items()
            }
        except (RuntimeError, ValueError) as exc:  # e.g. a parameter that never varied
            log.info(f"no parameter importances: {exc}")
    (out / "best_params.yaml").write_text(yaml.safe_dump(summary, sort_keys=False))
    _plots(study, out, complete)
    log.info(f"study summary: {out / 'best_params.yaml'} (and trials.csv, *.png)")


def _plots(study: optuna.study.Study, out: Path, complete: list) -> None:
    if not complete:
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as ovm

    plots = {"optimization_history": ovm.plot_optimization_history}
    if len(complete) >= 2 and complete[0].params:
        plots["parallel_coordinate"] = ovm.plot_parallel_coordinate
    for name, plot in plots.items():
        try:
            ax = plot(study)
            fig = ax.figure if hasattr(ax, "figure") else ax.flat[0].figure
            fig.savefig(out / f"{name}.png", dpi=110, bbox_inches="tight")
            plt.close(fig)
        except (ValueError, RuntimeError) as exc:
            log.info(f"no {name} plot: {exc}")
