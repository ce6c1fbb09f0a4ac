"""Export a trained model: python src/export.py [ckpt_path=...] [format=onnx] [output=...]"""

from __future__ import annotations

from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from hintcolor.checkpoints import checkpoint_to_use, load_backbone
from hintcolor.cli import hydra_entry_point
from hintcolor.config import ConfigError

FORMATS = ("onnx",)


@hydra_entry_point("export")
def main(cfg: DictConfig) -> None:
    from hintcolor.export import export_onnx

    if cfg.format not in FORMATS:
        raise SystemExit(f"error: format={cfg.format} is not one of {', '.join(FORMATS)}")
    try:
        ckpt, which = checkpoint_to_use(cfg.ckpt_path, cfg.paths.shipped_model)
        print(which, flush=True)
        backbone, _ = load_backbone(ckpt)
    except (ConfigError, ValueError) as exc:
        raise SystemExit(f"error: {exc}") from None
    default = Path(HydraConfig.get().runtime.output_dir) / f"{ckpt.stem}.onnx"
    path = export_onnx(backbone, Path(cfg.output or default), cfg.example_size, cfg.opset)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
