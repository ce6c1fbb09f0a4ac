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
from hintcolor.callbacks import EpochSeed, LastCheckpoint, time_limit
from hintcolor.checkpoints import check_weights_fit, load_network_weights, read_checkpoint
from hintcolor.config import ConfigError, check_train_config
from hintcolor.data import ColorizationDataModule
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
    # quietly: a configuration error below should be the only line the user sees
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    loggers: list[Logger] = []
    try:
        backbone = build_backbone(cfg)
        check_train_config(cfg, backbone.stride)
        if cfg.get("init_from"):
            log.info(load_network_weights(backbone, cfg.init_from))
        module = build_module(cfg, backbone)
        datamodule = prepared_data(cfg)
        if cfg.get("ckpt_path") and cfg.get("train", True):
            check_resume_checkpoint(cfg.ckpt_path, module)
        callbacks = [
            *build_callbacks(cfg),
            *pruning_callbacks(cfg, monitor="val/psnr"),
            EpochSeed(cfg.seed),
        ]
        loggers = build_loggers(cfg)
        trainer = build_trainer(cfg.trainer, callbacks, loggers)
    except (ConfigError, InstantiationException, OSError, ValueError, TypeError) as exc:
        finish_runs(loggers, "failed")
        raise as_config_error(exc) from exc

    with tracked_runs(trainer.loggers) as outcome:
        metadata = run_metadata(backbone, trainer, cfg.paths.root_dir)
        for logger in trainer.loggers:
            logger.log_hyperparams({**plain(cfg), **metadata})
        log.info(
            f"backbone {cfg.model.name}: {metadata['model_size']['params'] / 1e6:.2f} M parameters"
        )
        log.info(
            f"seed {cfg.seed}, precision {trainer.precision}, channels_last={cfg.channels_last}"
        )

        if cfg.get("train", True):
            trainer.fit(module, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"))
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}

        if cfg.get("test", False):
            best = _checkpoint(trainer, "best_model_path")
            if best is None:
                log.warning("no best checkpoint; testing the current weights")
            trainer.test(module, datamodule=datamodule, ckpt_path=best)
            metrics.update({k: float(v) for k, v in trainer.callback_metrics.items()})

        state, ending = describe_ending(trainer) if cfg.get("train", True) else ("complete", "")
        outcome["state"] = state
        _report(trainer, metrics, ending)
    return metrics


def prepared_data(cfg: DictConfig) -> ColorizationDataModule:
    """The run's data module, its photos vetted (an empty folder fails here, before any
    training) and the splits the run needs present."""
    datamodule = build_datamodule(cfg.data, cfg.hints, cfg.get("eval_hints"))
    datamodule.prepare_data()
    datamodule.setup("fit")
    if cfg.get("train", True) and not {"train", "val"} <= datamodule.datasets.keys():
        raise ConfigError(
            "training needs data.train_dir and data.val_dir (or data.root with train and "
            "val fractions); val/psnr selects the best checkpoint"
        )
    if cfg.get("test") and "test" not in datamodule.datasets:
        raise ConfigError("test=true needs test data: set data.test_dir (or data.root)")
    return datamodule


def check_resume_checkpoint(path: str, module: L.LightningModule) -> None:
    """A checkpoint to resume from: readable, safe, and of the model being trained - one line
    otherwise, before any training starts (not a 50-line traceback from inside Lightning)."""
    ckpt = read_checkpoint(path, check_config=False)
    check_weights_fit(module.backbone, ckpt["state_dict"], path, prefix="backbone.")
    if "loops" not in ckpt or "optimizer_states" not in ckpt:
        raise ConfigError(f"{path} holds weights only: training cannot resume from it")


def describe_ending(trainer: L.Trainer) -> tuple[str, str]:
    """(tracker final state, one sentence) for how training ended."""
    done, total = trainer.current_epoch, trainer.max_epochs
    lr = _learning_rate(trainer)
    lr_note = f"; final learning rate {lr:.3g}" if lr is not None else ""
    timer = time_limit(trainer)
    out_of_time = timer is not None and (timer.time_remaining() or 0.0) <= 0
    if trainer.max_steps > 0 and trainer.global_step >= trainer.max_steps:
        return "complete", f"completed {trainer.max_steps} steps{lr_note}"
    if total is not None and total > 0 and done >= total:
        return "complete", f"completed {total} epochs{lr_note}"
    if out_of_time:
        of_total = f" of {total}" if total and total > 0 else ""
        return (
            "time_limit",
            f"stopped at the time limit after {done}{of_total} epochs (step "
            f"{trainer.global_step}){lr_note}",
        )
    return "stopped", f"stopped early after {done} epochs (step {trainer.global_step}){lr_note}"


def _learning_rate(trainer: L.Trainer) -> float | None:
    if not trainer.optimizers:
        return None
    return float(trainer.optimizers[0].param_groups[0]["lr"])


def _checkpoint(trainer: L.Trainer, attr: str) -> str | None:
    cb = trainer.checkpoint_callback
    path = getattr(cb, attr, "") if isinstance(cb, ModelCheckpoint) else ""
    return path or None


def _report(trainer: L.Trainer, metrics: dict[str, Any], ending: str) -> None:
    lines = [f"run finished: {ending}" if ending else "run finished"]
    best = _checkpoint(trainer, "best_model_path")
    if best:
        lines.append(f"  best checkpoint: {best}")
    for cb in trainer.callbacks:
        if isinstance(cb, LastCheckpoint) and cb.path.is_file():
            lines.append(f"  last checkpoint: {cb.path} (resume: ckpt_path={cb.path})")
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
