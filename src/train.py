"""Train a hint-colorization model: python src/train.py [model=resunet] [key=value ...]"""

from __future__ import annotations

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from lightning.pytorch.utilities.exceptions import SIGTERMException
from omegaconf import DictConfig

from hintcolor.checkpoints import CheckpointWriteError
from hintcolor.cli import hydra_entry_point
from hintcolor.config import ConfigError
from hintcolor.training import train


@hydra_entry_point("train")
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
