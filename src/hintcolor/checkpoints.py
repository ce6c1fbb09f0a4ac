"""Trained models back from their checkpoints, without executing pickled code."""

from __future__ import annotations

from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn

from hintcolor.build import build_backbone
from hintcolor.config import check_ckpt_path


def load_backbone(ckpt_path: str | Path) -> tuple[nn.Module, DictConfig]:
    """Rebuild the trained backbone (with its hint prior) from a checkpoint alone.

    The run's resolved config is stored in every checkpoint, so nothing else is needed; the
    file is read with ``torch.load(weights_only=True)``. Returns (backbone in eval mode,
    training config). A missing file or a file that is not a hintcolor checkpoint raises
    a one-line error.
    """
    check_ckpt_path(str(ckpt_path), required=True)
    try:
        ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle/zip errors of many kinds: one clear message
        raise ValueError(f"{ckpt_path} is not a readable checkpoint: {exc}") from None
    if not isinstance(ckpt, dict) or "hintcolor_config" not in ckpt:
        raise ValueError(f"{ckpt_path} is not a hintcolor checkpoint (no hintcolor_config)")
    train_cfg = OmegaConf.create(ckpt["hintcolor_config"])
    backbone = build_backbone(train_cfg)
    prefix = "backbone."
    state = {k[len(prefix) :]: v for k, v in ckpt["state_dict"].items() if k.startswith(prefix)}
    backbone.load_state_dict(state)
    return backbone.eval(), train_cfg
