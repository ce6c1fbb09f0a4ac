"""Train a hint-colorization model: python src/train.py [model=resunet] [key=value ...]"""

from __future__ import annotations

import os
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

os.environ.setdefault("HINTCOLOR_ROOT", str(Path(__file__).resolve().parents[1]))

from lightning.pytorch.utilities.exceptions import SIGTERMException

from hintcolor.checkpoints import CheckpointWriteError
from hintcolor.config import ConfigError
from hintcolor.training import train


@hydra.main(version_base="1.3", config_path="../conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    try:
        metrics = train(cfg)
    except (ConfigError, CheckpointWriteError, SIGTERMException) as exc:
        if HydraConfig.get().mode == RunMode.MULTIRUN:
            raise  # in a sweep, only this trial fails
        if isinstance(exc, SIGTERMException):  # last.ckpt was saved and logged
            raise SystemExit("stopped by SIGTERM; resume from the last checkpoint above") from None
        raise SystemExit(f"error: {exc}") from None
    value = metrics.get(cfg.get("optimized_metric") or "")
    return None if value is None else float(value)


if __name__ == "__main__":
    main()
