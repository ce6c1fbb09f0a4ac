"""W&B tracking through the real wandb library in offline mode, and what happens when it fails."""

import contextlib
import logging
import os
import subprocess
import sys

import optuna
import pytest
import torch
import wandb
from conftest import ROOT, compose
from lightning.pytorch import Callback
from test_train import FAST, _data
from wandb_runs import offline_runs

from hintcolor.evaluation import evaluate
from hintcolor.tracking import (
    has_wandb_credentials,
    resolve_wandb_mode,
    tracked_runs,
    wandb_logger,
)
from hintcolor.training import train
from hintcolor.visualization import colorization_panels, hint_overlay


def test_training_run_is_recorded_in_wandb(tmp_path, photo_folders):
    overrides = [*FAST, *_data(photo_folders), "logger=wandb", "optimizer.lr=0.0005"]
    metrics = train(compose("train", overrides, tmp_path / "run"))
    (run,) = offline_runs(tmp_path / "run")
    assert run.values("val/psnr") == [pytest.approx(metrics["val/psnr"])]
    assert run.config["model"]["name"] == "resunet"
    assert run.config["optimizer"]["lr"] == 0.0005
    assert run.config["model_size"]["params"] > 1e6
    assert len(run.config["code"]["commit"]) == 40  # the repository's git commit
    images = run.values("val/samples._type")
    assert images == ["images/separated"] and run.values("val/samples.count") == [
        2
    ]  # the 2 val photos
    assert run.summary["final_state"] == "complete" and run.exit_code == 0
    # the same panels as PNG in the run dir, and the CSV copy of the metrics
    assert (tmp_path / "run" / "images" / "val_epoch000.png").stat().st_size > 10_000
    assert "val/psnr" in (tmp_path / "run" / "csv" / "metrics.csv").read_text()

    # eval.py logs its PSNR@k table and plot to a W&B run carrying the training config
    eval_cfg = compose(
        "eval",
        [
            f"ckpt_path={tmp_path / 'run' / 'checkpoints' / 'best.ckpt'}",
            "limit=2",
            "image_size=64",
            "hint_counts=[0,10]",
            f"data.val_dir={photo_folders['val']}",
        ],
        tmp_path / "eval",
    )
    result = evaluate(eval_cfg, tmp_path / "eval")
    (ev,) = offline_runs(tmp_path / "eval")
    model10 = next(r["psnr"] for r in result["rows"] if r["method"] == "model" and r["k"] == 10)
    assert ev.values("eval/model/psnr@10") == [pytest.approx(model10)]
    assert ev.values("eval/psnr_at_k._type") == ["table-file"]
    assert ev.values("eval/psnr_at_k_plot._type") == ["images/separated"]
    assert ev.config["model"]["name"] == "resunet" and ev.run["job_type"] == "eval"


def test_bad_wandb_mode_does_not_stop_training(tmp_path, photo_folders):
    """Through the command line: W&B reads WANDB_MODE once per process."""
    cmd = [sys.executable, str(ROOT / "src" / "train.py"), *FAST, *_data(photo_folders)]
    cmd += ["logger=wandb", f"hydra.run.dir={tmp_path}"]
    env = {**os.environ, "WANDB_MODE": "not-a-mode"}
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "W&B failed to start" in (tmp_path / "debug.log").read_text()  # debug=fast names the log
    assert "val/psnr" in (tmp_path / "csv" / "metrics.csv").read_text()


def test_wandb_init_error_does_not_stop_training(tmp_path, photo_folders, caplog):
    # wandb.init rejects an argument it does not know
    overrides = [*FAST, *_data(photo_folders), "+logger.wandb.no_such_init_argument=1"]
    with caplog.at_level(logging.WARNING, logger="hintcolor.tracking"):
        metrics = train(compose("train", overrides, tmp_path))
    assert "val/psnr" in metrics
    assert "W&B failed to start" in caplog.text and "continuing without W&B" in caplog.text
    assert "val/psnr" in (tmp_path / "csv" / "metrics.csv").read_text()
    assert (tmp_path / "checkpoints" / "last.ckpt").is_file()
    assert not list(tmp_path.rglob("*.wandb"))


class FailAtFirstStep(Callback):
    def on_train_batch_start(self, *args) -> None:
        raise RuntimeError("failure in the middle of training")


def test_failed_job_finishes_its_run_as_failed(tmp_path, photo_folders):
    fail = "+callbacks.fail._target_=test_tracking.FailAtFirstStep"
    cfg = compose("train", [*FAST, *_data(photo_folders), "logger=wandb", fail], tmp_path)
    with pytest.raises(RuntimeError, match="middle of training"):
        train(cfg)
    assert wandb.run is None  # closed: the next job of a sweep gets its own run
    (run,) = offline_runs(tmp_path)
    assert run.summary["final_state"] == "failed" and run.exit_code == 1


@pytest.mark.parametrize(
    ("error", "state", "code"),
    [
        (None, "complete", 0),
        (optuna.TrialPruned(), "pruned", 0),
        (KeyboardInterrupt(), "interrupted", 1),
        (RuntimeError(), "failed", 1),
    ],
)
def test_runs_end_with_the_job_state(tmp_path, error, state, code):
    logger = wandb_logger(save_dir=str(tmp_path), project="test", mode="offline")
    assert logger is not None and wandb.run is not None
    with contextlib.suppress(type(error) if error else ()), tracked_runs([logger]):
        logger.log_metrics({"val/psnr": 20.0}, step=0)
        if error:
            raise error
    assert wandb.run is None
    (run,) = offline_runs(tmp_path)
    assert run.summary["final_state"] == state and run.exit_code == code


def test_wandb_mode_follows_login(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv("WANDB_BASE_URL", raising=False)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    assert not has_wandb_credentials() and resolve_wandb_mode("auto") == "offline"
    netrc = tmp_path / ".netrc"
    netrc.write_text("machine api.wandb.ai\n  login user\n  password not-a-real-key\n")
    netrc.chmod(0o600)
    assert has_wandb_credentials() and resolve_wandb_mode("auto") == "online"
    monkeypatch.setenv("WANDB_MODE", "offline")
    assert resolve_wandb_mode("auto") is None  # W&B reads WANDB_MODE itself
    assert resolve_wandb_mode("disabled") == "disabled"


def test_hint_overlay_paints_hints_and_outlines_them():
    l_norm = torch.zeros(1, 1, 16, 16)  # mid gray
    hint_ab = torch.zeros(1, 2, 16, 16)
    mask = torch.zeros(1, 1, 16, 16)
    hint_ab[:, 0, 6:9, 6:9] = 0.6  # a red hint (positive a)
    mask[:, :, 6:9, 6:9] = 1
    rgb = hint_overlay(l_norm, hint_ab, mask)
    r, g, b = rgb[0, :, 7, 7]
    assert r > g + 0.2 and r > b + 0.1  # painted in its colour
    assert torch.allclose(rgb[0, :, 5, 7], torch.ones(3))  # white outline
    corner = rgb[0, :, 0, 0]
    assert torch.allclose(corner, corner.mean().expand(3), atol=1e-3)  # gray elsewhere
    batch = {
        "l": l_norm,
        "input": torch.cat([l_norm, hint_ab, mask], 1),
        "rgb": torch.rand(1, 3, 16, 16),
    }
    panels = colorization_panels(batch, torch.zeros(1, 2, 16, 16))
    assert panels.shape == (1, 3, 16, 64)
    assert torch.equal(panels[..., 48:], batch["rgb"])  # ground truth last


def test_resuming_with_the_run_id_continues_the_wandb_run(tmp_path, photo_folders):
    base = [*FAST, *_data(photo_folders), "logger=wandb"]
    train(compose("train", [*base, "logger.wandb.log_model=true"], tmp_path / "a"))
    (first,) = offline_runs(tmp_path / "a")
    assert {a["type"] for a in first.artifacts} == {"model"}  # checkpoints as artifacts
    assert any("best" in a["aliases"] for a in first.artifacts)
    run_id = first.run["run_id"]
    ckpt = tmp_path / "a" / "checkpoints" / "last.ckpt"
    resumed = [*base, f"ckpt_path={ckpt}", "trainer.max_epochs=2", f"logger.wandb.id={run_id}"]
    train(compose("train", resumed, tmp_path / "b"))
    (second,) = offline_runs(tmp_path / "b")
    assert second.run["run_id"] == run_id and second.run.get("resume") is True
    assert second.values("epoch")[-1] == 1  # the second epoch, logged to the same run
