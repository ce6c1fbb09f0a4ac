"""Does pruning pay? The same study (space, budget, sampler seed) with and without pruning.

    python scripts/bench_sweep.py [--trials 12] [--epochs 6] [--out logs/bench/sweep]

Counts the training epochs each study spends (a pruned trial stops early) and compares the
best val/psnr_best. Prints a Markdown table and writes it, with JSON, to --out.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import optuna
from optuna.trial import TrialState
from reports import publish

from hydra_plugins.hintcolor_optuna_sweeper.storage import configured_url

ROOT = Path(__file__).resolve().parents[1]


def run_study(name: str, pruner: str, args: argparse.Namespace, out: Path) -> dict:
    cmd = [
        sys.executable,
        str(ROOT / "src" / "train.py"),
        "-m",
        "hparams_search=optuna",
        f"hydra.sweeper.study_name={name}",
        f"hydra.sweeper.n_trials={args.trials}",
        f"hydra.sweeper.pruner.name={pruner}",
        f"trainer.max_epochs={args.epochs}",
        f"data.train_repeats={args.repeats}",
        f"paths.log_dir={out}",
        "logger=none",
        "callbacks.progress_bar=null",
        "callbacks.model_summary=null",
    ]
    if pruner == "none":
        cmd += [
            "~hydra.sweeper.pruner.kwargs.n_startup_trials",
            "~hydra.sweeper.pruner.kwargs.n_warmup_steps",
        ]
    start = time.perf_counter()
    subprocess.run(
        cmd,
        check=True,
        cwd=ROOT,
        env={**os.environ, "HINTCOLOR_ROOT": str(ROOT)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wall = time.perf_counter() - start
    storage = configured_url(name, [f"paths.log_dir={out}"])
    study = optuna.load_study(study_name=name, storage=storage)
    trials = study.get_trials(states=(TrialState.COMPLETE, TrialState.PRUNED))
    return {
        "pruner": pruner,
        "trials": len(trials),
        "pruned": sum(t.state == TrialState.PRUNED for t in trials),
        "epochs": sum(len(t.intermediate_values) for t in trials),
        "best": study.best_value,
        "wall_s": wall,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=8, help="data.train_repeats (epoch size)")
    parser.add_argument("--out", type=Path, default=ROOT / "logs" / "bench" / "sweep")
    parser.add_argument("--readme", type=Path, help="update this file's bench-sweep block")
    args = parser.parse_args()
    stamp = time.strftime("%Y%m%d-%H%M%S")
    rows = [run_study(f"bench-{p}-{stamp}", p, args, args.out) for p in ("none", "median")]
    base, pruned = rows
    lines = [
        f"Same study ({args.trials} trials x up to {args.epochs} epochs, TPE seed 42, "
        f"{20 * args.repeats} crops/epoch), without and with the median pruner:",
        "",
        "| pruner | trials | pruned | epochs trained | best val/psnr_best (dB) | wall (s) |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        lines.append(
            f"| {r['pruner']} | {r['trials']} | {r['pruned']} | {r['epochs']} | "
            f"{r['best']:.2f} | {r['wall_s']:.0f} |"
        )
    ratio = pruned["epochs"] / base["epochs"]
    delta = pruned["best"] - base["best"]
    lines += [
        "",
        f"Epochs with pruning / without: {ratio:.2f} (bar <= 0.60); "
        f"best value difference: {delta:+.2f} dB (bar: within 0.3 dB).",
    ]
    data = {"rows": rows, "epoch_ratio": ratio, "best_delta": delta}
    publish("\n".join(lines), data, args.out, "pruning", args.readme, "bench-sweep")


if __name__ == "__main__":
    main()
