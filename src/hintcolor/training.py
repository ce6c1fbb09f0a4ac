"""What ``src/train.py`` does: build a run from its config, fit, optionally test."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import lightning as L
from hydra.errors import InstantiationException
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger, Logger, WandbLogger
from omegaconf import DictConfig

from hintcolor.build import (
    build_backbone,
    build_callbacks,
    build_datamodule,
    build_loggers,
    build_module,
    build_trainer,
    plain,
)
from hintcolor.config import ConfigError, check_train_config
from hintcolor.tracking import finish_runs, run_metadata, tracked_runs
from hintcolor.tuning import pruning_callbacks

log = logging.getLogger(__name__)


def as_config_error(exc: Exception) -> ConfigError:
    """The root cause of a failed set-up as one line (Hydra wraps errors of ``_target_``s)."""
    while isinstance(exc, InstantiationException) and exc.__cause__ is not None:
        exc = exc.__cause__
    if isinstance(exc, InstantiationException):
        return ConfigError(str(exc).splitlines()[0])
    return exc if isinstance(exc, ConfigError) else ConfigError(f"{type(exc).__name__}: {exc}")


def train(cfg: DictConfig) -> dict[str, float]:
    """Fit (and test) as configured; returns the final metrics as floats."""
    L.seed_everything(cfg.seed, workers=True)
    loggers: list[Logger] = []
    try:
        backbone = build_backbone(cfg)
        check_train_config(cfg, getattr(backbone, "stride", 1))
        module = build_module(cfg, backbone)
        datamodule = build_datamodule(cfg.data, cfg.hints, cfg.get("eval_hints"))
        # Vet the photos now: an empty folder fails here, before any training.
        datamodule.prepare_data()
        datamodule.setup("fit")
        if cfg.get("train", True) and not {"train", "val"} <= datamodule.datasets.keys():
            raise ConfigError(
                "training needs data.train_dir and data.val_dir (or data.root with train and "
                "val fractions); val/psnr selects the best checkpoint"
            )
        if cfg.get("test") and "test" not in datamodule.datasets:
            raise ConfigError("test=true needs test data: set data.test_dir (or data.root)")
        callbacks = build_callbacks(cfg) + pruning_callbacks(cfg, monitor="val/psnr")
        loggers = build_loggers(cfg)
        trainer = build_trainer(cfg.trainer, callbacks, loggers)
    except (ConfigError, InstantiationException, OSError, ValueError, TypeError) as exc:
        finish_runs(loggers, "failed")
        raise as_config_error(exc) from exc

    with tracked_runs(trainer.loggers):
        metadata = run_metadata(backbone, trainer, cfg.paths.root_dir)
        for logger in trainer.loggers:
            logger.log_hyperparams({**plain(cfg), **metadata})
        log.info(
            f"backbone {cfg.model.name}: {metadata['model_size']['params'] / 1e6:.2f} M parameters"
        )
        log.info(f"precision {trainer.precision}, channels_last={cfg.channels_last}")

        if cfg.get("train", True):
            trainer.fit(module, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"))
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}

        if cfg.get("test", False):
            best = _checkpoint(trainer, "best_model_path")
            if best is None:
                log.warning("no best checkpoint; testing the current weights")
            trainer.test(module, datamodule=datamodule, ckpt_path=best)
            metrics.update({k: float(v) for k, v in trainer.callback_metrics.items()})

        _report(trainer, metrics)
    return metrics


def _checkpoint(trainer: L.Trainer, attr: str) -> str | None:
    cb = trainer.checkpoint_callback
    path = getattr(cb, attr, "") if isinstance(cb, ModelCheckpoint) else ""
    return path or None


def _report(trainer: L.Trainer, metrics: dict[str, Any]) -> None:
    lines = ["run finished"]
    for label in ("best", "last"):
        path = _checkpoint(trainer, f"{label}_model_path")
        if path:
            lines.append(f"  {label} checkpoint: {path}")
    for logger in trainer.loggers:
        if isinstance(logger, CSVLogger):
            lines.append(f"  metrics: {Path(logger.log_dir) / 'metrics.csv'}")
        elif isinstance(logger, WandbLogger) and logger._experiment is not None:
            run = logger.experiment
            if run.settings.mode == "online":
                lines.append(f"  W&B run: {run.url}")
            else:
                lines.append(f"  W&B run (offline): wandb sync {run.settings.sync_dir}")
    shown = [f"{k}={v:.4f}" for k, v in sorted(metrics.items()) if k.startswith(("val/", "test/"))]
    if shown:
        lines.append(f"  final: {', '.join(shown)}")
    log.info("\n".join(lines))
