"""Rebuild the shipped model: train ``experiment=release``, pack the weights, evaluate, write
the model card.

    python scripts/release_model.py                       # all of it (~1 h on 2 CPU cores)
    python scripts/release_model.py --ckpt RUN/checkpoints/best.ckpt   # from a finished run
    python src/train.py experiment=release_head           # a colour head on the shipped model
    python scripts/release_model.py --ckpt RUN/checkpoints/best.ckpt   # ... shipped with it
    python scripts/release_model.py --card-only           # rewrite the card from saved results

Writes ``models/<name>/``: ``model.ckpt`` (the backbone's weights in float16 and the run's
resolved config, nothing else: read with ``weights_only=True`` like any checkpoint here),
``eval/psnr_at_k.{json,md,png}`` (``src/eval.py`` on the ImageNet sample), ``release.json``
(how it was made) and ``README.md``, the model card. ``make model`` runs the first form.
A checkpoint whose network was frozen under a new colour-distribution head
(``experiment=release_head``) keeps the network's training facts from the existing
``release.json`` and adds the head's.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shlex
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import torch
from bench_quality import PUBLISHED_SIGGRAPH17
from entry_points import ROOT, run_entry_point
from reports import replace_block

from hintcolor.models.color_distribution import ab_gamut_bins

NAME = "hintcolor-v1"
TRAIN = ["src/train.py", "experiment=release", "logger=csv", "callbacks.progress_bar=null"]
DATA = ROOT.parent / "shared" / "data"
REFERENCES = ("gray", "idw", "push_pull", "guided", "levin")
MODEL_KS = (1, 2, 5, 10, 20, 50, 100, 200)
# "2026-11-27 16:23:01,297" at the start of every train.log line
STAMP = re.compile(r"^\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d),\d+\]")


def machine() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": len(os.sched_getaffinity(0))
        if hasattr(os, "sched_getaffinity")
        else os.cpu_count(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "torch": torch.__version__,
    }


def train(out: Path) -> Path:
    """Run the recipe into ``out/train``; returns its best checkpoint."""
    run_dir = out / "train"
    args = [*TRAIN, f"hydra.run.dir={run_dir}"]
    print(f"training: python {' '.join(args)}", flush=True)
    run_entry_point(args, log=out / "train.out")
    return run_dir / "checkpoints" / "best.ckpt"


def run_command(run_dir: Path) -> str:
    """The command line of a finished run, from the overrides Hydra saved in it."""
    overrides = run_dir / ".hydra" / "overrides.yaml"
    if not overrides.is_file():
        return f"python {' '.join(TRAIN[:2])} (run {run_dir})"
    args = [line[2:].strip() for line in overrides.read_text().splitlines() if line[:2] == "- "]
    args = [a.strip("'\"") for a in args if not a.startswith(("hydra.", "logger=", "callbacks."))]
    return f"python src/train.py {shlex.join(args)} (run {run_dir})"


def training_facts(run_dir: Path) -> dict[str, Any]:
    """Wall time, data and how the run ended, read back from the run's train.log."""
    lines = (run_dir / "train.log").read_text().splitlines()
    stamps = [datetime.fromisoformat(m.group(1)) for m in map(STAMP.match, lines) if m]
    facts: dict[str, Any] = {"wall_s": (stamps[-1] - stamps[0]).total_seconds()}
    for line in lines:
        if m := re.search(r"- (train|val): (\d+) usable images", line):
            facts[f"{m.group(1)}_photos"] = int(m.group(2))
        if "run finished" in line or "stopped at the time limit" in line:
            facts["ending"] = line.split(" - ", 1)[1].strip()
    return facts


def pack(ckpt_path: Path, target: Path) -> dict[str, Any]:
    """The backbone's weights in float16 and the resolved config: 1/4 of the training file."""
    ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=True)
    state = {
        k: (v.half() if v.is_floating_point() else v)
        for k, v in ckpt["state_dict"].items()
        if k.startswith("backbone.")
    }
    target.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": state, "hintcolor_config": ckpt["hintcolor_config"]}, target)
    return {
        "source": str(ckpt_path),
        "epoch": ckpt.get("epoch"),
        "global_step": ckpt.get("global_step"),
        "parameters": sum(v.numel() for v in state.values()),
        "bytes": target.stat().st_size,
    }


def evaluate(ckpt: Path, out: Path, *extra: str) -> dict[str, Any]:
    """``src/eval.py`` on the ImageNet sample; returns its psnr_at_k.json."""
    args = [
        "src/eval.py",
        f"ckpt_path={ckpt}",
        "data=folder",
        f"data.test_dir={DATA / 'imagenet-sample'}",
        "logger=none",
        f"hydra.run.dir={out}",
        *extra,
    ]
    print(f"evaluating: python {' '.join(args)}", flush=True)
    start = time.perf_counter()
    run_entry_point(args, log=out / "eval.out")
    result = json.loads((out / "psnr_at_k.json").read_text())
    result["wall_s"] = time.perf_counter() - start
    (out / "psnr_at_k.json").write_text(json.dumps(result, indent=2))
    return result


def _table(rows: list[dict[str, Any]], metric: str, digits: int) -> list[str]:
    ks = sorted({r["k"] for r in rows})
    value = {(r["method"], r["k"]): r[metric] for r in rows}
    methods = ["model", *(m for m in REFERENCES if (m, ks[-1]) in value)]
    lines = [f"| {metric.upper()} | " + " | ".join(f"k={k}" for k in ks) + " |"]
    lines.append("|" + " --- |" * (len(ks) + 1))
    for m in methods:
        label = f"**{NAME}**" if m == "model" else m
        lines.append(f"| {label} | " + " | ".join(f"{value[(m, k)]:.{digits}f}" for k in ks) + " |")
    if metric == "psnr":
        published = " | ".join(f"{PUBLISHED_SIGGRAPH17.get(k, float('nan')):.2f}" for k in ks)
        lines.append(f"| SIGGRAPH'17 published (ctest10k, context) | {published} |")
    return lines


def margins(rows: list[dict[str, Any]]) -> dict[int, float]:
    """Model minus the best reference (gray at k=0; idw, push_pull, levin at k >= 1)."""
    value = {(r["method"], r["k"]): r["psnr"] for r in rows}
    out = {0: value[("model", 0)] - value[("gray", 0)]}
    for k in MODEL_KS:
        if ("model", k) in value:
            best = max(value[(m, k)] for m in ("idw", "push_pull", "levin") if (m, k) in value)
            out[k] = value[("model", k)] - best
    return out


def readme_block(release: dict[str, Any], result: dict[str, Any]) -> str:
    """The README's results: the shipped model against the references (README block
    ``release``), with what produced it."""
    t, m = release["training"], release["machine"]
    gaps = ", ".join(f"k={k}: {v:+.2f}" for k, v in margins(result["rows"]).items())
    return f"""Model `models/{NAME}` (`{release["command"]}`: `conf/experiment/release.yaml`,
{t.get("train_photos", "?")} training photos, {t["wall_s"] / 60:.0f} min on {m["cores"]} cores of
{m["cpu"]}, {m["cpu_capability"]}; {release["date"]}), evaluated with `python src/eval.py
data=folder data.test_dir=../shared/data/imagenet-sample` on {result["images"]} of its 490 photos:

{chr(10).join(_table(result["rows"], "psnr", 2))}

{chr(10).join(_table(result["rows"], "ssim", 4))}

Model minus the best non-learned method (gray at k=0, else max of idw, push_pull, levin), dB:
{gaps}."""


def card(release: dict[str, Any], result: dict[str, Any]) -> str:
    m, t, w = release["machine"], release["training"], release["weights"]
    gap = margins(result["rows"])
    gaps = ", ".join(f"k={k}: {v:+.2f}" for k, v in gap.items())
    half = release.get("half_precision_check")
    half_line = (
        f"Stored in float16: PSNR@10 {half['float16']:.3f} dB vs {half['float32']:.3f} dB with "
        f"the float32 training weights ({half['float16'] - half['float32']:+.3f} dB)."
        if half
        else "Stored in float16."
    )
    head = release.get("head")
    head_intro = (
        f" A colour-distribution head ({head['bins']} ab bins; the page's suggested colours) "
        "was trained afterwards on the frozen network: the ab output, and every number below, "
        "are the network's alone."
        if head
        else ""
    )
    head_line = (
        f"- Colour-distribution head: `{head['command']}`, {head['training']['wall_s'] / 60:.1f} "
        f"min on the frozen network ({head['training'].get('ending', '')}).\n"
        if head
        else ""
    )
    return f"""# {NAME}: the shipped hint-colorization model

What `python src/eval.py`, `src/colorize.py`, `src/export.py` and `make app` use when no
`ckpt_path` is given. A `{release["config"]["model"]}` backbone ({w["parameters"] / 1e6:.2f} M
parameters) correcting the edge-aware `guided` interpolation of the hints
(`hint_prior=guided`), trained from scratch.{head_intro} {half_line} File: `model.ckpt`,
{w["bytes"] / 1e6:.1f} MB, read with `torch.load(weights_only=True)`; the stored config is
checked before anything is built from it.

## Results

`src/eval.py` on **{result["images"]} of the 490 photos of `imagenet-sample`**{
        " (the first ones in file order)" if result["images"] < 490 else ""
    } (Zhang et al. 2017 protocol:
256x256, k hint patches of 6x6 at clipped-Gaussian locations with the patch's mean colour,
seeded per image, so every method sees the same hints). No image of it was trained or tuned on.
Evaluation time: {result["wall_s"] / 60:.1f} min on the machine below.

{chr(10).join(_table(result["rows"], "psnr", 2))}

{chr(10).join(_table(result["rows"], "ssim", 4))}

Model minus the best non-learned method (gray at k=0; max of idw, push_pull, levin at k >= 1),
dB: {gaps}.

`levin` is Levin, Lischinski & Weiss, "Colorization using Optimization" (SIGGRAPH 2004), solved
to a relative residual of 1e-4 (`src/hintcolor/levin.py`); `push_pull` the plain pyramid
interpolation and `guided` the edge-aware one this model corrects (its prior, alone); the
published SIGGRAPH'17 row (Zhang et al., 1.3 M ImageNet training photos, other ImageNet images)
is context, not a like-for-like
comparison.

## How it was made

- Command: `{release["command"]}` (`make model` reruns it, packs the weights, evaluates and
  rewrites this card).
- Data: {t.get("train_photos", "?")} training photos, {t.get("val_photos", "?")} held out
  for validation (3 %, by seed) from `../shared/data/train-pool` (BSDS500, Urban100, Sun-Hays80)
  and `../shared/data/train-extra` (flowers, cats and dogs, clothing, wildlife, a COCO sample),
  referenced by path.
- Recipe: `conf/experiment/release.yaml` (resolved config inside `model.ckpt`).
- Wall time: {t["wall_s"] / 60:.1f} min of training; {t.get("ending", "")}.
{head_line}- Machine: {m["cpu"]}, {m["cores"]} cores, CPU capability {m["cpu_capability"]}, GPU
  {m["gpu"] or "none"}, torch {m["torch"]}.

## Licence caveat

The weights were trained on photos for research or education use only (see
`../shared/data/README.md`: BSDS500, Urban100, Sun-Hays80, Oxford flowers, Kaggle cats and
dogs, web photos; only `clothing/` is CC0). Use the model for research and teaching; for
anything else, retrain it on data you may use (`python src/train.py experiment=release
data.root=[/your/photos]`).
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ckpt", type=Path, help="pack this finished run instead of training")
    parser.add_argument("--out", type=Path, default=ROOT / "models" / NAME)
    parser.add_argument("--work", type=Path, default=ROOT / "logs" / "release")
    parser.add_argument("--card-only", action="store_true")
    parser.add_argument("--limit", type=int, help="evaluate only the first N photos")
    parser.add_argument(
        "--keep-eval",
        action="store_true",
        help="--ckpt is a colour head trained on the frozen released network: keep that "
        "network's evaluation (its ab output is unchanged) instead of evaluating again",
    )
    parser.add_argument("--readme", type=Path, default=ROOT / "README.md", help="results block")
    args = parser.parse_args()
    release_path = args.out / "release.json"
    target = args.out / "model.ckpt"
    if not args.card_only:
        release: dict[str, Any] = {"machine": machine(), "date": time.strftime("%Y-%m-%d")}
        if args.ckpt is None:
            release["command"] = "python " + shlex.join(TRAIN[:2])
            ckpt = train(args.work)
            release["training"] = training_facts(ckpt.parents[1])
        else:
            ckpt = args.ckpt
            run = ckpt.parents[1]
            stored = torch.load(ckpt, map_location="cpu", weights_only=True)["hintcolor_config"]
            if stored.get("freeze_backbone") and stored.get("color_head"):
                # the network is the one released before, untouched: its facts stay
                previous = json.loads(release_path.read_text()) if release_path.is_file() else {}
                release["command"] = previous.get("command", stored.get("init_from"))
                release["training"] = previous.get("training", training_facts(run))
                release["head"] = {"command": run_command(run), "training": training_facts(run)}
            else:
                release["command"] = run_command(run)
                release["training"] = training_facts(run)
        release["weights"] = pack(ckpt, target)
        stored = torch.load(target, weights_only=True)["hintcolor_config"]
        release["config"] = {"model": stored["model"]["name"]}
        if "head" in release:
            release["head"]["bins"] = len(ab_gamut_bins(stored["color_head"]["grid"]))
        if args.keep_eval:
            if "head" not in release:
                raise SystemExit("--keep-eval is for a head trained on the frozen network")
            previous = json.loads(release_path.read_text())
            release["half_precision_check"] = previous["half_precision_check"]
        else:
            subset = [f"limit={args.limit}"] if args.limit else []
            result = evaluate(target, args.out / "eval", *subset)
            # float16 storage must not cost quality: PSNR@10 of the float32 training weights
            full = evaluate(
                ckpt, args.work / "eval-float32", "hint_counts=[10]", "references=[]", *subset
            )
            at10 = {r["method"]: r["psnr"] for r in result["rows"] if r["k"] == 10}
            release["half_precision_check"] = {
                "float16": at10["model"],
                "float32": next(r["psnr"] for r in full["rows"] if r["method"] == "model"),
            }
        release_path.write_text(json.dumps(release, indent=2))
    release = json.loads(release_path.read_text())
    result = json.loads((args.out / "eval" / "psnr_at_k.json").read_text())
    (args.out / "README.md").write_text(card(release, result))
    if args.readme:
        replace_block(args.readme, "release", readme_block(release, result))
    print(f"wrote {args.out / 'README.md'}; margins: {margins(result['rows'])}")


if __name__ == "__main__":
    main()
