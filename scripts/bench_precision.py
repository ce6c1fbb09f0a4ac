"""Does the fast precision cost quality? The same training run in bf16-mixed and in fp32.

    python scripts/bench_precision.py [--epochs 8] [--limit 200] [--out logs/bench/precision]
                                      [--readme docs/benchmarks.md]

Both runs use the default config and seed; both checkpoints are evaluated in fp32 with the
Zhang et al. protocol on the ImageNet sample (or --test-dir), so only the training precision
differs. Prints a Markdown table (PSNR@k, training wall time) and writes it with JSON to --out.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from entry_points import ROOT, run_entry_point
from reports import publish

PRECISIONS = ("bf16-mixed", "32-true")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--limit", type=int, default=200, help="evaluation images")
    parser.add_argument(
        "--test-dir", type=Path, default=ROOT.parent / "shared/data/imagenet-sample"
    )
    parser.add_argument("--out", type=Path, default=ROOT / "logs" / "bench" / "precision")
    parser.add_argument("--readme", type=Path, help="update this file's bench-precision block")
    args = parser.parse_args()
    if not args.test_dir.is_dir():
        raise SystemExit(f"--test-dir {args.test_dir} does not exist")
    ks = [0, 1, 10, 100]
    rows = []
    for precision in PRECISIONS:
        run_dir = args.out / precision
        start = time.perf_counter()
        run_entry_point(
            [
                "src/train.py",
                f"trainer.precision={precision}",
                f"trainer.max_epochs={args.epochs}",
                "logger=csv",
                "callbacks.progress_bar=null",
                f"hydra.run.dir={run_dir}",
            ]
        )
        train_s = time.perf_counter() - start
        eval_dir = args.out / f"eval-{precision}"
        run_entry_point(
            [
                "src/eval.py",
                f"ckpt_path={run_dir / 'checkpoints' / 'best.ckpt'}",
                "data=folder",
                f"data.test_dir={args.test_dir}",
                f"limit={args.limit}",
                "precision=32-true",
                f"hint_counts=[{','.join(map(str, ks))}]",
                "logger=none",
                f"hydra.run.dir={eval_dir}",
            ]
        )
        result = json.loads((eval_dir / "psnr_at_k.json").read_text())
        psnr = {r["k"]: r["psnr"] for r in result["rows"] if r["method"] == "model"}
        rows.append(
            {"precision": precision, "train_s": train_s, "psnr": psnr, "images": result["images"]}
        )
    delta = rows[0]["psnr"][10] - rows[1]["psnr"][10]
    lines = [
        f"Default config, {args.epochs} epochs, seed 42, trained in each precision; evaluated in "
        f"fp32 on {rows[0]['images']} images of {args.test_dir.name} (Zhang et al. protocol):",
        "",
        "| training precision | train wall (s) | " + " | ".join(f"PSNR@{k}" for k in ks) + " |",
        "| --- | --- |" + " --- |" * len(ks),
    ]
    for r in rows:
        cells = " | ".join(f"{r['psnr'][k]:.2f}" for k in ks)
        lines.append(f"| {r['precision']} | {r['train_s']:.0f} | {cells} |")
    lines += [
        "",
        f"PSNR@10 bf16 - fp32: {delta:+.2f} dB (bar: within 0.2 dB); training "
        f"speed-up {rows[1]['train_s'] / rows[0]['train_s']:.1f}x.",
    ]
    data = {"rows": rows, "delta_psnr10": delta}
    publish("\n".join(lines), data, args.out, "precision", args.readme, "bench-precision")


if __name__ == "__main__":
    main()
