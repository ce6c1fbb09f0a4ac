"""The model that ships in models/: it loads safely, it is what every entry point uses when no
ckpt_path is given (and says so), and it colours the embedded photos better than IDW."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from conftest import KODAK, ROOT, compose, run_cli

from hintcolor.checkpoints import checkpoint_to_use, load_backbone
from hintcolor.config import ConfigError
from hintcolor.evaluation import evaluate
from hintcolor.suggestions import has_color_distribution

SHIPPED = ROOT / "models" / "hintcolor-v1" / "model.ckpt"


def test_the_shipped_model_is_small_safe_and_documented() -> None:
    assert SHIPPED.is_file(), "models/hintcolor-v1/model.ckpt is missing (make model)"
    assert SHIPPED.stat().st_size <= 25e6
    ckpt = torch.load(SHIPPED, map_location="cpu", weights_only=True)
    assert set(ckpt) == {"state_dict", "hintcolor_config"}  # weights and config, nothing else
    model, cfg = load_backbone(SHIPPED)
    assert cfg.model.name == "resunet"
    assert has_color_distribution(model)  # the page's suggested colours
    assert model.network.edge_sweeps == cfg.hint_prior.edge_sweeps > 0  # the edge-aware prior
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


def _photo_input(size: tuple[int, int]) -> torch.Tensor:
    from hintcolor.data import FixedHints, make_batch
    from hintcolor.data.images import load_rgb

    photo = torch.from_numpy(load_rgb(sorted((KODAK / "val").iterdir())[0]).copy())
    small = F.interpolate(photo.permute(2, 0, 1)[None].float(), size=size, mode="bilinear")
    rgb = small.round().to(torch.uint8)
    return make_batch(rgb, FixedHints(k=10, patch_size=6), torch.arange(1))["input"]


def test_the_shipped_model_predicts_what_the_code_before_the_backbone_split_did() -> None:
    from test_backbones import before_split

    from hintcolor.models.hint_prior import push_pull

    network = load_backbone(SHIPPED)[0].network  # under the colour head
    x = _photo_input((96, 136))
    with torch.no_grad():
        prior = push_pull(
            x[:, 1:3], x[:, 3:4], luma=x[:, :1] + 0.5, edge_sweeps=network.edge_sweeps
        )
        correction = before_split(network.backbone, torch.cat([x, prior], dim=1))
        expected = (prior + network.gain * correction).clamp(-1, 1)
        assert torch.equal(network(x), expected)


def test_the_shipped_colour_head_leaves_the_network_output_alone() -> None:
    # the head was trained on the frozen network (experiment=release_head): the ab output and
    # so the model card's evaluation are the network's own
    shipped, _ = load_backbone(SHIPPED)
    x = _photo_input((64, 96))
    with torch.no_grad():
        ab, logits = shipped.forward_with_distribution(x)
        assert torch.equal(ab, shipped.network(x)) and torch.equal(shipped(x), ab)
    assert logits.shape == (1, 262, 16, 24)
