"""Speed, measured: FLOPs, training throughput (framework vs bare loop), compute efficiency,
data pipeline, inference latency and peak memory, for every backbone.

    python scripts/bench.py [--backbones NAME,...] [--out logs/bench] [--quick]
                            [--readme docs/benchmarks.md]

The backbones default to the compared ones of conf/model/ (hintcolor.models.registry).

Each measurement of one backbone runs in a fresh subprocess (its own peak RSS, no warm caches
carried over). Framework and bare-loop rounds alternate in the same process so that machine
noise hits both alike; medians are reported. Writes bench.json and bench.md to --out and, with
--readme, replaces the block between ``<!-- bench:begin -->`` and ``<!-- bench:end -->``.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import math
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
os.environ.setdefault("HINTCOLOR_ROOT", str(ROOT))
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import torch  # noqa: E402
from bench_app import click_lines, measure_page  # noqa: E402
from hydra.utils import instantiate  # noqa: E402
from omegaconf import open_dict  # noqa: E402
from reports import publish  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

from hintcolor.models.registry import compared_backbones, quick_overrides  # noqa: E402

# Lab + hint simulation of the original colorization-pytorch code (get_colorization_data,
# batch 16, 2 threads, geometric p = 1/8, patch sizes 1..9), measured on this machine.
PEER_LAB_HINTS = {128: 818.0, 256: 304.0}


# ---- helpers ---------------------------------------------------------------------------------


def compose(overrides: list[str]):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        return hydra_compose("train", overrides=overrides)


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def autocast(precision: str):
    if precision.startswith("bf16"):
        return torch.autocast("cpu", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def median_time(fn, repeats: int, warmup: int = 2) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


# ---- measurements (each run inside a worker subprocess) ----------------------------------------


def matmul_peak(size: int, repeats: int) -> dict[str, float]:
    """GFLOP/s of a square matmul in fp32 and bf16: the ceiling convolutions are held to."""
    out = {}
    for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        a, b = torch.randn(size, size, dtype=dtype), torch.randn(size, size, dtype=dtype)
        seconds = median_time(lambda a=a, b=b: a @ b, repeats)
        out[name] = 2 * size**3 / seconds / 1e9
    return out


def flops(backbone: torch.nn.Module, size: int) -> dict[str, float]:
    """FLOPs per image: forward, and a training step (forward + backward)."""
    x = torch.randn(2, 4, size, size)
    with FlopCounterMode(display=False) as counter:
        backbone(x)
    forward = counter.get_total_flops() / 2
    with FlopCounterMode(display=False) as counter:
        backbone(x).float().square().mean().backward()
    backbone.zero_grad(set_to_none=True)
    return {"forward": forward, "train": counter.get_total_flops() / 2}


def training_throughput(cfg, steps: int | None, rounds: int, warmup: int) -> dict[str, Any]:
    """img/s of the real framework (Trainer + DataModule on image files + hints) and of a bare
    loop doing the same forward/backward/step on batches already in memory, alternating.
    ``steps`` None: as many as fill ROUND_SECONDS."""
    import lightning as L
    from lightning.pytorch import Callback

    from hintcolor.build import (
        build_backbone,
        build_datamodule,
        build_module,
        build_trainer,
        resolve_precision,
    )

    class StepTimer(Callback):
        def __init__(self) -> None:
            self.marks: list[float] = []

        def on_train_batch_start(self, *args: Any) -> None:
            self.marks.append(time.perf_counter())

    template = build_backbone(cfg)
    batch_size = cfg.data.batch_size

    def framework_round() -> float:
        timer = StepTimer()
        module = build_module(cfg, copy.deepcopy(template))
        datamodule = build_datamodule(cfg.data, cfg.hints)
        trainer = build_trainer(cfg.trainer, [timer], [])
        trainer.fit(module, datamodule=datamodule)
        # batches warmup .. warmup+steps, measured start to start: loading included
        span = timer.marks[warmup + steps] - timer.marks[warmup]
        return steps * batch_size / span

    # the bare loop: same backbone, loss, optimiser, precision and memory layout
    module = build_module(cfg, copy.deepcopy(template))
    datamodule = build_datamodule(cfg.data, cfg.hints)
    datamodule.setup("fit")
    loader = iter(datamodule.train_dataloader())
    batches = [datamodule.on_after_batch_transfer(next(loader), 0) for _ in range(4)]
    del loader
    # the configured optimiser itself: configure_optimizers() would also size the schedule from
    # a Trainer, which this loop does not have (the schedule does not change a step's cost)
    optimizer = instantiate(module.hparams.optimizer)(params=module.parameters())
    precision = str(resolve_precision(cfg.trainer))

    def bare_step(batch: dict[str, torch.Tensor]) -> None:
        with autocast(precision):
            pred = module(batch["input"])
        loss = module.criterion(pred, batch["ab"], batch["l"])["loss"]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    def bare_round() -> float:
        for i in range(warmup):
            bare_step(batches[i % len(batches)])
        start = time.perf_counter()
        for i in range(steps):
            bare_step(batches[i % len(batches)])
        return steps * batch_size / (time.perf_counter() - start)

    if steps is None:
        steps = steps_per_round(lambda: bare_step(batches[0]), warmup)
    with open_dict(cfg):
        cfg.trainer.max_steps = warmup + steps + 1
        cfg.trainer.max_epochs = -1
    L.seed_everything(0, verbose=False)
    framework, bare = [], []
    for _ in range(rounds):
        framework.append(framework_round())
        bare.append(bare_round())
    return {
        "framework_img_s": statistics.median(framework),
        "bare_img_s": statistics.median(bare),
        "framework_rounds": framework,
        "bare_rounds": bare,
        "precision": precision,
        "batch_size": batch_size,
        "image_size": cfg.data.image_size,
    }


# Each measured training round of a full run lasts about ROUND_SECONDS: its step count follows
# from the time of a warm-up step, so no backbone needs an entry here (a slow one still gets
# MIN_STEPS steps).
ROUND_SECONDS = 4.0
MIN_STEPS = 6


def steps_per_round(step, warmup: int) -> int:
    """Steps that fill ROUND_SECONDS, from the time of the last of ``warmup`` steps (the first
    ones pay one-off costs)."""
    seconds = math.inf
    for _ in range(warmup):
        start = time.perf_counter()
        step()
        seconds = time.perf_counter() - start
    return max(MIN_STEPS, round(ROUND_SECONDS / seconds))


def inference_latency(backbone: torch.nn.Module, sizes: list[tuple[int, int]], repeats: int):
    """Median ms for one image, fast precision (bf16 autocast) and fp32, channels_last."""
    from hintcolor.utils.hardware import fast_precision

    backbone.eval().to(memory_format=torch.channels_last)
    fast = fast_precision("cpu")
    out = {}
    for h, w in sizes:
        x = torch.randn(1, 4, h, w).contiguous(memory_format=torch.channels_last)
        for name in (fast, "32-true"):
            with torch.inference_mode(), autocast(name):
                seconds = median_time(lambda x=x: backbone(x), repeats, warmup=3)
            out[f"{h}x{w} {'fp32' if name == '32-true' else 'bf16'}"] = seconds * 1000
    return out


def click_latency(backbone: torch.nn.Module, repeats: int, working_size: int = 256) -> float:
    """Median ms of the page's work for one settled preview (as /api/colorize times it): 10
    hints rendered, the network at the working size, the preview's raw RGBA. A Kodak photo."""
    import numpy as np
    from PIL import Image

    from hintcolor.app.encode import rgba_bytes
    from hintcolor.inference import Colorizer
    from hintcolor.user_hints import parse_hints

    colorizer = Colorizer(backbone, working_size=working_size)
    rgb = np.asarray(Image.open(sorted((ROOT / "data/kodak24/val").glob("*"))[0]).convert("RGB"))
    photo = colorizer.prepare(rgb)
    h, w = rgb.shape[:2]
    hints = parse_hints(
        [{"x": (i * 97) % w, "y": (i * 61) % h, "color": "#a06030"} for i in range(10)]
    )
    seconds = median_time(lambda: rgba_bytes(colorizer.preview(photo, hints)), repeats, 3)
    return seconds * 1000


def data_pipeline(cfg, size: int, images: int) -> dict[str, float]:
    """img/s of one worker (one thread): decode + augment, then Lab + hints on the batch."""
    from hydra.utils import instantiate

    from hintcolor.build import build_datamodule
    from hintcolor.data.datamodule import make_batch
    from hintcolor.data.dataset import collate_skip_failed

    torch.set_num_threads(1)
    cfg = copy.deepcopy(cfg)
    cfg.data.image_size = size
    cfg.data.cache_images = False  # what a worker costs when it decodes (data=folder)
    datamodule = build_datamodule(cfg.data, cfg.hints)
    datamodule.setup("fit")
    dataset = datamodule.datasets["train"]
    n = min(images, len(dataset))
    start = time.perf_counter()
    samples = [dataset[i] for i in range(n)]
    decode = time.perf_counter() - start
    rgb, _ = collate_skip_failed(samples)
    simulator = instantiate(cfg.hints)
    start = time.perf_counter()
    for i in range(0, n, cfg.data.batch_size):
        make_batch(rgb[i : i + cfg.data.batch_size], simulator)
    lab_hints = time.perf_counter() - start
    return {"decode_augment_img_s": n / decode, "per_worker_img_s": n / (decode + lab_hints)}


def lab_hints_stage(size: int, batch: int, repeats: int) -> float:
    """img/s of Lab conversion + hint simulation alone, measured as the peer anchor was:
    batch 16, 2 threads, geometric p = 1/8, patch sizes 1..9, images in memory."""
    from hintcolor.data import Zhang17Hints
    from hintcolor.data.datamodule import make_batch

    torch.set_num_threads(2)
    simulator = Zhang17Hints(p=0.125, patch_sizes=list(range(1, 10)))
    rgb = torch.randint(0, 256, (batch, 3, size, size), dtype=torch.uint8)
    seconds = median_time(lambda: make_batch(rgb, simulator), repeats, warmup=3)
    return batch / seconds


def worker(task: str, backbone_name: str, quick: bool, extra: list[str]) -> dict[str, Any]:
    size = 64 if quick else 128
    overrides = [
        f"model={backbone_name}",
        "logger=none",
        "callbacks=none",
        "+trainer.enable_checkpointing=false",
        "+trainer.enable_progress_bar=false",
        "+trainer.enable_model_summary=false",
        "+trainer.limit_val_batches=0",
        "+trainer.num_sanity_val_steps=0",
        f"data.image_size={size}",
        f"paths.output_dir={tempfile.mkdtemp(prefix='hintcolor-bench-')}",  # nothing is kept
    ]
    if quick:  # the regression test: tiny models, a few steps
        overrides += ["data.batch_size=2", "data.num_workers=0", "data.train_repeats=2"]
        overrides += quick_overrides(backbone_name)
    cfg = compose(overrides + extra)
    from hintcolor.build import build_backbone

    if task == "train":
        steps, rounds, warmup = (2, 1, 1) if quick else (None, 3, 3)
        result = training_throughput(cfg, steps, rounds, warmup)
    elif task == "static":
        backbone = build_backbone(cfg)
        result = {
            "params": sum(p.numel() for p in backbone.parameters()),
            "flops": {s: flops(backbone, s) for s in ((32, 64) if quick else (128, 256))},
            "stride": backbone.stride,
        }
    elif task == "infer":
        sizes = [(64, 64), (64, 96)] if quick else [(256, 256), (512, 768)]
        backbone = build_backbone(cfg)
        result = inference_latency(backbone, sizes, 3 if quick else 20)
        result["click"] = click_latency(backbone, 3 if quick else 20, 64 if quick else 256)
    elif task == "machine":
        result = {
            "matmul_gflops": matmul_peak(256 if quick else 4096, 3 if quick else 10),
            "data": {
                s: data_pipeline(cfg, s, 8 if quick else 96)
                for s in ((64,) if quick else (128, 256))
            },
            "lab_hints": {
                s: lab_hints_stage(s, 16, 3 if quick else 20)
                for s in ((64,) if quick else (128, 256))
            },
        }
    else:
        raise SystemExit(f"unknown task {task}")
    result["peak_rss_mb"] = peak_rss_mb()
    return result


# what each hint prior costs in training, measured on the first backbone
PRIORS = ("none", "push_pull", "guided")


# ---- orchestration ---------------------------------------------------------------------------


def run_worker(task: str, backbone: str, quick: bool, extra: list[str]) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--worker", task, "--backbones", backbone]
    cmd += ["--quick"] if quick else []
    cmd += [f"--set={o}" for o in extra]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    if proc.returncode != 0:
        raise SystemExit(f"bench {task} {backbone} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def markdown(results: dict[str, Any]) -> str:
    m = results["machine"]
    peak = m["matmul_gflops"]
    bf16 = results["bf16_native"]
    peak_name = "bf16" if bf16 else "fp32"
    lines = [
        f"Machine: {results['cpu']}, {results['cores']} cores, torch {results['torch']}; "
        f"{results['date']}; `{results['command']}`.",
        f"Matmul peak (4096x4096): fp32 {peak['fp32']:.0f} GFLOP/s, bf16 {peak['bf16']:.0f} "
        f"GFLOP/s. Training precision: {results['backbones'][0]['train']['precision']}.",
        "",
        "| backbone | params (M) | fwd GFLOP/img 128 / 256 | train GFLOP/img 128 / 256 | "
        "framework img/s | bare loop img/s | ratio | achieved GFLOP/s | of "
        f"{peak_name} peak | train RSS (MB) |",
        "| --- |" + " --- |" * 9,
    ]
    for b in results["backbones"]:
        sizes = sorted(b["static"]["flops"], key=int)
        fwd = " / ".join(f"{b['static']['flops'][s]['forward'] / 1e9:.2f}" for s in sizes)
        trn = " / ".join(f"{b['static']['flops'][s]['train'] / 1e9:.2f}" for s in sizes)
        t = b["train"]
        lines.append(
            f"| {b['name']} | {b['static']['params'] / 1e6:.2f} | {fwd} | {trn} | "
            f"{t['framework_img_s']:.1f} | {t['bare_img_s']:.1f} | {b['ratio']:.2f} | "
            f"{b['achieved_gflops']:.0f} | {b['efficiency'] * 100:.0f} % | "
            f"{t['peak_rss_mb']:.0f} |"
        )
    latency_keys = list(results["backbones"][0]["infer"].keys() - {"peak_rss_mb", "click"})
    latency_keys.sort()
    lines += [
        "",
        "Inference, batch 1, all cores, median of 20 after warm-up (ms); page click = the "
        "server work of one settled preview on `make app` (10 hints, network at 256 px in the "
        "fast precision, raw RGBA):",
        "",
        "| backbone | " + " | ".join(latency_keys) + " | page click, 256 px preview "
        "| inference RSS (MB) |",
        "| --- |" + " --- |" * (len(latency_keys) + 2),
    ]
    for b in results["backbones"]:
        cells = " | ".join(f"{b['infer'][k]:.1f}" for k in latency_keys)
        click = b["infer"]["click"]
        lines.append(f"| {b['name']} | {cells} | {click:.1f} | {b['infer']['peak_rss_mb']:.0f} |")
    lines += [
        "",
        "Data pipeline, one worker (one thread), default augmentation, photos decoded from "
        "file (no `cache_images`); Lab + hints alone at "
        "batch 16, 2 threads, p = 1/8, patches 1..9 (peer: the original colorization-pytorch "
        "code on this machine):",
        "",
        "| size | decode + augment img/s | whole pipeline img/s per worker | Lab + hints img/s "
        "| peer Lab + hints img/s |",
        "| --- | --- | --- | --- | --- |",
    ]
    for size, d in m["data"].items():
        peer = PEER_LAB_HINTS.get(int(size))
        lines.append(
            f"| {size} | {d['decode_augment_img_s']:.0f} | {d['per_worker_img_s']:.0f} | "
            f"{m['lab_hints'][size]:.0f} | {peer if peer else '-'} |"
        )
    if results.get("priors"):
        name = results["backbones"][0]["name"]
        lines += [
            "",
            f"Training cost of the hint prior ({name}, same measurement as above):",
            "",
            "| hint_prior | framework img/s | bare loop img/s |",
            "| --- | --- | --- |",
        ]
        for p in results["priors"]:
            lines.append(
                f"| {p['hint_prior']} | {p['framework_img_s']:.1f} | {p['bare_img_s']:.1f} |"
            )
    if results.get("page"):
        lines += ["", "The page, as `make bench-app` measures it (its first table):", ""]
        lines += click_lines(results["page"])
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--backbones",
        default=",".join(compared_backbones()),
        help="comma-separated model options (default: the compared backbones of conf/model/)",
    )
    parser.add_argument("--out", type=Path, default=ROOT / "logs" / "bench")
    parser.add_argument("--quick", action="store_true", help="tiny models, a few steps (tests)")
    parser.add_argument("--readme", type=Path, help="update this file's bench block")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a training config override for every measurement, e.g. --set data.num_workers=1",
    )
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.backbones, args.quick, args.set)))
        return

    from hintcolor.utils.hardware import cpu_has_native_bf16

    names = args.backbones.split(",")
    results: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d"),
        "command": " ".join(["make bench", *(f"--set {o}" for o in args.set)]),
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "torch": torch.__version__,
        "bf16_native": cpu_has_native_bf16(),
        "machine": run_worker("machine", names[0], args.quick, args.set),
        "backbones": [],
    }
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                results["cpu"] = line.split(":", 1)[1].strip()
                break
    peak = results["machine"]["matmul_gflops"]["bf16" if results["bf16_native"] else "fp32"]
    for name in names:
        entry = {"name": name}
        for task in ("static", "train", "infer"):
            print(f"{name}: {task} ...", flush=True)
            entry[task] = run_worker(task, name, args.quick, args.set)
        train_flops = entry["static"]["flops"][str(entry["train"]["image_size"])]["train"]
        entry["ratio"] = entry["train"]["framework_img_s"] / entry["train"]["bare_img_s"]
        entry["achieved_gflops"] = train_flops * entry["train"]["framework_img_s"] / 1e9
        entry["efficiency"] = entry["achieved_gflops"] / peak
        results["backbones"].append(entry)
    results["priors"] = []
    for prior in PRIORS:
        print(f"{names[0]} with hint_prior={prior}: train ...", flush=True)
        train = run_worker("train", names[0], args.quick, [*args.set, f"hint_prior={prior}"])
        results["priors"].append({"hint_prior": prior, **train})

    if shutil.which("chromium") or shutil.which("chromium-browser"):
        print("page clicks in headless Chromium (scripts/bench_app.py) ...", flush=True)
        results["page"] = measure_page(clicks=3 if args.quick else 30)
    publish(markdown(results), results, args.out, "bench", args.readme, "bench")


if __name__ == "__main__":
    main()
