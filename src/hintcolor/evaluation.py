"""What ``src/eval.py`` does: PSNR/SSIM at fixed hint counts, model vs non-learned references.

Protocol (Zhang et al. 2017): images resized (shorter side) and centre-cropped to 256x256;
for each k, k patches of 6x6 at clipped-Gaussian locations carrying the patch's mean ab,
drawn with a generator seeded per image, so every method and every run sees the same hints
(conf/hints/fixed.yaml). Every metric of :mod:`hintcolor.metrics` is computed per image on RGB
in [0, 1], then averaged over images.

:func:`evaluate` reads the images (:func:`eval_loader`), scores them (:func:`score_images`),
aggregates (:func:`summarize`) and reports (:func:`write_results`, :func:`log_results`).
"""

from __future__ import annotations

import csv
import json
import logging
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import torch
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
from torch.utils.data import DataLoader

from hintcolor import levin
from hintcolor.baselines import gray_baseline, idw_baseline, levin_baseline
from hintcolor.build import build_datamodule, build_loggers, plain
from hintcolor.checkpoints import checkpoint_to_use, load_backbone
from hintcolor.config import ConfigError, ParameterError
from hintcolor.data.color import normalized_lab_to_rgb, rgb_uint8_to_normalized_lab
from hintcolor.data.hints import FixedHints, Hints, model_input
from hintcolor.metrics import METRICS, ImageScorer, Metric
from hintcolor.models.hint_prior import push_pull
from hintcolor.precision import autocast
from hintcolor.tracking import tracked_runs
from hintcolor.utils.memory import release_free_memory
from hintcolor.utils.progress import ProgressLog

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
        # the clock starts here; off a terminal the lines come from a ProgressLog
        every = {"every_percent": self.every_percent, "every_s": self.every_s}
        self._lines = ProgressLog(log, self.total, "evaluated", "images", clock=self.clock, **every)
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
        else:
            self._lines.advance(n)


def _hint_laws(cfg: DictConfig) -> dict[int, FixedHints]:
    """The protocol's hints per k (conf/hints/fixed.yaml at each of ``hint_counts``), built up
    front: a bad k, patch size or location fails before the evaluation starts, as one line
    naming the eval config key."""
    law = cfg.hints
    try:
        return {
            k: FixedHints(k=k, patch_size=law.patch_size, location=law.location, seed=law.seed)
            for k in cfg.hint_counts
        }
    except ParameterError as exc:
        if exc.key == "k":
            raise ConfigError(f"hint_counts must be {exc.allowed}, got {exc.value!r}") from None
        raise ConfigError(str(exc)) from None  # names hints.<key>


@dataclass
class Protocol:
    """What every image is scored at: the eval config's hint laws and references, checked."""

    hint_laws: dict[int, FixedHints]  # in hint_counts order
    references: tuple[str, ...]
    idw_power: float
    guided_sweeps: int

    @classmethod
    def from_config(cls, cfg: DictConfig) -> Protocol:
        return cls(_hint_laws(cfg), _references(cfg), cfg.idw_power, cfg.guided_sweeps)

    @property
    def first_k(self) -> int:
        return next(iter(self.hint_laws))


@dataclass
class Network:
    """The checkpoint's backbone as the evaluation runs it."""

    backbone: torch.nn.Module
    device: torch.device
    precision: str  # a precision setting (hintcolor.precision): auto, bf16-mixed, 32-true...
    channels_last: bool

    def __call__(self, x: Tensor) -> Tensor:
        """Normalised ab (B, 2, H, W), float32, of the model input ``x``."""
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with autocast(self.precision, self.device):
            return self.backbone(x).float()


def load_network(ckpt_path: Path, precision: str) -> tuple[Network, DictConfig]:
    """The checkpoint's backbone on the GPU when there is one, and its training config."""
    backbone, train_cfg = load_backbone(ckpt_path)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    backbone.to(device)
    channels_last = bool(train_cfg.get("channels_last"))
    if channels_last:
        backbone.to(memory_format=torch.channels_last)
    return Network(backbone, device, precision, channels_last), train_cfg


def eval_loader(cfg: DictConfig) -> tuple[DataLoader, str]:
    """The images to score, at the protocol's size: the data config's ``split`` (``auto``: its
    test set when it has one, else its validation set); and that split's name."""
    with open_dict(cfg):  # in place: the data config's interpolations resolve against cfg
        cfg.data.image_size = cfg.image_size
        cfg.data.eval_batch_size = cfg.batch_size
    # the data module's own hint law goes unused: the loop renders each k's hints itself
    datamodule = build_datamodule(cfg.data, cfg.hints)
    datamodule.setup("test")
    split = cfg.split
    if split == "auto":
        split = "test" if "test" in datamodule.datasets else "val"
    return datamodule.dataloader(split), split


@torch.inference_mode()
def evaluate(cfg: DictConfig, output_dir: str | Path) -> dict[str, Any]:
    """Run the protocol; write CSV, JSON, Markdown and a PNG plot into ``output_dir``."""
    ckpt_path, which = checkpoint_to_use(cfg.get("ckpt_path"), cfg.paths.shipped_model)
    log.info(which)
    protocol = Protocol.from_config(cfg)  # a bad setting fails before the model loads
    network, train_cfg = load_network(ckpt_path, cfg.get("precision", "auto"))
    loader, split = eval_loader(cfg)
    n_images = len(loader.dataset) if cfg.limit is None else min(cfg.limit, len(loader.dataset))
    log.info(f"evaluating {ckpt_path} on {n_images} {split} images, k = {list(cfg.hint_counts)}")
    progress = EvalProgress(
        n_images, cfg.get("progress_every_percent", 10), cfg.get("progress_every_s", 30)
    )
    scores, seen = score_images(loader, network, protocol, cfg.limit, progress)
    if "levin" in protocol.references:
        _log_levin_stats()
    result = {
        "checkpoint": str(ckpt_path),
        "model": train_cfg.model.name,
        "split": split,
        "images": seen,
        "protocol": _protocol_record(cfg, protocol),
        "rows": summarize(scores, protocol),
    }
    write_results(result, Path(output_dir))
    log_results(result, train_cfg, build_loggers(cfg), Path(output_dir))
    return result


# (method, k) -> metric name -> per-image values, a tensor per batch
Scores = dict[tuple[str, int], dict[str, list[Tensor]]]


def score_images(
    loader: DataLoader,
    network: Network,
    protocol: Protocol,
    limit: int | None,
    progress: EvalProgress,
) -> tuple[Scores, int]:
    """Every method's per-image metrics at every k on the first ``limit`` images (None: all),
    and how many images that was."""
    scores: Scores = defaultdict(lambda: defaultdict(list))
    seen = 0
    with progress:
        for batch in loader:
            if batch is None:  # every photo of the batch failed to load
                continue
            if limit is not None and seen >= limit:
                break
            rgb_u8, indices = batch
            if limit is not None:
                rgb_u8, indices = rgb_u8[: limit - seen], indices[: limit - seen]
            _score_batch(rgb_u8.to(network.device), indices, network, protocol, scores)
            release_free_memory()  # else the heap fragments: 24 GB after 312 photos
            seen += len(rgb_u8)
            progress.advance(len(rgb_u8))
    return scores, seen


def _score_batch(
    rgb_u8: Tensor, indices: Tensor, network: Network, protocol: Protocol, scores: Scores
) -> None:
    """Score the model and the references at every k on one batch, into ``scores``."""
    l_norm, ab = rgb_uint8_to_normalized_lab(rgb_u8)
    scorer = ImageScorer(rgb_u8.float() / 255.0)  # the truth's SSIM statistics: once
    # Levin's affinities depend on the image only: computed once for all k
    weights = None
    if "levin" in protocol.references:
        weights = levin.levin_weights(levin.luma_from_l(l_norm.double())).float()
    for k, law in protocol.hint_laws.items():
        hints = law(ab, indices)
        preds = {"model": network(model_input(l_norm, hints))}
        preds |= _reference_predictions(protocol, l_norm, hints, weights, k == protocol.first_k)
        for method, pred_ab in preds.items():
            rgb = normalized_lab_to_rgb(l_norm, pred_ab).clamp(0, 1)
            for metric in METRICS:
                scores[(method, k)][metric.name].append(metric.per_image(scorer, rgb).cpu())


def _reference_predictions(
    protocol: Protocol,
    l_norm: Tensor,
    hints: Hints,
    levin_weights: Tensor | None,
    with_gray: bool,
) -> dict[str, Tensor]:
    """Each configured reference's ab from ``hints``; gray only ``with_gray`` (it ignores
    the hints, so it is scored at the first k only)."""
    refs, preds = protocol.references, {}
    if "idw" in refs:
        preds["idw"] = idw_baseline(hints, tuple(hints.ab.shape), protocol.idw_power)
    if "push_pull" in refs:
        preds["push_pull"] = push_pull(hints.ab, hints.mask)
    if "guided" in refs:
        luma = l_norm + 0.5  # normalised L in [-0.5, 0.5] -> [0, 1]
        preds["guided"] = push_pull(
            hints.ab, hints.mask, luma=luma, edge_sweeps=protocol.guided_sweeps
        )
    if "levin" in refs:
        preds["levin"] = levin_baseline(l_norm, hints, levin_weights)
    if "gray" in refs and with_gray:
        preds["gray"] = gray_baseline(l_norm)
    return preds


def _log_levin_stats() -> None:
    st = levin.stats
    log.info(
        f"levin: {st['systems']} systems solved, "
        f"{st['iterations'] / max(st['systems'], 1):.1f} iterations on average, "
        f"{st['fallbacks']} fell back to the direct solver"
    )


def summarize(scores: Scores, protocol: Protocol) -> list[dict[str, Any]]:
    """One row per (method, k): each metric's mean over the images (and its spread where the
    metric asks for it), in method then k order."""
    if "gray" in protocol.references:  # scored at the first k only: the same at every k
        for k in list(protocol.hint_laws)[1:]:
            scores[("gray", k)] = scores[("gray", protocol.first_k)]
    rows = []
    for (method, k), values in scores.items():
        row: dict[str, Any] = {"method": method, "k": int(k)}
        for metric in METRICS:
            per_image = torch.cat(values[metric.name])
            row[metric.name] = float(per_image.mean())
            if metric.spread:
                spread = float(per_image.std()) if per_image.numel() > 1 else 0.0
                row[f"{metric.name}_std"] = spread
        row["n_images"] = int(per_image.numel())
        rows.append(row)
    return sorted(rows, key=lambda r: (METHODS.index(r["method"]), r["k"]))


def _protocol_record(cfg: DictConfig, protocol: Protocol) -> dict[str, Any]:
    """The settings a result was measured with (its JSON's ``protocol``)."""
    return {
        "image_size": cfg.image_size,
        "patch_size": cfg.hints.patch_size,
        "location": cfg.hints.location,
        "seed": cfg.hints.seed,
        "hint_counts": list(cfg.hint_counts),
        "idw_power": protocol.idw_power,
        "references": list(protocol.references),
    }


def log_results(
    result: dict[str, Any], train_cfg: DictConfig, loggers: list[Logger], out: Path
) -> None:
    """PSNR@k to the configured loggers: metrics everywhere, and in W&B the table and plot.

    The run's config holds the checkpoint's training config, so evaluations compare in W&B
    by model, learning rate, ... like training runs (``logger.wandb.id=`` appends to a run).
    """
    if not loggers:
        return
    metrics = {
        f"eval/{r['method']}/{m.name}@{r['k']}": r[m.name] for m in METRICS for r in result["rows"]
    }
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


def markdown_table(rows: list[dict[str, Any]], metric: Metric) -> str:
    """``metric`` of every method (rows) at every k (columns)."""
    ks = sorted({r["k"] for r in rows})
    methods = [m for m in METHODS if any(r["method"] == m for r in rows)]
    value = {(r["method"], r["k"]): r[metric.name] for r in rows}
    head = f"| {metric.title} | " + " | ".join(f"k={k}" for k in ks) + " |"
    lines = [head, "|" + " --- |" * (len(ks) + 1)]
    for m in methods:
        cells = " | ".join(f"{value[(m, k)]:.{metric.digits}f}" for k in ks)
        lines.append(f"| {m} | {cells} |")
    return "\n".join(lines)


def write_results(result: dict[str, Any], out: Path) -> None:
    """psnr_at_k.csv, .json, .md (a table per metric) and .png; the PSNR table to the console."""
    out.mkdir(parents=True, exist_ok=True)
    rows = result["rows"]
    with open(out / "psnr_at_k.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    (out / "psnr_at_k.json").write_text(json.dumps(result, indent=2))
    side = result["protocol"]["patch_size"]
    md = (
        f"Model `{result['model']}` ({result['checkpoint']}), {result['images']} images "
        f"({result['split']}), {result['protocol']['image_size']}px, "
        f"{side}x{side} hint patches.\n\n"
        + "\n\n".join(markdown_table(rows, metric) for metric in METRICS)
        + "\n"
    )
    (out / "psnr_at_k.md").write_text(md)
    _plot(rows, out / "psnr_at_k.png")
    _print_psnr_table(result)
    log.info(f"results: {out / 'psnr_at_k.md'} (and .csv, .json, .png)")


def _print_psnr_table(result: dict[str, Any]) -> None:
    rows = result["rows"]
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
