"""Evaluate a checkpoint: python src/eval.py [ckpt_path=...] [data=folder data.test_dir=...]"""

from __future__ import annotations

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from hintcolor.cli import hydra_entry_point
from hintcolor.config import ConfigError
from hintcolor.evaluation import evaluate


@hydra_entry_point("eval")
def main(cfg: DictConfig) -> None:
    try:
        evaluate(cfg, HydraConfig.get().runtime.output_dir)
    except (ConfigError, FileNotFoundError) as exc:
        raise SystemExit(f"error: {exc}") from None


if __name__ == "__main__":
    main()
