"""Which backbone? Each one trained under the same budget, scored on real photos next to
non-learned references and the published SIGGRAPH'17 curve.

    python scripts/bench_quality.py [--backbones NAME,...] [--seeds 0]
        [--set KEY=VALUE ...] [--tag NAME] [--out logs/bench/quality] [--readme docs/benchmarks.md]
        [--report-only] [--quick]

The backbones default to the compared ones of conf/model/ (hintcolor.models.registry).
Each (backbone, seed) trains with ``experiment=backbone_budget`` into
OUT/<backbone>[-tag]/seed<s>/train, then ``src/eval.py`` scores its best checkpoint on the
ImageNet sample (Zhang et al. protocol) into .../eval. A run whose evaluation exists is reused,
so an interrupted comparison continues where it stopped and rows can be added later
(``--set hint_prior=none --tag no-prior`` adds an ablation). The report covers every finished
run under OUT: a PSNR@k table (mean over seeds), wall-clock per run, the `gray`, `idw`,
`push_pull` and `levin` references on the same images and hints, the published curve, and one PNG.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time
from pathlib import Path
from typing import Any

from entry_points import ROOT, run_entry_point
from reports import publish

from hintcolor.models.registry import compared_backbones, quick_overrides

HINT_COUNTS = (0, 1, 2, 5, 10, 20, 50, 100, 200, 500)
# Zhang et al. 2017, Real-Time User-Guided Image Colorization, PSNR vs number of 6x6 hint
# patches on ImageNet ctest10k (256x256): other images, 1.3 M training photos - context only.
PUBLISHED_PSNR = (24.43, 25.37, 26.20, 27.39, 28.42, 29.34, 30.42, 31.13, 31.70, 32.14)
PUBLISHED_SIGGRAPH17 = dict(zip(HINT_COUNTS, PUBLISHED_PSNR, strict=True))
REFERENCES = ("gray", "idw", "push_pull", "guided", "levin")
# Tiny models and data for the regression test (--quick): only the plumbing is exercised.
QUICK_TRAIN = [
    f"data.root={ROOT / 'data' / 'kodak24'}",
    "data.train_repeats=1",
    "data.image_size=32",
    "trainer.max_epochs=1",
    "+trainer.limit_train_batches=2",
    "+trainer.limit_val_batches=1",
    "callbacks.validation_images=null",
]
QUICK_EVAL = ["limit=2", "image_size=64", "hint_counts=[0,1,10]"]


def train_and_evaluate(
    run_dir: Path, backbone: str, seed: int, overrides: list[str], test_dir: Path, quick: bool
) -> dict[str, Any]:
    """Train one (backbone, seed) and evaluate it, unless its evaluation already exists."""
    timing_path = run_dir / "timing.json"
    if (run_dir / "eval" / "psnr_at_k.json").exists() and timing_path.exists():
        print(f"{run_dir}: done before, reused", flush=True)
        return json.loads(timing_path.read_text())
    train = [
        "src/train.py",
        "experiment=backbone_budget",
        f"model={backbone}",
        f"seed={seed}",
        "logger=csv",
        "callbacks.progress_bar=null",
        f"hydra.run.dir={run_dir / 'train'}",
        *((QUICK_TRAIN + quick_overrides(backbone)) if quick else []),
        *overrides,
    ]
    print(f"{run_dir}: training ...", flush=True)
    start = time.perf_counter()
    run_entry_point(train, log=run_dir / "train.log")
    train_s = time.perf_counter() - start
    evaluate = [
        "src/eval.py",
        f"ckpt_path={run_dir / 'train' / 'checkpoints' / 'best.ckpt'}",
        "data=folder",
        f"data.test_dir={test_dir}",
        "logger=none",
        f"hydra.run.dir={run_dir / 'eval'}",
        *(QUICK_EVAL if quick else []),
    ]
    print(f"{run_dir}: evaluating ...", flush=True)
    start = time.perf_counter()
    run_entry_point(evaluate, log=run_dir / "eval.log")
    timing = {
        "backbone": backbone,
        "seed": seed,
        "overrides": overrides,
        "test_dir": str(test_dir),
        "train_s": train_s,
        "eval_s": time.perf_counter() - start,
    }
    timing_path.write_text(json.dumps(timing, indent=2))
    return timing


def collect(out: Path) -> tuple[list[dict[str, Any]], dict[str, dict[int, float]], dict]:
    """Every finished run under ``out``: model rows per label, the references, eval metadata."""
    runs: dict[str, list[dict[str, Any]]] = {}
    references: dict[str, dict[int, float]] | None = None
    meta: dict[str, Any] = {}
    for result_path in sorted(out.glob("*/seed*/eval/psnr_at_k.json")):
        run_dir = result_path.parents[1]
        timing_path = run_dir / "timing.json"
        if not timing_path.exists():
            continue
        result = json.loads(result_path.read_text())
        psnr: dict[str, dict[int, float]] = {}
        for row in result["rows"]:
            psnr.setdefault(row["method"], {})[int(row["k"])] = row["psnr"]
        refs = {m: psnr[m] for m in REFERENCES if m in psnr}
        timing = json.loads(timing_path.read_text())
        if references is None:
            references = refs
            meta = {"images": result.get("images"), "test_dir": timing.get("test_dir", "")}
        elif any(
            abs(refs.get(m, {}).get(k, math.nan) - v) > 1e-3
            for m, curve in references.items()
            for k, v in curve.items()
        ):
            raise SystemExit(
                f"{result_path}: its gray/idw scores differ from the other runs' - it was "
                "evaluated on other images or hints, so it cannot share their table"
            )
        runs.setdefault(run_dir.parent.name, []).append({"psnr": psnr["model"], **timing})
    if references is None:
        raise SystemExit(f"no finished run under {out}")
    rows = []
    for label, seeds in runs.items():
        ks = sorted(set.intersection(*(set(s["psnr"]) for s in seeds)))
        rows.append(
            {
                "label": label,
                "seeds": sorted(s["seed"] for s in seeds),
                "psnr": {k: statistics.fmean(s["psnr"][k] for s in seeds) for k in ks},
                "psnr_sd": {
                    k: statistics.stdev(s["psnr"][k] for s in seeds) if len(seeds) > 1 else 0.0
                    for k in ks
                },
                "train_min": statistics.median(s["train_s"] for s in seeds) / 60,
                "eval_min": statistics.median(s["eval_s"] for s in seeds) / 60,
                "overrides": seeds[0]["overrides"],
            }
        )
    return rows, references, meta


def best_versus_idw(rows: list[dict[str, Any]], idw: dict[int, float]) -> dict[str, Any]:
    """The best row (mean PSNR over k >= 1) and its margin over idw at each k >= 1."""
    ks = [k for k in idw if k >= 1]
    best = max(rows, key=lambda r: statistics.fmean(r["psnr"].get(k, -math.inf) for k in ks))
    margins = {k: best["psnr"][k] - idw[k] for k in ks if k in best["psnr"]}
    return {"label": best["label"], "margins": margins, "beats_idw": min(margins.values()) > 0}


def markdown(rows, references, meta, verdict) -> str:
    ks = sorted(references["idw"])
    header = "| row | seeds | train min | " + " | ".join(f"k={k}" for k in ks) + " |"
    lines = [
        f"PSNR@k (dB), {meta['images']} images of `{Path(meta['test_dir'] or '').name}`, "
        "256x256, 6x6 hint patches (Zhang et al. protocol); backbones trained with "
        "`experiment=backbone_budget` (mean over seeds):",
        "",
        header,
        "| --- | --- | --- |" + " --- |" * len(ks),
    ]
    for r in sorted(rows, key=lambda r: -statistics.fmean(r["psnr"].values())):
        cells = []
        for k in ks:
            v, sd = r["psnr"].get(k), r["psnr_sd"].get(k, 0.0)
            cells.append("-" if v is None else f"{v:.2f}" + (f" ± {sd:.2f}" if sd else ""))
        seeds = ",".join(map(str, r["seeds"]))
        lines.append(f"| {r['label']} | {seeds} | {r['train_min']:.1f} | {' | '.join(cells)} |")
    for name, curve in references.items():
        cells = " | ".join(f"{curve[k]:.2f}" for k in ks)
        lines.append(f"| {name} (no learning) | - | - | {cells} |")
    published = " | ".join(f"{PUBLISHED_SIGGRAPH17.get(k, math.nan):.2f}" for k in ks)
    lines.append(f"| SIGGRAPH'17 published (ctest10k, context) | - | - | {published} |")
    worst = min(verdict["margins"], key=verdict["margins"].get)
    lines += [
        "",
        f"Best backbone: **{verdict['label']}**; against `idw` at every k >= 1: "
        + ("**beats it**" if verdict["beats_idw"] else "**does not beat it**")
        + f" (smallest margin {verdict['margins'][worst]:+.2f} dB at k={worst}; "
        + ", ".join(f"k={k}: {m:+.2f}" for k, m in verdict["margins"].items())
        + ").",
    ]
    return "\n".join(lines)


def plot(rows, references, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ks = sorted(references["idw"])
    xs = range(len(ks))  # k = 0 has no place on a log axis: equally spaced, labelled by k
    fig, ax = plt.subplots(figsize=(7.5, 4.5), dpi=120)
    for r in rows:
        ax.plot(xs, [r["psnr"].get(k, math.nan) for k in ks], marker="o", label=r["label"])
    for name, style in zip(
        REFERENCES, (":", "--", "-.", (0, (3, 1, 1, 1)), (0, (1, 3))), strict=True
    ):
        if name in references:
            ax.plot(xs, [references[name][k] for k in ks], color="k", linestyle=style, label=name)
    ax.plot(
        xs,
        [PUBLISHED_SIGGRAPH17.get(k, math.nan) for k in ks],
        color="0.6",
        marker="s",
        label="SIGGRAPH'17 published (ctest10k)",
    )
    ax.set_xticks(list(xs), [str(k) for k in ks])
    ax.set_xlabel("hints per image (6x6 patches)")
    ax.set_ylabel("PSNR (dB)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--backbones",
        default=",".join(compared_backbones()),
        help="comma-separated model options (default: the compared backbones of conf/model/)",
    )
    parser.add_argument("--seeds", default="0", help="comma-separated training seeds")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--tag", default="", help="suffix of these runs' row label")
    parser.add_argument(
        "--test-dir", type=Path, default=ROOT.parent / "shared/data/imagenet-sample"
    )
    parser.add_argument("--out", type=Path, default=ROOT / "logs" / "bench" / "quality")
    parser.add_argument("--readme", type=Path, help="update this file's bench-quality block")
    parser.add_argument("--plot", type=Path, help="also save the PNG here (e.g. docs/...)")
    parser.add_argument("--report-only", action="store_true", help="no training, only the table")
    parser.add_argument("--quick", action="store_true", help="tiny models and data (tests)")
    args = parser.parse_args()
    if not args.report_only:
        if not args.test_dir.is_dir():
            raise SystemExit(f"--test-dir {args.test_dir} does not exist")
        for backbone in args.backbones.split(","):
            label = backbone + (f"-{args.tag}" if args.tag else "")
            for seed in (int(s) for s in args.seeds.split(",")):
                run_dir = args.out / label / f"seed{seed}"
                train_and_evaluate(run_dir, backbone, seed, args.set, args.test_dir, args.quick)
    rows, references, meta = collect(args.out)
    verdict = best_versus_idw(rows, references["idw"])
    for path in filter(None, (args.out / "psnr_at_k.png", args.plot)):
        plot(rows, references, path)
    data = {"rows": rows, "references": references, "published": PUBLISHED_SIGGRAPH17}
    data |= {"meta": meta, "verdict": verdict, "date": time.strftime("%Y-%m-%d")}
    table = markdown(rows, references, meta, verdict)
    publish(table, data, args.out, "quality", args.readme, "bench-quality")


if __name__ == "__main__":
    main()
