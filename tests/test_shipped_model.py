"""The model that ships in models/: it loads safely, it is what every entry point uses when no
ckpt_path is given (and says so), and it colours the embedded photos better than IDW."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from conftest import KODAK, ROOT, compose, run_cli

from hintcolor.checkpoints import checkpoint_to_use, load_backbone
from hintcolor.config import ConfigError
from hintcolor.evaluation import evaluate

SHIPPED = ROOT / "models" / "hintcolor-v1" / "model.ckpt"


def test_the_shipped_model_is_small_safe_and_documented() -> None:
    assert SHIPPED.is_file(), "models/hintcolor-v1/model.ckpt is missing (make model)"
    assert SHIPPED.stat().st_size <= 25e6
    ckpt = torch.load(SHIPPED, map_location="cpu", weights_only=True)
    assert set(ckpt) == {"state_dict", "hintcolor_config"}  # weights and config, nothing else
    backbone, cfg = load_backbone(SHIPPED)
    assert cfg.model.name == "resunet"
    assert backbone.edge_sweeps == cfg.hint_prior.edge_sweeps > 0  # the edge-aware prior
    card = (SHIPPED.parent / "README.md").read_text()
    for must in ("imagenet-sample", "levin", "Licence", "experiment=release", "Wall time"):
        assert must in card


def test_no_ckpt_path_means_the_shipped_model_and_says_so(tmp_path: Path) -> None:
    path, line = checkpoint_to_use(None, SHIPPED)
    assert path == SHIPPED and "shipped model" in line and "README.md" in line
    path, line = checkpoint_to_use(str(SHIPPED), tmp_path / "nowhere.ckpt")
    assert path == SHIPPED and line == f"model: {SHIPPED}"
    with pytest.raises(ConfigError, match=r"shipped model .*missing .*make model"):
        checkpoint_to_use(None, tmp_path / "nowhere.ckpt")
    with pytest.raises(ConfigError, match="does not exist"):
        checkpoint_to_use(str(tmp_path / "typo.ckpt"), SHIPPED)


def test_the_shipped_model_beats_idw_on_the_kodak_validation_photos(tmp_path: Path) -> None:
    cfg = compose(
        "eval",
        ["logger=none", "hint_counts=[10]", "references=[idw]", "split=val"],
        tmp_path,
    )
    result = evaluate(cfg, tmp_path / "eval")
    psnr = {r["method"]: r["psnr"] for r in result["rows"]}
    assert result["images"] == len(list((KODAK / "val").iterdir())) == 4
    assert result["checkpoint"] == str(SHIPPED)
    assert psnr["model"] > psnr["idw"], psnr


def test_colorize_without_ckpt_path_uses_the_shipped_model(tmp_path: Path) -> None:
    photo = sorted((KODAK / "val").iterdir())[0]
    proc = run_cli(
        "colorize.py",
        f"input={photo}",
        f"output={tmp_path / 'out.png'}",
        f"hydra.run.dir={tmp_path / 'run'}",
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert f"model: the shipped model {SHIPPED}" in proc.stdout
    assert (tmp_path / "out.png").stat().st_size > 10_000
