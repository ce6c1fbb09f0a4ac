"""What ``src/compare.py`` does: one table and two plots comparing local runs, from their logs.

A run dir is what ``src/train.py`` leaves: ``.hydra/config.yaml`` plus ``csv/metrics.csv``
(Lightning's CSVLogger: sparse rows, a val row has only val/* filled) and/or ``checkpoints/``.
An eval dir (``src/eval.py``) holds ``psnr_at_k.json``; it belongs to the run whose dir holds
its checkpoint. It only reads files; its metric columns are those of :mod:`hintcolor.metrics`.
"""

from __future__ import annotations

import csv
import json
import math
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from omegaconf import DictConfig, OmegaConf

from hintcolor.metrics import HEADLINE, METRICS, Metric

PSNR_AT_K = (0, 1, 10, 100)
MAX_HPARAM_COLUMNS = 8
MAX_LEGEND_ENTRIES = 12
# Shown in their own columns, so never repeated among the differing hyperparameters.
FIXED_KEYS = {"model.name": "model", "optimizer.lr": "lr", "seed": "seed"}
# Config sections that differ between runs without being hyperparameters (where things were
# written, which loggers/progress bars ran, the sweep's own bookkeeping).
BOOKKEEPING = {"paths", "hydra", "optuna", "logger", "callbacks", "tags", "task_name", "ckpt_path"}


class CompareError(ValueError):
    """Bad input for the whole comparison (a missing path, no runs): the CLI exits with 2."""


@dataclass
class EvalResult:
    path: Path
    checkpoint: Path | None  # resolved; None when neither the JSON nor .hydra names one
    rows: list[dict[str, Any]] | None  # None: unreadable
    mtime: float


@dataclass
class Run:
    path: Path
    config: DictConfig
    label: str = ""
    # metric name -> its val/<name> per epoch, [(epoch, value)]
    val: dict[str, list[tuple[int, float]]] = field(default_factory=dict)
    epochs: int | None = None
    best_from_study: float | None = None  # trials.csv value when the trial logged no CSV
    eval: EvalResult | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def val_psnr(self) -> list[tuple[int, float]]:
        """The headline metric per epoch: what selects checkpoints and sweep trials."""
        return self.val.get(HEADLINE.name, [])

    @property
    def best(self) -> tuple[float, int | None] | None:
        """(best val/psnr, its epoch), the epoch unknown when the value is from trials.csv."""
        if self.val_psnr:
            epoch, value = max(self.val_psnr, key=lambda p: p[1])
            return value, epoch
        return None if self.best_from_study is None else (self.best_from_study, None)


# ---- reading ---------------------------------------------------------------------------------


def read_config(run_dir: Path) -> DictConfig | None:
    """The run's config as written; interpolations stay unresolved (no Hydra runtime here)."""
    try:
        cfg = OmegaConf.load(run_dir / ".hydra" / "config.yaml")
    except (OSError, yaml.YAMLError, ValueError):
        return None
    return cfg if isinstance(cfg, DictConfig) else None


def config_value(cfg: DictConfig, key: str) -> Any:
    """A leaf, resolved where possible; ``${hydra:...}`` and other failures give None."""
    value = OmegaConf.select(cfg, key, default=None, throw_on_resolution_failure=False)
    if OmegaConf.is_config(value):
        value = OmegaConf.to_container(value, resolve=False)
    return value


def is_run_dir(path: Path) -> bool:
    if not (path / ".hydra" / "config.yaml").is_file():
        return False
    cfg = read_config(path)
    if cfg is not None and config_value(cfg, "task_name") == "eval":
        return False  # eval outputs are attached to runs, not runs themselves
    return (path / "csv" / "metrics.csv").is_file() or (path / "checkpoints").is_dir()


def find_run_dirs(inputs: list[Path]) -> list[Path]:
    """Run dirs at or below ``inputs`` (a run, a sweep, a whole log tree: any mix)."""
    found: dict[Path, None] = {}  # ordered set
    for top in inputs:
        stack = [top]
        while stack:
            path = stack.pop()
            if is_run_dir(path):
                found[path.resolve()] = None
                continue  # runs do not nest
            try:
                children = [p for p in path.iterdir() if p.is_dir() and not p.name.startswith(".")]
            except OSError:  # unreadable dir: nothing to find there
                continue
            stack.extend(sorted(children, reverse=True))
    return list(found)


def read_metrics(path: Path) -> tuple[dict[str, list[tuple[int, float]]], int | None]:
    """Per-epoch series of every numeric column, and the number of epochs seen.

    Raises ``ValueError`` for a file that is not a CSV. Rows are sparse, so empty cells are
    skipped; a later value for the same epoch replaces an earlier one (a resumed run).
    """
    series: dict[str, dict[int, float]] = {}
    last_epoch = None
    try:
        with open(path, newline="") as f:
            for row in csv.DictReader(f):
                try:
                    epoch = int(float(row.get("epoch") or ""))
                except ValueError:
                    continue  # e.g. the lr-monitor row, logged before epoch 0
                last_epoch = epoch if last_epoch is None else max(last_epoch, epoch)
                for name, cell in row.items():
                    if name in (None, "epoch", "step") or not cell:
                        continue
                    try:
                        value = float(cell)
                    except (TypeError, ValueError):
                        continue
                    if math.isfinite(value):
                        series.setdefault(name, {})[epoch] = value
    except (csv.Error, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: {exc}") from exc
    curves = {name: sorted(values.items()) for name, values in series.items()}
    return curves, None if last_epoch is None else last_epoch + 1


def study_value(run_dir: Path, cfg: DictConfig) -> tuple[float, str] | None:
    """A sweep trial's value and state from the study's ``trials.csv`` next to the trial dirs.

    Sweeps often run with ``logger=none``; the study summary still has each trial's value,
    which is the best val/psnr when that is the optimized metric.
    """
    number = config_value(cfg, "optuna.trial_number")
    if number is None or config_value(cfg, "optimized_metric") != "val/psnr_best":
        return None
    try:
        with open(run_dir.parent / "trials.csv", newline="") as f:
            for row in csv.DictReader(f):
                if row.get("number") == str(number) and row.get("value"):
                    return float(row["value"]), row.get("state") or "?"
    except (OSError, csv.Error, ValueError):
        pass
    return None


def load_run(run_dir: Path) -> Run:
    cfg = read_config(run_dir)
    run = Run(run_dir, cfg if cfg is not None else OmegaConf.create())
    if cfg is None:
        run.notes.append("unreadable config")
    metrics, curves = run_dir / "csv" / "metrics.csv", {}
    try:
        if metrics.is_file():
            curves, run.epochs = read_metrics(metrics)
    except ValueError:
        run.notes.append("unreadable metrics")
    run.val = {m.name: curves[f"val/{m.name}"] for m in METRICS if f"val/{m.name}" in curves}
    if run.val_psnr:
        return run
    from_study = study_value(run_dir, run.config)
    if from_study:
        run.best_from_study = from_study[0]
        run.notes.append(f"no csv; best from trials.csv ({from_study[1]})")
    elif curves:
        run.notes.append("no val/psnr")  # e.g. stopped before the first validation
    elif "unreadable metrics" not in run.notes:
        run.notes.append("no metrics")
    return run


def resolve_checkpoint(ckpt: str, root: Path) -> Path:
    """eval.py records the path as given: absolute, or relative to the repo root or cwd."""
    path = Path(ckpt).expanduser()
    if path.is_absolute():
        return path.resolve()
    for base in (root, Path.cwd()):
        if (base / path).exists():
            return (base / path).resolve()
    return (root / path).resolve()  # gone since, but its run dir may still be here


def load_eval(path: Path, root: Path) -> EvalResult:
    ckpt = None
    try:
        data = json.loads(path.read_text())
        ckpt = data.get("checkpoint")
        rows = [
            {"method": str(r["method"]), "k": int(r["k"]), "psnr": float(r["psnr"])}
            for r in data["rows"]
        ]
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        rows = None
    if not isinstance(ckpt, str):  # the JSON is broken: the eval run's config still says
        cfg = read_config(path.parent)
        ckpt = config_value(cfg, "ckpt_path") if cfg is not None else None
    checkpoint = resolve_checkpoint(ckpt, root) if isinstance(ckpt, str) else None
    return EvalResult(path, checkpoint, rows, path.stat().st_mtime)


def find_eval_files(dirs: list[Path]) -> list[Path]:
    found = {p.resolve() for d in dirs if d.is_dir() for p in d.rglob("psnr_at_k.json")}
    return sorted(found)


def attach_evals(runs: list[Run], evals: list[EvalResult]) -> None:
    """Each run gets the newest readable eval of one of its own checkpoints."""
    for run in runs:
        mine = [e for e in evals if e.checkpoint and run.path in e.checkpoint.parents]
        readable = sorted((e for e in mine if e.rows), key=lambda e: e.mtime)
        if readable:
            run.eval = readable[-1]
            if len(readable) > 1:
                run.notes.append(f"{len(readable)} evals, newest used")
        if len(readable) < len(mine):
            run.notes.append("unreadable eval")


# ---- the table -------------------------------------------------------------------------------


def flatten(node: Any, prefix: str = "") -> dict[str, Any]:
    """Dotted leaves of a config container; lists are leaves (a list of transforms is one)."""
    if not isinstance(node, dict):
        return {prefix: node}
    leaves: dict[str, Any] = {}
    for key, value in node.items():
        leaves.update(flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    return leaves


def overridden_keys(run_dir: Path) -> set[str]:
    """Keys the user set on the command line (``.hydra/overrides.yaml``): shown first."""
    try:
        overrides = yaml.safe_load((run_dir / ".hydra" / "overrides.yaml").read_text()) or []
    except (OSError, yaml.YAMLError):
        return set()
    return {str(o).split("=", 1)[0].lstrip("+~") for o in overrides if "=" in str(o)}


def differing_hparams(runs: list[Run]) -> list[str]:
    """Config leaves whose raw value differs between runs, overridden ones first."""
    leaves = [flatten(OmegaConf.to_container(r.config, resolve=False)) for r in runs]
    keys = list(dict.fromkeys(k for leaf in leaves for k in leaf))
    model_differs = len({str(leaf.get("model.name")) for leaf in leaves}) > 1

    def interesting(key: str) -> bool:
        name = key.rsplit(".", 1)[-1]
        if key in FIXED_KEYS or key.split(".")[0] in BOOKKEEPING:
            return False
        if name.endswith("_dir") or name in ("dirpath", "root"):
            return False  # paths differ per machine and per run
        # a different model brings a different backbone: its model.name column says enough
        return not (model_differs and key.startswith("model."))

    differ = [k for k in keys if interesting(k) and len({repr(leaf.get(k)) for leaf in leaves}) > 1]
    overridden = set().union(*(overridden_keys(r.path) for r in runs))

    def set_by_user(key: str) -> bool:
        return any(key == o or key.startswith(o + ".") for o in overridden)

    return sorted(differ, key=lambda k: not set_by_user(k))  # stable: config order otherwise


def label_runs(runs: list[Run]) -> None:
    """``study/trial_007`` for sweep trials, else the path below the runs' common parent."""
    paths = [r.path for r in runs]
    common = Path(os.path.commonpath(paths)) if len(paths) > 1 else paths[0].parent
    for run in runs:
        study = config_value(run.config, "optuna.study_name")
        number = config_value(run.config, "optuna.trial_number")
        if study is not None and isinstance(number, int):
            run.label = f"{study}/trial_{number:03d}"
        else:
            run.label = str(run.path.relative_to(common))


def run_row(run: Run, hparams: list[str]) -> dict[str, Any]:
    best = run.best
    psnr_at = {}
    if run.eval and run.eval.rows:
        psnr_at = {r["k"]: r["psnr"] for r in run.eval.rows if r["method"] == "model"}
    row: dict[str, Any] = {"run": run.label}
    row.update({title: config_value(run.config, key) for key, title in FIXED_KEYS.items()})
    row.update(
        {
            "epochs": run.epochs,
            "best val/psnr": best[0] if best else None,
            "best epoch": best[1] if best else None,
        }
    )
    last = {m.name: run.val[m.name][-1][1] for m in METRICS if run.val.get(m.name)}
    row.update({f"last val/{m.name}": last.get(m.name) for m in METRICS})
    row.update({f"PSNR@{k}": psnr_at.get(k) for k in PSNR_AT_K})
    row.update({key: config_value(run.config, key) for key in hparams})
    row["note"] = "; ".join(run.notes)
    row["path"] = str(run.path)
    return row


def sort_key(row: dict[str, Any]) -> tuple[bool, float]:
    best = row["best val/psnr"]
    return best is None, -(best or 0.0)  # best first, runs without a value last


def _metric_of(column: str) -> Metric | None:
    """The metric a column shows: ``PSNR@10``, ``best val/psnr``, ``last val/ssim``..."""
    name = column.rsplit("/", 1)[-1].split("@")[0].lower()
    return next((m for m in METRICS if m.name == name), None)


def format_cell(column: str, value: Any, width: int = 24) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        metric = _metric_of(column)
        text = f"{value:.{metric.digits}f}" if metric else f"{value:.4g}"
    elif isinstance(value, (list, dict)):
        text = json.dumps(value, separators=(",", ":"))
    else:
        text = str(value)
    if len(text) > width and column not in ("run", "note"):  # long lists, e.g. of transforms
        text = text[: width - 1] + "…"
    return text.replace("|", "\\|")


def markdown_table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + " --- |" * len(columns)]
    for row in rows:
        lines.append("| " + " | ".join(format_cell(c, row.get(c)) for c in columns) + " |")
    return "\n".join(lines)


# ---- plots -----------------------------------------------------------------------------------


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only, also without a display
    import matplotlib.pyplot as plt

    return plt


def plot_val_psnr(runs: list[Run], path: Path) -> None:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    curves = [r for r in runs if r.val_psnr]
    for run in curves:
        epochs, values = [e for e, _ in run.val_psnr], [v for _, v in run.val_psnr]
        ax.plot(epochs, values, marker="." if len(epochs) < 30 else None, label=run.label)
    if not curves:
        ax.text(0.5, 0.5, "no run logged val/psnr", ha="center", transform=ax.transAxes)
    ax.set_xlabel("epoch")
    ax.set_ylabel("val/psnr (dB)")
    ax.grid(True, alpha=0.3)
    if 0 < len(curves) <= MAX_LEGEND_ENTRIES:
        ax.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _curve(eval_rows: list[dict[str, Any]], method: str) -> tuple[list[int], list[float]]:
    points = sorted((r["k"], r["psnr"]) for r in eval_rows if r["method"] == method)
    return [k for k, _ in points], [p for _, p in points]


def plot_psnr_at_k(runs: list[Run], path: Path) -> None:
    """Each run's model curve; the references once, from the first run's eval (dashed)."""
    plt = _pyplot()
    evaluated = [r for r in runs if r.eval and r.eval.rows]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for run in evaluated:
        ks, psnrs = _curve(run.eval.rows, "model")
        ax.plot(ks, psnrs, marker="o", label=run.label)
    for method, color in (
        ("gray", "0.6"),
        ("idw", "k"),
        ("push_pull", "0.35"),
        ("guided", "C2"),
        ("levin", "C3"),
    ):
        ks, psnrs = _curve(evaluated[0].eval.rows, method)
        if ks:
            ax.plot(ks, psnrs, linestyle="--", color=color, label=method)
    ax.set_xscale("symlog", linthresh=1)  # k=0 stays on the axis
    ax.set_xlabel("hints per image (k)")
    ax.set_ylabel("PSNR (dB)")
    ax.grid(True, which="both", alpha=0.3)
    if len(evaluated) <= MAX_LEGEND_ENTRIES:
        ax.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


# ---- all together ----------------------------------------------------------------------------


def compare(inputs: list[Path], out: Path, evals_dir: Path | None, root: Path) -> dict[str, Any]:
    """Find, read, table, plot. Returns the Markdown and the paths written."""
    for path in inputs:
        if not path.exists():
            raise CompareError(f"path not found: {path}")
    runs = [load_run(d) for d in find_run_dirs(inputs)]
    if not runs:
        where = ", ".join(str(p) for p in inputs)
        raise CompareError(
            f"no run dirs (.hydra/config.yaml + csv/metrics.csv or checkpoints/) in {where}"
        )
    eval_files = find_eval_files([*inputs, *([evals_dir] if evals_dir else [])])
    evals = [load_eval(p, root) for p in eval_files]
    for e in evals:
        if e.checkpoint is None:
            print(f"warning: {e.path}: unreadable, no checkpoint named; skipped", file=sys.stderr)
    attach_evals(runs, evals)
    label_runs(runs)

    hparams = differing_hparams(runs)
    shown, hidden = hparams[:MAX_HPARAM_COLUMNS], hparams[MAX_HPARAM_COLUMNS:]
    rows = sorted((run_row(r, shown) for r in runs), key=sort_key)
    columns = [c for c in rows[0] if c != "path"]  # the path is for the CSV and JSON only
    if not any(r.eval for r in runs):
        columns = [c for c in columns if not c.startswith("PSNR@")]
    n_eval = sum(r.eval is not None for r in runs)
    header = (
        f"{len(runs)} runs from {', '.join(str(p) for p in inputs)} "
        f"({n_eval} with PSNR@k from eval), sorted by best val/psnr."
    )
    if hidden:
        header += f" {len(hidden)} more differing keys not shown: {', '.join(hidden)}."
    markdown = f"{header}\n\n{markdown_table(rows, columns)}\n"

    out.mkdir(parents=True, exist_ok=True)
    paths = {"markdown": out / "comparison.md", "csv": out / "comparison.csv"}
    paths["json"] = out / "comparison.json"
    paths["markdown"].write_text(markdown)
    with open(paths["csv"], "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    summary = {"header": header, "columns": columns, "hidden_hparams": hidden, "runs": rows}
    paths["json"].write_text(json.dumps(summary, indent=2, default=str))
    paths["val_psnr"] = out / "val_psnr.png"
    plot_val_psnr(runs, paths["val_psnr"])
    if n_eval:
        paths["psnr_at_k"] = out / "psnr_at_k.png"
        plot_psnr_at_k(runs, paths["psnr_at_k"])
    return {"markdown": markdown, "paths": paths, "runs": runs}
