"""Checks that turn a bad configuration into one clear line before any training starts."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig


class ConfigError(ValueError):
    """A configuration that cannot work; the message names the setting."""


class ParameterError(ConfigError):
    """A component's parameter out of range, raised by the component's constructor.

    The component does not know under which config group it was built (``hints`` or
    ``eval_hints``), so the message names ``hints.<key>``; :meth:`under` renames the group.
    """

    def __init__(self, key: str, allowed: str, value: Any, group: str = "hints") -> None:
        self.key, self.allowed, self.value = key, allowed, value
        super().__init__(f"{group}.{key} must be {allowed}, got {value!r}")

    def under(self, group: str) -> ParameterError:
        return ParameterError(self.key, self.allowed, self.value, group)


def check_train_config(cfg: DictConfig, backbone_stride: int) -> None:
    _check_number("optimizer.lr", cfg.optimizer.get("lr"), "a positive number", lambda x: x > 0)
    if "weight_decay" in cfg.optimizer:
        decay = cfg.optimizer.weight_decay
        _check_number("optimizer.weight_decay", decay, "a number >= 0", lambda x: x >= 0)
    for key, low in (
        ("batch_size", 1),
        ("train_repeats", 1),
        ("num_workers", 0),
        ("max_pixels", 1),
    ):
        if key in cfg.data:
            _check_int(f"data.{key}", cfg.data[key], low)
    if cfg.get("train", True):
        check_trainer_limits(cfg.trainer)
    for group in ("hints", "eval_hints"):
        check_component(cfg, group)
    size = cfg.data.get("image_size")
    if not isinstance(size, int) or size < 1:
        raise ConfigError(f"data.image_size must be a positive integer, got {size!r}")
    if size < backbone_stride:
        raise ConfigError(
            f"data.image_size={size} is smaller than the {cfg.model.name} backbone's total "
            f"downsampling factor ({backbone_stride}); use at least {backbone_stride}"
        )
    check_ckpt_path(cfg.get("ckpt_path"), required=False)
    check_color_head_config(cfg)


def check_color_head_config(cfg: DictConfig) -> None:
    """The head's loss weight, ``freeze_backbone`` and ``init_from`` need what they act on."""
    weight = (cfg.get("loss") or {}).get("distribution", 0.0)
    if weight and not cfg.get("color_head"):
        raise ConfigError(
            f"loss.distribution={weight} trains a colour-distribution head, but none is "
            "configured: add color_head=default (or set loss.distribution=0)"
        )
    if cfg.get("freeze_backbone"):
        if not cfg.get("color_head"):
            raise ConfigError(
                "freeze_backbone=true leaves nothing to train without a colour-distribution "
                "head: add color_head=default"
            )
        if not weight:
            raise ConfigError(
                "freeze_backbone=true trains only the colour-distribution head, whose loss "
                "weight is 0: set loss.distribution=1"
            )
    init_from = cfg.get("init_from")
    if init_from is not None and not Path(str(init_from)).is_file():
        raise ConfigError(f"init_from: checkpoint {init_from} does not exist")


def _check_number(key: str, value: Any, allowed: str, ok: Any) -> float:
    """``value`` as a finite float satisfying ``ok``, or a ConfigError naming ``key``."""
    try:
        x = float(value)
    except (TypeError, ValueError):
        x = math.nan
    if isinstance(value, bool) or not math.isfinite(x) or not ok(x):
        raise ConfigError(f"{key} must be {allowed}, got {value!r}")
    return x


def _check_int(key: str, value: Any, low: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < low:
        what = "a positive integer" if low == 1 else f"an integer >= {low}"
        raise ConfigError(f"{key} must be {what}, got {value!r}")
    return value


def check_trainer_limits(trainer: DictConfig) -> None:
    """A run that would train nothing (max_epochs=0, max_steps=0, ...) or never stop fails
    here; Lightning would otherwise exit successfully having trained nothing."""
    epochs = trainer.get("max_epochs")
    steps = trainer.get("max_steps", -1)
    if steps is not None and steps != -1 and (not isinstance(steps, int) or steps < 1):
        raise ConfigError(
            f"trainer.max_steps must be a positive integer (or -1: no step limit), got {steps!r}"
        )
    if epochs == -1:  # Lightning's "no epoch limit": something else must end the run
        if steps in (None, -1) and trainer.get("max_time") is None:
            raise ConfigError(
                "trainer.max_epochs=-1 (no epoch limit) needs trainer.max_steps or "
                "trainer.max_time, or the run never ends; or set a positive max_epochs"
            )
    elif epochs is not None and (
        not isinstance(epochs, int) or isinstance(epochs, bool) or epochs < 1
    ):
        raise ConfigError(
            f"trainer.max_epochs must be a positive integer (or -1: no limit, with "
            f"trainer.max_steps or trainer.max_time), got {epochs!r}"
        )
    limit = trainer.get("limit_train_batches")
    if limit is not None:
        if isinstance(limit, float):
            _check_number(
                "trainer.limit_train_batches",
                limit,
                "a fraction in (0, 1] or a positive integer",
                lambda x: 0 < x <= 1,
            )
        else:
            _check_int("trainer.limit_train_batches", limit, 1)


def check_component(cfg: DictConfig, group: str) -> None:
    """Build ``cfg[group]`` once so that a parameter out of range fails now, named under
    ``group`` (the same hint law serves as ``hints`` and ``eval_hints``)."""
    node = cfg.get(group)
    if not node:
        return
    try:
        instantiate(node)
    except InstantiationException as exc:
        if isinstance(exc.__cause__, ParameterError):
            raise exc.__cause__.under(group) from None
        raise  # reported by the set-up that builds it, as before


def check_ckpt_path(path: str | None, required: bool) -> None:
    if path is None:
        if required:
            raise ConfigError("ckpt_path is required: ckpt_path=logs/.../checkpoints/best.ckpt")
        return
    if not Path(path).is_file():
        raise ConfigError(f"ckpt_path: checkpoint {path} does not exist")
