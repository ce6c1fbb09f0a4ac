"""Training and inference speed of every backbone on whatever device torch sees (GPU or CPU).

    python scripts/bench_device.py [--backbones NAME,...] [--sizes 128,256]
                                   [--batch 32] [--out logs/bench/device]

A bare loop (forward, backward, Adam step on in-memory tensors shaped like real inputs: L,
sparse hints, mask), bf16 autocast where the device has it, channels_last: the ceiling a
training run can reach on that device, to compare backbones at equal wall-clock there (by
default the compared backbones of conf/model/, hintcolor.models.registry). It needs torch and
PyYAML only (backbones built from conf/model/*.yaml and conf/hint_prior/), so it runs on a bare
GPU machine without the rest of the stack.
"""

from __future__ import annotations

import argparse
import importlib
import json
import statistics
import sys
import time
import types
from pathlib import Path
from typing import Any

import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "hintcolor"


def import_backbones() -> None:
    """Make ``hintcolor.models.*`` importable without running the package __init__ files
    (they pull in Lightning, Hydra, kornia and albumentations, which this script does not need)."""
    for name, path in (("hintcolor", SRC), ("hintcolor.models", SRC / "models")):
        if name not in sys.modules:
            module = types.ModuleType(name)
            module.__path__ = [str(path)]
            sys.modules[name] = module


def build(name: str, hint_prior: str) -> torch.nn.Module:
    from hintcolor.models.registry import model_yaml

    cfg = model_yaml(name)["backbone"]
    module_name, cls_name = cfg.pop("_target_").rsplit(".", 1)
    prior = yaml.safe_load((ROOT / "conf" / "hint_prior" / f"{hint_prior}.yaml").read_text())
    if prior:
        wrapper_module, wrapper_name = prior["_target_"].rsplit(".", 1)
        wrapper = getattr(importlib.import_module(wrapper_module), wrapper_name)
        cfg["in_channels"] += wrapper.extra_channels
    backbone = getattr(importlib.import_module(module_name), cls_name)(**cfg)
    return wrapper(backbone) if prior else backbone


def fake_batch(batch: int, size: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    x = torch.zeros(batch, 4, size, size)
    x[:, 0] = torch.rand(batch, size, size, generator=g) - 0.5
    mask = (torch.rand(batch, 1, size, size, generator=g) < 0.01).float()
    x[:, 1:3] = (torch.rand(batch, 2, size, size, generator=g) - 0.5) * mask
    x[:, 3:4] = mask
    target = (torch.rand(batch, 2, size, size, generator=g) - 0.5) * 0.5
    layout = torch.channels_last
    return x.to(device).contiguous(memory_format=layout), target.to(device)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def measure(name: str, args: argparse.Namespace, device: torch.device) -> dict[str, Any]:
    torch.manual_seed(0)
    model = build(name, args.hint_prior).to(device).to(memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    bf16 = device.type == "cpu" or torch.cuda.is_bf16_supported()
    result: dict[str, Any] = {"name": name, "params": sum(p.numel() for p in model.parameters())}
    for size in args.sizes:
        x, target = fake_batch(args.batch, size, device)

        def step(x=x, target=target) -> None:
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                pred = model(x)
            loss = torch.nn.functional.smooth_l1_loss(pred.float(), target)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

        for _ in range(args.warmup):
            step()
        rounds = []
        for _ in range(args.rounds):
            sync(device)
            start = time.perf_counter()
            for _ in range(args.steps):
                step()
            sync(device)
            rounds.append(args.steps * args.batch / (time.perf_counter() - start))
        result[f"train_img_s_{size}"] = statistics.median(rounds)
    model.eval()
    x, _ = fake_batch(1, 256, device)
    times = []
    with torch.inference_mode(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
        for i in range(args.warmup + 20):
            sync(device)
            start = time.perf_counter()
            model(x)
            sync(device)
            if i >= args.warmup:
                times.append((time.perf_counter() - start) * 1000)
    result["infer_ms_256"] = statistics.median(times)
    return result


def main() -> None:
    import_backbones()
    from hintcolor.models.registry import compared_backbones

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbones", default=",".join(compared_backbones()))
    parser.add_argument("--hint-prior", default="push_pull")
    parser.add_argument("--sizes", default="128,256", type=lambda s: [int(v) for v in s.split(",")])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--out", type=Path, default=ROOT / "logs" / "bench" / "device")
    args = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    name = torch.cuda.get_device_name() if device.type == "cuda" else "CPU"
    results = {"device": name, "torch": torch.__version__, "batch": args.batch, "backbones": []}
    for backbone in args.backbones.split(","):
        results["backbones"].append(measure(backbone, args, device))
        print(json.dumps(results["backbones"][-1]), flush=True)
    lines = [
        f"{name}, torch {torch.__version__}, bare training loop, batch {args.batch}, bf16 "
        "autocast, channels_last "
        f"(median of {args.rounds} rounds):",
        "",
        "| backbone | params (M) | "
        + " | ".join(f"train img/s {s}" for s in args.sizes)
        + " | inference ms 256 (batch 1) |",
        "| --- | --- |" + " --- |" * (len(args.sizes) + 1),
    ]
    for b in results["backbones"]:
        cells = " | ".join(f"{b[f'train_img_s_{s}']:.0f}" for s in args.sizes)
        lines.append(
            f"| {b['name']} | {b['params'] / 1e6:.2f} | {cells} | {b['infer_ms_256']:.1f} |"
        )
    table = "\n".join(lines)
    print(table)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "device.md").write_text(table + "\n")
    (args.out / "device.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
