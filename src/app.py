"""The interactive page: python src/app.py [ckpt_path=...] [host=127.0.0.1] [port=7860]"""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from hintcolor.checkpoints import checkpoint_to_use
from hintcolor.cli import hydra_entry_point
from hintcolor.config import ConfigError
from hintcolor.inference import Colorizer


@hydra_entry_point("app")
def main(cfg: DictConfig) -> None:
    import uvicorn

    from hintcolor.app.server import Limits, create_app

    try:
        limits = Limits(**cfg.limits)
        ckpt, which = checkpoint_to_use(cfg.ckpt_path, cfg.paths.shipped_model)
        colorizer = Colorizer.from_checkpoint(ckpt, **cfg.colorizer)
    except (ConfigError, ValueError, TypeError) as exc:  # TypeError: an unknown limits key
        raise SystemExit(f"error: {exc}") from None
    samples = Path(cfg.samples_dir) if cfg.samples_dir else None
    app = create_app(colorizer, samples, limits)
    print(f"{which}\nopen http://{cfg.host}:{cfg.port}/ (Ctrl+C to stop)", flush=True)
    uvicorn.run(app, host=cfg.host, port=int(cfg.port), log_level="warning")


if __name__ == "__main__":
    main()
