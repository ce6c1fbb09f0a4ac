"""Checks that turn a bad configuration into one clear line before any training starts."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig


class ConfigError(ValueError):
    """A configuration that cannot work; the message names the setting."""


def check_train_config(cfg: DictConfig, backbone_stride: int) -> None:
    lr = cfg.optimizer.get("lr")
    if lr is None or not float(lr) > 0:
        raise ConfigError(f"optimizer.lr must be a positive number, got {lr}")
    size = cfg.data.get("image_size")
    if not isinstance(size, int) or size < 1:
        raise ConfigError(f"data.image_size must be a positive integer, got {size!r}")
    if size < backbone_stride:
        raise ConfigError(
            f"data.image_size={size} is smaller than the {cfg.model.name} backbone's total "
            f"downsampling factor ({backbone_stride}); use at least {backbone_stride}"
        )
    check_ckpt_path(cfg.get("ckpt_path"), required=False)


def check_ckpt_path(path: str | None, required: bool) -> None:
    if path is None:
        if required:
            raise ConfigError("ckpt_path is required: ckpt_path=logs/.../checkpoints/best.ckpt")
        return
    if not Path(path).is_file():
        raise ConfigError(f"ckpt_path: checkpoint {path} does not exist")
