"""Shared fixtures: real photos from the embedded Kodak set, configs composed like the CLI."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
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
def postgres_url() -> Iterator[str]:
    """A throwaway PostgreSQL server's URL (tests/postgres.py); the test skips without one."""
    from postgres import postgres_server

    with postgres_server() as url:
        if url is None:
            pytest.skip(
                "PostgreSQL server not installed (apt-get install postgresql; .ci/run does)"
            )
        yield url


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


def run_cli(script: str, *args: str, cwd: Path, timeout: int = 300):
    """Run ``python src/<script> args...`` as a user would; returns the CompletedProcess."""
    import subprocess
    import sys

    env = {**os.environ, "HINTCOLOR_ROOT": str(ROOT)}
    return subprocess.run(
        [sys.executable, str(ROOT / "src" / script), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture(scope="session")
def trained_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small default model trained for a minute's fraction on the embedded photos."""
    from hintcolor.training import train

    run = tmp_path_factory.mktemp("trained")
    overrides = [
        "callbacks.progress_bar=null",
        "callbacks.validation_images=null",
        "logger=csv",
        "data.image_size=64",
        "data.num_workers=0",
        "trainer.max_epochs=2",
        "+trainer.limit_train_batches=20",
        "+trainer.limit_val_batches=2",
    ]
    train(compose("train", overrides, run))
    ckpt = run / "checkpoints" / "best.ckpt"
    assert ckpt.is_file()
    return ckpt


def lab_hue(rgb) -> tuple[float, float]:
    """(hue angle of (a*, b*) in degrees, chroma) of one RGB pixel: the colour a hint sets,
    whatever lightness the photo gives it (RGB hue shifts when a bright pixel clips)."""
    import numpy as np
    import torch

    from hintcolor.data.color import rgb_to_lab

    lab = rgb_to_lab(torch.tensor(rgb, dtype=torch.float32).view(1, 3, 1, 1) / 255).flatten()
    return float(np.degrees(np.arctan2(lab[2], lab[1]))) % 360, float(lab[1:].norm())


def angle_between(a: float, b: float) -> float:
    return min(abs(a - b), 360 - abs(a - b))


def midtone_photo(path: Path, box: tuple[int, int, int, int] | None = None) -> Path:
    """A Kodak photo as a grayscale with tones squeezed into 90..160 of 255, saved to ``path``.

    A real photo's structure, but lightness where any hue fits in the sRGB gamut, so a test
    can check a hint's hue on the output without clipping bending it (a saturated blue on a
    bright sky pixel comes out cyan-white, rightly).
    """
    import numpy as np
    from PIL import Image

    img = Image.open(sorted((KODAK / "val").glob("*.jpg"))[0]).convert("L")
    if box:
        img = img.crop(box)
    tones = np.asarray(img, dtype=np.float32) / 255 * 70 + 90
    Image.fromarray(tones.astype(np.uint8)).convert("RGB").save(path)
    return path


def color_head(network, **overrides):
    """``network`` wrapped by the colour-distribution head as conf/color_head/default.yaml
    configures it (``overrides`` replace its values, e.g. a narrow ``width``)."""
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    cfg = OmegaConf.load(ROOT / "conf" / "color_head" / "default.yaml")
    return instantiate(cfg, network=network, **overrides)
