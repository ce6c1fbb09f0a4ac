"""Write LitData shards for data=streaming from photo folders:

    python src/shard.py data=folder data.train_dir=/photos/train data.val_dir=/photos/val \\
        output_dir=/shards
"""

from __future__ import annotations

from omegaconf import DictConfig, OmegaConf

from hintcolor.cli import hydra_entry_point


@hydra_entry_point("shard")
def main(cfg: DictConfig) -> None:
    # imported here: LitData is the scale extra's, and the entry point's check names it
    # in one line when it is missing (hintcolor.cli.check_scale_extra)
    from hintcolor.data.shards import photo_source, shard_options, write_shards

    if OmegaConf.is_missing(cfg, "output_dir"):
        raise SystemExit("error: output_dir: say where the shards go (a folder or an s3:// URL)")
    try:
        write_shards(photo_source(cfg.data), cfg.output_dir, shard_options(cfg))
    except (ValueError, OSError) as exc:  # a missing folder, existing shards, a bad option
        raise SystemExit(f"error: {exc}") from None


if __name__ == "__main__":
    main()
