"""Evaluate a checkpoint: python src/eval.py [ckpt_path=...] [data=folder data.test_dir=...]"""

from __future__ import annotations

import os
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

os.environ.setdefault("HINTCOLOR_ROOT", str(Path(__file__).resolve().parents[1]))

from hintcolor.config import ConfigError
from hintcolor.evaluation import evaluate


@hydra.main(version_base="1.3", config_path="../conf", config_name="eval")
def main(cfg: DictConfig) -> None:
    try:
        evaluate(cfg, HydraConfig.get().runtime.output_dir)
    except (ConfigError, FileNotFoundError) as exc:
        raise SystemExit(f"error: {exc}") from None


if __name__ == "__main__":
    main()
