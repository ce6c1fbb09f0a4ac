"""The interactive page: python src/app.py [ckpt_path=...] [host=127.0.0.1] [port=7860]"""

from __future__ import annotations

import os
from pathlib import Path

import hydra
from omegaconf import DictConfig

os.environ.setdefault("HINTCOLOR_ROOT", str(Path(__file__).resolve().parents[1]))

from hintcolor.config import ConfigError
from hintcolor.inference import Colorizer


def newest_checkpoint(log_dir: Path) -> Path:
    found = sorted(log_dir.glob("train/runs/*/checkpoints/best.ckpt"), key=os.path.getmtime)
    if not found:
        raise ConfigError(
            f"no trained model under {log_dir}/train/runs: run `make train` first or give "
            "ckpt_path=..."
        )
    return found[-1]


@hydra.main(version_base="1.3", config_path="../conf", config_name="app")
def main(cfg: DictConfig) -> None:
    import uvicorn

    from hintcolor.app.server import Limits, create_app

    try:
        limits = Limits(**cfg.limits)
        ckpt = Path(cfg.ckpt_path) if cfg.ckpt_path else newest_checkpoint(Path(cfg.paths.log_dir))
        colorizer = Colorizer.from_checkpoint(ckpt, **cfg.colorizer)
    except (ConfigError, ValueError, TypeError) as exc:  # TypeError: an unknown limits key
        raise SystemExit(f"error: {exc}") from None
    samples = Path(cfg.samples_dir) if cfg.samples_dir else None
    app = create_app(colorizer, samples, limits)
    print(f"model: {ckpt}\nopen http://{cfg.host}:{cfg.port}/ (Ctrl+C to stop)", flush=True)
    uvicorn.run(app, host=cfg.host, port=int(cfg.port), log_level="warning")


if __name__ == "__main__":
    main()
