"""Turn a composed Hydra config into the objects of a run."""

from __future__ import annotations

import logging
from typing import Any

import lightning as L
import torch
from hydra.utils import get_class, instantiate
from lightning.pytorch import Callback
from lightning.pytorch.callbacks import LearningRateMonitor
from lightning.pytorch.loggers import Logger
from omegaconf import DictConfig, OmegaConf
from torch import nn

from hintcolor import precision
from hintcolor.config import ConfigError
from hintcolor.data import ColorizationDataModule
from hintcolor.models import ColorizationModule

log = logging.getLogger(__name__)


def plain(node: Any, resolve: bool = True) -> Any:
    """An OmegaConf node as plain dicts/lists (checkpoints load with ``weights_only``)."""
    if OmegaConf.is_config(node):
        return OmegaConf.to_container(node, resolve=resolve)
    return node


def build_backbone(cfg: DictConfig) -> nn.Module:
    """``cfg.model.backbone``, wrapped by ``cfg.hint_prior`` when one is set, then by
    ``cfg.color_head`` when one is set (the head reads the backbone's features of the
    prior-augmented input).

    A prior adds input channels, so the backbone is built with that many more. The backbone
    must keep the contract of :mod:`hintcolor.models.backbones` (``stride`` is checked here).
    """
    prior_cfg, name = cfg.get("hint_prior"), cfg.model.get("name", "?")
    if not prior_cfg:
        network = check_backbone(instantiate(cfg.model.backbone), name)
    else:
        extra = get_class(prior_cfg._target_).extra_channels
        in_channels = cfg.model.backbone.in_channels + extra
        backbone = instantiate(cfg.model.backbone, in_channels=in_channels)
        network = instantiate(prior_cfg, backbone=check_backbone(backbone, name))
    head_cfg = cfg.get("color_head")
    return instantiate(head_cfg, network=network) if head_cfg else network


def check_backbone(backbone: nn.Module, name: str) -> nn.Module:
    """``backbone``, once it has a ``stride`` (an int >= 1: its total downsampling), which
    the hint prior, the colour head, the config check and export read."""
    stride = getattr(backbone, "stride", None)
    if isinstance(stride, bool) or not isinstance(stride, int) or stride < 1:
        raise ConfigError(
            f"model={name}: {type(backbone).__name__} has no valid `stride` (got {stride!r}); "
            "a backbone sets its total downsampling as an int >= 1 (the contract in "
            "src/hintcolor/models/backbones/__init__.py)"
        )
    return backbone


def build_module(cfg: DictConfig, backbone: nn.Module) -> ColorizationModule:
    return ColorizationModule(
        backbone=backbone,
        loss=plain(cfg.loss),
        optimizer=plain(cfg.optimizer),
        scheduler=plain(cfg.get("scheduler")),
        channels_last=bool(cfg.get("channels_last", False)),
        freeze_backbone=bool(cfg.get("freeze_backbone", False)),
        config=plain(cfg),
    )


def build_datamodule(
    data_cfg: DictConfig, hints_cfg: DictConfig, eval_hints_cfg: DictConfig | None = None
) -> ColorizationDataModule:
    """``eval_hints_cfg`` None: validation and test use the training hint law."""
    eval_hints = instantiate(eval_hints_cfg) if eval_hints_cfg else None
    return instantiate(data_cfg, hints=instantiate(hints_cfg), eval_hints=eval_hints)


def build_callbacks(cfg: DictConfig) -> list[Callback]:
    callbacks = [instantiate(c) for c in (cfg.get("callbacks") or {}).values() if c is not None]
    if not cfg.get("logger"):  # Lightning refuses a learning-rate monitor without a logger
        callbacks = [c for c in callbacks if not isinstance(c, LearningRateMonitor)]
    return callbacks


def build_loggers(cfg: DictConfig) -> list[Logger]:
    """The configured loggers; a tracker that could not start (None) is left out."""
    loggers = [instantiate(c) for c in (cfg.get("logger") or {}).values() if c is not None]
    return [logger for logger in loggers if logger is not None]


def resolve_precision(trainer_cfg: DictConfig) -> str | int:
    """The trainer's Lightning precision (``auto``: the fastest safe one on its accelerator)."""
    return precision.resolve_precision(
        trainer_cfg.get("precision", "auto"), str(trainer_cfg.get("accelerator", "auto"))
    )


def build_trainer(
    trainer_cfg: DictConfig, callbacks: list[Callback], loggers: list[Logger]
) -> L.Trainer:
    extra = {}
    on_gpu = trainer_cfg.get("accelerator") in ("auto", "gpu", "cuda") and torch.cuda.is_available()
    if trainer_cfg.get("sync_batchnorm") and not on_gpu:
        # torch's SyncBatchNorm is GPU-only; CPU (gloo) processes keep per-process statistics.
        log.warning("sync_batchnorm needs GPUs: disabled for this CPU run")
        extra["sync_batchnorm"] = False
    return instantiate(
        trainer_cfg,
        precision=resolve_precision(trainer_cfg),
        callbacks=callbacks,
        logger=loggers or False,
        **extra,
    )
