"""What ``src/eval.py`` does: PSNR/SSIM at fixed hint counts, model vs non-learned references.

Protocol (Zhang et al. 2017): images resized (shorter side) and centre-cropped to 256x256;
for each k, k patches of 6x6 at clipped-Gaussian locations carrying the patch's mean ab,
drawn with a generator seeded per image, so every method and every run sees the same hints.
PSNR is computed per image on RGB in [0, 1], then averaged over images.
"""

from __future__ import annotations

import contextlib
import csv
import json
import logging
import time
from collections import defaultdict
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from types import TracebackType
from typing import Any

import torch
from hydra.utils import instantiate
from lightning.pytorch.loggers import Logger, WandbLogger
from omegaconf import DictConfig, open_dict
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from torch import Tensor

from hintcolor import levin
from hintcolor.baselines import gray_baseline, idw_baseline, levin_baseline
from hintcolor.build import build_loggers, plain
from hintcolor.checkpoints import checkpoint_to_use, load_backbone
from hintcolor.config import ConfigError, ParameterError
from hintcolor.data.color import normalized_lab_to_rgb, rgb_uint8_to_normalized_lab
from hintcolor.data.hints import FixedHints, model_input
from hintcolor.metrics import ImageScorer
from hintcolor.models.hint_prior import push_pull
from hintcolor.tracking import tracked_runs
from hintcolor.utils.hardware import fast_precision

log = logging.getLogger(__name__)

# guided: the edge-aware fill that hint_prior=guided gives its backbone, alone
METHODS = ("model", "gray", "idw", "push_pull", "guided", "levin")
REFERENCES = METHODS[1:]


def _references(cfg: DictConfig) -> tuple[str, ...]:
    """The non-learned references to score (eval config ``references``; default all)."""
    refs = tuple(cfg.get("references", REFERENCES))
    unknown = [r for r in refs if r not in REFERENCES]
    if unknown:
        raise ConfigError(f"references must be a subset of {list(REFERENCES)}, got {unknown}")
    return refs


def _duration(seconds: float) -> str:
    return str(timedelta(seconds=round(seconds)))


class EvalProgress:
    """Images done out of ``total``, with the time left.

    On a terminal a live bar; elsewhere (output to a file, a batch job, CI) a live bar
    prints nothing useful, so a plain log line every ``every_percent`` % of the images or
    every ``every_s`` seconds, whichever comes first.
    """

    def __init__(
        self,
        total: int,
        every_percent: float = 10.0,
        every_s: float = 30.0,
        terminal: bool | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.total = max(total, 1)
        self.every_percent = every_percent
        self.every_s = every_s
        self.clock = clock
        self.done = 0
        console = Console(stderr=True)
        self.terminal = console.is_terminal if terminal is None else terminal
        self._bar: Progress | None = None
        if self.terminal:
            self._bar = Progress(
                TextColumn("evaluating"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("images"),
                TimeElapsedColumn(),
                TextColumn("ETA"),
                TimeRemainingColumn(),
                console=console,
            )
            self._task = self._bar.add_task("eval", total=self.total)

    def __enter__(self) -> EvalProgress:
        self.start = self._last_line = self.clock()
        self._next_percent = self.every_percent
        if self._bar is not None:
            self._bar.start()
        return self

    def __exit__(
        self, kind: type | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._bar is not None:
            self._bar.stop()

    def advance(self, n: int) -> None:
        self.done += n
        if self._bar is not None:
            self._bar.update(self._task, completed=self.done)
            return
        now = self.clock()
        percent = 100.0 * self.done / self.total
        if percent >= self._next_percent or now - self._last_line >= self.every_s:
            self._last_line = now
            while self._next_percent <= percent:
                self._next_percent += self.every_percent
            log.info(self.line(now))

    def line(self, now: float) -> str:
        elapsed = now - self.start
        left = elapsed / self.done * (self.total - self.done) if self.done else float("nan")
        eta = _duration(left) if self.done else "unknown"
        return (
            f"evaluated {self.done}/{self.total} images ({100 * self.done / self.total:.0f} %), "
            f"{_duration(elapsed)} elapsed, ETA {eta}"
        )


def _hint_laws(cfg: DictConfig) -> dict[int, FixedHints]:
    """The protocol's hints per k, built up front: a bad k, patch size or location fails
    before the evaluation starts, as one line naming the eval config key."""
    names = {"k": "hint_counts", "patch_size": "patch_size", "location": "location"}
    try:
        return {
            k: FixedHints(k=k, patch_size=cfg.patch_size, location=cfg.location, seed=cfg.seed)
            for k in cfg.hint_counts
        }
    except ParameterError as exc:
        key = names.get(exc.key, exc.key)
        raise ConfigError(f"{key} must be {exc.allowed}, got {exc.value!r}") from None


def _autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    if precision == "auto":
        precision = fast_precision(device.type)
    if precision.startswith("bf16"):
        return torch.autocast(device.type, dtype=torch.bfloat16)
    if precision.startswith("16"):
        return torch.autocast(device.type, dtype=torch.float16)
    return contextlib.nullcontext()


@torch.inference_mode()
def evaluate(cfg: DictConfig, output_dir: str | Path) -> dict[str, Any]:
    """Run the protocol; write CSV, JSON, Markdown and a PNG plot into ``output_dir``."""
    ckpt_path, which = checkpoint_to_use(cfg.get("ckpt_path"), cfg.paths.shipped_model)
    log.info(which)
    hint_laws = _hint_laws(cfg)
    references = _references(cfg)
    backbone, train_cfg = load_backbone(ckpt_path)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    backbone.to(device)
    if train_cfg.get("channels_last"):
        backbone.to(memory_format=torch.channels_last)

    with open_dict(cfg):
        cfg.data.image_size = cfg.image_size
        cfg.data.eval_batch_size = cfg.batch_size
    datamodule = instantiate(cfg.data, hints=FixedHints())
    datamodule.setup("test")
    split = cfg.split
    if split == "auto":
        split = "test" if "test" in datamodule.datasets else "val"
    loader = datamodule.dataloader(split)
    n_images = len(loader.dataset) if cfg.limit is None else min(cfg.limit, len(loader.dataset))
    log.info(f"evaluating {ckpt_path} on {n_images} {split} images, k = {list(cfg.hint_counts)}")

    scores: dict[tuple[str, int], dict[str, list[Tensor]]] = defaultdict(lambda: defaultdict(list))
    seen = 0
    progress = EvalProgress(
        n_images, cfg.get("progress_every_percent", 10), cfg.get("progress_every_s", 30)
    )
    with progress:
        for batch in loader:
            if batch is None:
                continue
            if cfg.limit is not None and seen >= cfg.limit:
                break
            n = _score_batch(
                batch, cfg, backbone, train_cfg, hint_laws, references, device, seen, scores
            )
            seen += n
            progress.advance(n)

    if "gray" in references:
        for k in cfg.hint_counts[1:]:
            scores[("gray", k)] = scores[("gray", cfg.hint_counts[0])]
    if "levin" in references:
        st = levin.stats
        log.info(
            f"levin: {st['systems']} systems solved, "
            f"{st['iterations'] / max(st['systems'], 1):.1f} iterations on average, "
            f"{st['fallbacks']} fell back to the direct solver"
        )
    rows = []
    for (method, k), values in scores.items():
        psnr = torch.cat(values["psnr"])
        ssim = torch.cat(values["ssim"])
        rows.append(
            {
                "method": method,
                "k": int(k),
                "psnr": float(psnr.mean()),
                "psnr_std": float(psnr.std()) if psnr.numel() > 1 else 0.0,
                "ssim": float(ssim.mean()),
                "n_images": int(psnr.numel()),
            }
        )
    rows.sort(key=lambda r: (METHODS.index(r["method"]), r["k"]))
    result = {
        "checkpoint": str(ckpt_path),
        "model": train_cfg.model.name,
        "split": split,
        "images": seen,
        "protocol": {
            "image_size": cfg.image_size,
            "patch_size": cfg.patch_size,
            "location": cfg.location,
            "seed": cfg.seed,
            "hint_counts": list(cfg.hint_counts),
            "idw_power": cfg.idw_power,
            "references": list(references),
        },
        "rows": rows,
    }
    write_results(result, Path(output_dir))
    log_results(result, train_cfg, build_loggers(cfg), Path(output_dir))
    return result


def _score_batch(
    batch: tuple[Tensor, Tensor],
    cfg: DictConfig,
    backbone: torch.nn.Module,
    train_cfg: DictConfig,
    hint_laws: dict[int, FixedHints],
    references: tuple[str, ...],
    device: torch.device,
    seen: int,
    scores: dict[tuple[str, int], dict[str, list[Tensor]]],
) -> int:
    """Score one batch at every k into ``scores``; returns how many images it scored."""
    rgb_u8, indices = batch
    if cfg.limit is not None:
        rgb_u8, indices = rgb_u8[: cfg.limit - seen], indices[: cfg.limit - seen]
    rgb_u8 = rgb_u8.to(device)
    l_norm, ab = rgb_uint8_to_normalized_lab(rgb_u8)
    scorer = ImageScorer(rgb_u8.float() / 255.0)  # the truth's SSIM statistics: once
    # Levin's affinities depend on the image only: computed once for all k
    weights = None
    if "levin" in references:
        weights = levin.levin_weights(levin.luma_from_l(l_norm.double())).float()
    for k in cfg.hint_counts:
        hints = hint_laws[k](ab, indices)
        x = model_input(l_norm, hints)
        if train_cfg.get("channels_last"):
            x = x.contiguous(memory_format=torch.channels_last)
        with _autocast(device, cfg.get("precision", "auto")):
            pred_model = backbone(x)
        preds = {"model": pred_model.float()}
        if "idw" in references:
            preds["idw"] = idw_baseline(hints, tuple(ab.shape), cfg.idw_power)
        if "push_pull" in references:
            preds["push_pull"] = push_pull(hints.ab, hints.mask)
        if "guided" in references:
            luma = l_norm + 0.5  # normalised L in [-0.5, 0.5] -> [0, 1]
            preds["guided"] = push_pull(
                hints.ab, hints.mask, luma=luma, edge_sweeps=cfg.guided_sweeps
            )
        if "levin" in references:
            preds["levin"] = levin_baseline(l_norm, hints, weights)
        if "gray" in references and k == cfg.hint_counts[0]:  # gray ignores the hints: once
            preds["gray"] = gray_baseline(l_norm)
        for method, pred_ab in preds.items():
            rgb = normalized_lab_to_rgb(l_norm, pred_ab).clamp(0, 1)
            scores[(method, k)]["psnr"].append(scorer.psnr(rgb).cpu())
            scores[(method, k)]["ssim"].append(scorer.ssim(rgb).cpu())
    return int(rgb_u8.shape[0])


def log_results(
    result: dict[str, Any], train_cfg: DictConfig, loggers: list[Logger], out: Path
) -> None:
    """PSNR@k to the configured loggers: metrics everywhere, and in W&B the table and plot.

    The run's config holds the checkpoint's training config, so evaluations compare in W&B
    by model, learning rate, ... like training runs (``logger.wandb.id=`` appends to a run).
    """
    if not loggers:
        return
    metrics = {f"eval/{r['method']}/psnr@{r['k']}": r["psnr"] for r in result["rows"]}
    metrics |= {f"eval/{r['method']}/ssim@{r['k']}": r["ssim"] for r in result["rows"]}
    info = {k: v for k, v in result.items() if k != "rows"}
    with tracked_runs(loggers):
        for logger in loggers:
            logger.log_hyperparams({"eval": info, **plain(train_cfg)})
            logger.log_metrics(metrics)
            if isinstance(logger, WandbLogger):
                columns = list(result["rows"][0])
                data = [[r[c] for c in columns] for r in result["rows"]]
                logger.log_table("eval/psnr_at_k", columns=columns, data=data)
                logger.log_image("eval/psnr_at_k_plot", [str(out / "psnr_at_k.png")])
            logger.save()


def markdown_table(rows: list[dict[str, Any]], metric: str, digits: int = 2) -> str:
    ks = sorted({r["k"] for r in rows})
    methods = [m for m in METHODS if any(r["method"] == m for r in rows)]
    value = {(r["method"], r["k"]): r[metric] for r in rows}
    head = f"| {metric.upper()} | " + " | ".join(f"k={k}" for k in ks) + " |"
    lines = [head, "|" + " --- |" * (len(ks) + 1)]
    for m in methods:
        cells = " | ".join(f"{value[(m, k)]:.{digits}f}" for k in ks)
        lines.append(f"| {m} | {cells} |")
    return "\n".join(lines)


def write_results(result: dict[str, Any], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    rows = result["rows"]
    with open(out / "psnr_at_k.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    (out / "psnr_at_k.json").write_text(json.dumps(result, indent=2))
    md = (
        f"Model `{result['model']}` ({result['checkpoint']}), {result['images']} images "
        f"({result['split']}), {result['protocol']['image_size']}px, "
        f"{result['protocol']['patch_size']}x{result['protocol']['patch_size']} hint patches.\n\n"
        + markdown_table(rows, "psnr")
        + "\n\n"
        + markdown_table(rows, "ssim", digits=4)
        + "\n"
    )
    (out / "psnr_at_k.md").write_text(md)
    _plot(rows, out / "psnr_at_k.png")

    table = Table(title=f"PSNR (dB) vs hints - {result['model']}, {result['images']} images")
    ks = sorted({r["k"] for r in rows})
    table.add_column("method")
    for k in ks:
        table.add_column(f"k={k}", justify="right")
    value = {(r["method"], r["k"]): r["psnr"] for r in rows}
    for m in METHODS:
        if any(r["method"] == m for r in rows):
            table.add_row(m, *(f"{value[(m, k)]:.2f}" for k in ks))
    Console(width=max(Console().width, 120)).print(table)
    log.info(f"results: {out / 'psnr_at_k.md'} (and .csv, .json, .png)")


def _plot(rows: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for m in METHODS:
        pts = sorted((r["k"], r["psnr"]) for r in rows if r["method"] == m)
        if not pts:
            continue
        # k=0 cannot sit on a log axis: plot it at 0.5 and label it.
        ax.plot([max(k, 0.5) for k, _ in pts], [p for _, p in pts], marker="o", label=m)
    ax.set_xscale("log")
    ax.set_xlabel("hints per image (k; 0 plotted at 0.5)")
    ax.set_ylabel("PSNR (dB)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
