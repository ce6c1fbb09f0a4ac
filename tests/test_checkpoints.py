"""Checkpoints from strangers: nothing in the file may run, every refusal is one line."""

from __future__ import annotations

import copy
import re
from pathlib import Path

import pytest
import torch
from conftest import ROOT, compose, run_cli

from hintcolor.checkpoints import NAMED_TARGETS, load_backbone, read_checkpoint
from hintcolor.config import ConfigError


class _Payload:
    """A pickle that creates a file when unpickled (what weights_only=True must refuse)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def _hostile(trained: Path, tmp: Path, name: str, edit) -> Path:
    ckpt = torch.load(trained, map_location="cpu", weights_only=True)
    ckpt = copy.deepcopy(ckpt)
    edit(ckpt["hintcolor_config"])
    path = tmp / f"{name}.ckpt"
    torch.save(ckpt, path)
    return path


def _set_backbone(target: dict):
    def edit(config: dict) -> None:
        config["model"]["backbone"] = target

    return edit


@pytest.fixture(scope="module")
def trained_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A checkpoint as training writes it (config + weights), without the training: these
    tests are about the file, not the model."""
    from hintcolor.build import build_backbone, build_module

    run = tmp_path_factory.mktemp("ckpt")
    cfg = compose("train", ["logger=csv", "data.num_workers=0"], run)
    module = build_module(cfg, build_backbone(cfg))
    path = run / "best.ckpt"
    torch.save({"state_dict": module.state_dict(), "hintcolor_config": module.config}, path)
    return path


@pytest.fixture
def marker(tmp_path: Path) -> Path:
    return tmp_path / "pwned"


def hostile_checkpoints(trained: Path, tmp: Path, marker: Path) -> dict[str, Path]:
    open_marker = {"_target_": "builtins.open", "file": str(marker), "mode": "w"}
    text = tmp / "notes.ckpt"
    text.write_text("not a checkpoint\n" * 10)
    pickled = tmp / "pickle.ckpt"
    torch.save({"state_dict": {}, "hintcolor_config": {}, "x": _Payload(marker)}, pickled)

    def nested(config: dict) -> None:
        config["model"]["backbone"]["widths"] = open_marker

    def elsewhere(config: dict) -> None:
        config["trainer"]["_target_"] = "os.system"

    def interpolation(config: dict) -> None:
        config["model"]["backbone"]["bridge"] = "${oc.env:HOME}"

    return {
        "code in the backbone": _hostile(trained, tmp, "open", _set_backbone(open_marker)),
        "torch.load": _hostile(
            trained,
            tmp,
            "load",
            _set_backbone({"_target_": "torch.load", "f": str(pickled), "weights_only": False}),
        ),
        "own module, foreign object": _hostile(
            trained,
            tmp,
            "attr",
            _set_backbone({"_target_": "hintcolor.models.backbones.resunet.torch.load"}),
        ),
        "own function": _hostile(
            trained,
            tmp,
            "func",
            _set_backbone({"_target_": "hintcolor.export.export_onnx", "path": str(marker)}),
        ),
        "nested target": _hostile(trained, tmp, "nested", nested),
        "target outside the model": _hostile(trained, tmp, "trainer", elsewhere),
        "interpolation": _hostile(trained, tmp, "interp", interpolation),
        "pickle payload": pickled,
        "text file": text,
    }


def test_hostile_checkpoints_are_refused_in_one_line(trained_checkpoint, tmp_path, marker):
    for case, path in hostile_checkpoints(trained_checkpoint, tmp_path, marker).items():
        with pytest.raises(ConfigError) as info:
            load_backbone(path)
        message = str(info.value)
        assert "\n" not in message and str(path) in message, case
        assert not marker.exists(), f"{case}: code ran"
    # the untouched checkpoint still loads
    backbone, cfg = load_backbone(trained_checkpoint)
    assert cfg.model.name == "resunet" and not backbone.training


def test_refusal_names_the_target(trained_checkpoint, tmp_path, marker):
    path = _hostile(
        trained_checkpoint, tmp_path, "x", _set_backbone({"_target_": "subprocess.call"})
    )
    with pytest.raises(ConfigError, match=r"'subprocess\.call' at model\.backbone\._target_"):
        read_checkpoint(path)


@pytest.mark.parametrize(
    ("script", "args"),
    [
        ("eval.py", ["data=folder", f"data.test_dir={ROOT / 'data/kodak24/val'}", "logger=none"]),
        ("colorize.py", [f"input={ROOT / 'data/kodak24/val'}"]),
        ("export.py", []),
        ("app.py", ["port=1"]),
    ],
)
def test_every_entry_point_refuses_a_hostile_checkpoint(
    trained_checkpoint, tmp_path, marker, script, args
):
    path = _hostile(
        trained_checkpoint,
        tmp_path,
        "open",
        _set_backbone({"_target_": "builtins.open", "file": str(marker), "mode": "w"}),
    )
    proc = run_cli(script, f"ckpt_path={path}", *args, cwd=tmp_path)
    assert proc.returncode != 0
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), proc.stderr[-2000:]
    assert "builtins.open" in lines[0] and not marker.exists()


def test_configs_name_only_allowed_targets():
    """Every _target_ the project's configs use is loadable from a checkpoint (conf/hydra/ is
    Hydra's own config - launchers, help - which no checkpoint stores)."""
    targets = set()
    for yaml in (ROOT / "conf").rglob("*.yaml"):
        if yaml.relative_to(ROOT / "conf").parts[0] == "hydra":
            continue
        targets |= set(re.findall(r"_target_:\s*([\w.]+)", yaml.read_text()))
    foreign = {t for t in targets if not t.startswith("hintcolor.")}
    assert foreign <= NAMED_TARGETS, foreign - NAMED_TARGETS


def test_truncated_checkpoint_is_one_line(trained_checkpoint, tmp_path):
    data = trained_checkpoint.read_bytes()
    cut = tmp_path / "cut.ckpt"
    cut.write_bytes(data[: len(data) // 2])
    empty = tmp_path / "empty.ckpt"
    empty.write_bytes(b"")
    for path in (cut, empty):
        with pytest.raises(ConfigError, match="not a readable checkpoint") as info:
            load_backbone(path)
        assert "\n" not in str(info.value)
