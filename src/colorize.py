"""Colorize photos: python src/colorize.py [ckpt_path=...] input=photo|folder [hints_path=...]"""

from __future__ import annotations

from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from hintcolor.checkpoints import checkpoint_to_use
from hintcolor.cli import hydra_entry_point
from hintcolor.colorize import colorize_files
from hintcolor.config import ConfigError
from hintcolor.inference import Colorizer


@hydra_entry_point("colorize")
def main(cfg: DictConfig) -> None:
    try:
        ckpt, which = checkpoint_to_use(cfg.ckpt_path, cfg.paths.shipped_model)
        print(which, flush=True)
        colorizer = Colorizer.from_checkpoint(ckpt, **cfg.colorizer)
        output = Path(cfg.output or HydraConfig.get().runtime.output_dir)
        hints = Path(cfg.hints_path) if cfg.hints_path else None
        written, skipped = colorize_files(colorizer, Path(cfg.input), hints, output)
    except (ConfigError, ValueError, FileNotFoundError) as exc:
        raise SystemExit(f"error: {exc}") from None
    for path in written if len(written) <= 10 else []:
        print(f"wrote {path}")
    if len(written) > 10:
        print(f"wrote {len(written)} images under {output}")
    if skipped:
        print(f"skipped {len(skipped)} file(s):")
        for path, reason in skipped:
            print(f"  {path}: {reason}")


if __name__ == "__main__":
    main()
