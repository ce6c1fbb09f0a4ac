"""Turn a composed Hydra config into the objects of a run."""

from __future__ import annotations

from typing import Any

import lightning as L
from hydra.utils import instantiate
from lightning.pytorch import Callback
from lightning.pytorch.loggers import Logger
from omegaconf import DictConfig, OmegaConf
from torch import nn

from hintcolor.data import ColorizationDataModule
from hintcolor.models import ColorizationModule
from hintcolor.utils.hardware import fast_precision


def plain(node: Any, resolve: bool = True) -> Any:
    """An OmegaConf node as plain dicts/lists (checkpoints load with ``weights_only``)."""
    if OmegaConf.is_config(node):
        return OmegaConf.to_container(node, resolve=resolve)
    return node


def build_backbone(model_cfg: DictConfig) -> nn.Module:
    return instantiate(model_cfg.backbone)


def build_module(cfg: DictConfig, backbone: nn.Module) -> ColorizationModule:
    return ColorizationModule(
        backbone=backbone,
        loss=plain(cfg.loss),
        optimizer=plain(cfg.optimizer),
        scheduler=plain(cfg.get("scheduler")),
        channels_last=bool(cfg.get("channels_last", False)),
        config=plain(cfg),
    )


def build_datamodule(data_cfg: DictConfig, hints_cfg: DictConfig) -> ColorizationDataModule:
    return instantiate(data_cfg, hints=instantiate(hints_cfg))


def build_callbacks(cfg: DictConfig) -> list[Callback]:
    return [instantiate(c) for c in (cfg.get("callbacks") or {}).values() if c is not None]


def build_loggers(cfg: DictConfig) -> list[Logger]:
    return [instantiate(c) for c in (cfg.get("logger") or {}).values() if c is not None]


def resolve_precision(trainer_cfg: DictConfig) -> str | int:
    precision = trainer_cfg.get("precision", "auto")
    if precision == "auto":
        return fast_precision(str(trainer_cfg.get("accelerator", "auto")))
    return precision


def build_trainer(
    trainer_cfg: DictConfig, callbacks: list[Callback], loggers: list[Logger]
) -> L.Trainer:
    return instantiate(
        trainer_cfg,
        precision=resolve_precision(trainer_cfg),
        callbacks=callbacks,
        logger=loggers or False,
    )
