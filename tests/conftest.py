"""Shared fixtures: real photos from the embedded Kodak set, configs composed like the CLI."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("HINTCOLOR_ROOT", str(ROOT))
KODAK = ROOT / "data" / "kodak24"
SHARED_DATA = ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def kodak_files() -> list[Path]:
    files = sorted(KODAK.rglob("*.jpg"))
    assert len(files) == 24
    return files


@pytest.fixture
def photo_folders(tmp_path: Path, kodak_files: list[Path]) -> dict[str, Path]:
    """train/ (6 photos) and val/ (2 photos): small real folders."""
    dirs = {}
    for name, files in (("train", kodak_files[:6]), ("val", kodak_files[20:22])):
        d = tmp_path / name
        d.mkdir()
        for f in files:
            shutil.copy(f, d / f.name)
        dirs[name] = d
    return dirs


def compose(config_name: str, overrides: list[str], output_dir: Path):
    """Compose a config exactly as the entry point would, with an explicit output dir."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        return hydra_compose(
            config_name,
            overrides=[f"paths.output_dir={output_dir}", f"paths.log_dir={output_dir}", *overrides],
        )
