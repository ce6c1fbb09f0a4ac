"""Never lose work: last.ckpt at every epoch and stop, exact resume, a time budget that ends
annealed, atomic checkpoint writes."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import lightning as L
import pytest
import torch
from conftest import ROOT, compose
from lightning.pytorch.utilities.exceptions import SIGTERMException
from omegaconf import open_dict

from hintcolor.checkpoints import AtomicCheckpointIO, CheckpointWriteError
from hintcolor.config import ConfigError
from hintcolor.models.schedules import BudgetCosineLR, seconds
from hintcolor.training import train

# A tiny fp32 run on the embedded photos: seconds per epoch.
TINY = [
    "callbacks.progress_bar=null",
    "callbacks.validation_images=null",
    "callbacks.model_summary=null",
    "logger=csv",
    "trainer.precision=32-true",
    "data.image_size=32",
    "data.batch_size=4",
    "data.train_repeats=1",
    "data.num_workers=1",
    "model.backbone.widths=[4,8,8,16,16]",
    "model.backbone.bridge=16",
    "+trainer.limit_val_batches=1",
]


class SnapshotLast(L.Callback):
    """Copies last.ckpt right after it is written at the end of epoch ``epoch``: what a kill
    -9 between that epoch and the next would leave."""

    def __init__(self, source: str, to: str, epoch: int) -> None:
        self.source, self.to, self.epoch = Path(source), Path(to), epoch

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.current_epoch == self.epoch:
            shutil.copy(self.source, self.to)


def _run(out: Path, *overrides: str, snapshot: Path | None = None) -> dict[str, float]:
    cfg = compose("train", [*TINY, *overrides], out)
    if snapshot is not None:
        with open_dict(cfg):
            cfg.callbacks.snapshot = {
                "_target_": f"{__name__}.SnapshotLast",
                "source": str(out / "checkpoints" / "last.ckpt"),
                "to": str(snapshot),
                "epoch": 0,
            }
    return train(cfg)


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, map_location="cpu", weights_only=True)["state_dict"]


def test_resume_between_epochs_reaches_the_same_weights(tmp_path):
    """Killed between epochs, then resumed: the same final weights as never stopping."""
    snapshot = tmp_path / "after_epoch1.ckpt"
    full = _run(tmp_path / "full", "trainer.max_epochs=3", snapshot=snapshot)
    stopped = torch.load(snapshot, weights_only=True)
    assert stopped["epoch"] == 0 and stopped["global_step"] > 0

    resumed = _run(tmp_path / "resumed", "trainer.max_epochs=3", f"ckpt_path={snapshot}")
    a = _weights(tmp_path / "full" / "checkpoints" / "last.ckpt")
    b = _weights(tmp_path / "resumed" / "checkpoints" / "last.ckpt")
    assert a.keys() == b.keys()
    worst = max((a[k].float() - b[k].float()).abs().max().item() for k in a)
    assert worst <= 1e-5, worst
    # the running best survived the resume: it is the best of all three epochs
    assert resumed["val/psnr_best"] == pytest.approx(full["val/psnr_best"], abs=1e-4)


def test_last_checkpoint_is_the_final_state_with_the_running_best(tmp_path):
    metrics = _run(tmp_path, "trainer.max_epochs=2")
    ckpt = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)
    steps_per_epoch = 20 // 4  # 20 training photos, batch 4
    assert ckpt["global_step"] == 2 * steps_per_epoch and ckpt["epoch"] == 1
    best = ckpt["state_dict"]["val_psnr_best.max_value"].item()
    assert best == pytest.approx(metrics["val/psnr_best"], abs=1e-4)


def test_time_budget_ends_annealed_and_says_so(tmp_path, caplog):
    caplog.set_level("INFO")
    _run(tmp_path, "trainer.max_epochs=1000", "trainer.max_time=00:00:00:08")
    ckpt = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)
    assert ckpt["global_step"] > 0 and ckpt["epoch"] < 999  # stopped by the clock
    (sched,) = ckpt["lr_schedulers"]
    assert sched["_last_lr"][0] == pytest.approx(1e-5)  # eta_min of conf/scheduler/cosine
    text = caplog.text
    assert "stopped at the time limit after" in text and "of 1000 epochs" in text


def test_budget_schedule_follows_steps_or_time_whichever_ends_first():
    param = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([param], lr=1.0)
    sched = BudgetCosineLR(opt, total_steps=100, eta_min=0.01)
    for _ in range(50):
        opt.step()
        sched.step()
    assert sched.get_last_lr()[0] == pytest.approx(0.01 + 0.99 * 0.5, abs=1e-6)  # half way
    timed = BudgetCosineLR(torch.optim.SGD([param], lr=1.0), 100, 0.01, max_time="00:00:01:40")
    timed.elapsed = 95.0  # 95 % of 100 s: the whole budget as far as the schedule goes
    timed.step()
    assert timed.get_last_lr()[0] == pytest.approx(0.01)
    state = timed.state_dict()
    fresh = BudgetCosineLR(torch.optim.SGD([param], lr=1.0), 100, 0.01, max_time=100)
    fresh.load_state_dict(state)
    assert fresh.elapsed >= 95.0 and fresh.last_epoch == 1
    assert seconds("01:02:03:04") == 93784 and seconds({"minutes": 2}) == 120


def test_resume_refuses_a_foreign_or_broken_checkpoint(tmp_path):
    _run(tmp_path / "a", "trainer.max_epochs=1")
    last = tmp_path / "a" / "checkpoints" / "last.ckpt"
    text = tmp_path / "notes.ckpt"
    text.write_text("hello")
    wrong = ["model.backbone.widths=[8,8,8,16,16]", f"ckpt_path={last}"]
    for overrides, match in (
        ([f"ckpt_path={text}"], "not a readable checkpoint"),
        (wrong, "weights of another model"),
    ):
        with pytest.raises(ConfigError, match=match) as info:
            _run(tmp_path / "b", "trainer.max_epochs=2", *overrides)
        assert "\n" not in str(info.value)


def test_sigterm_saves_and_the_run_resumes_to_completion(tmp_path):
    """SIGTERM (a cluster's pre-emption) mid-run: last.ckpt holds the step it stopped at,
    the message says how to resume, and the resumed run completes."""
    args = [sys.executable, str(ROOT / "src" / "train.py"), *TINY]
    args += ["trainer.max_epochs=30", f"hydra.run.dir={tmp_path / 'run'}"]
    proc = subprocess.Popen(
        args, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    lines = []
    try:
        for line in proc.stdout:  # wait for the first epoch's line, then pre-empt
            lines.append(line)
            if "epoch 2/30" in line:
                proc.send_signal(signal.SIGTERM)
                break
        rest, _ = proc.communicate(timeout=300)
    finally:
        proc.kill()
    output = "".join(lines) + rest
    assert proc.returncode != 0, output[-2000:]
    last = tmp_path / "run" / "checkpoints" / "last.ckpt"
    assert "resume with ckpt_path=" in output and str(last) in output, output[-2000:]
    stopped = torch.load(last, weights_only=True)
    assert 2 * 5 <= stopped["global_step"] < 30 * 5

    resumed = subprocess.run(
        [*args[:-1], f"hydra.run.dir={tmp_path / 'again'}", f"ckpt_path={last}"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "completed 30 epochs" in resumed.stdout + resumed.stderr
    assert "resumed at epoch" in resumed.stdout + resumed.stderr


def _mount_tmpfs(where: Path, size: str) -> None:
    where.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)], capture_output=True
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs to fill (needs root): {done.stderr!r}")


def test_disk_full_keeps_the_previous_checkpoint(tmp_path):
    disk = tmp_path / "disk"
    _mount_tmpfs(disk, "1m")
    try:
        io = AtomicCheckpointIO()
        target = disk / "checkpoints" / "last.ckpt"
        io.save_checkpoint({"w": torch.ones(50_000)}, target)  # 200 KB: fits
        with pytest.raises(CheckpointWriteError) as info:
            io.save_checkpoint({"w": torch.ones(500_000)}, target)  # 2 MB: disk full
        message = str(info.value)
        assert str(target) in message and "No space left" in message and "\n" not in message
        assert torch.load(target, weights_only=True)["w"].shape == (50_000,)  # intact
        assert [p.name for p in target.parent.iterdir()] == ["last.ckpt"]  # no partial file
    finally:
        subprocess.run(["umount", str(disk)], check=False)


def test_a_killed_write_leaves_no_partial_file_behind(tmp_path):
    """A partial file of a killed write (same directory, never in TMPDIR) is removed by the
    next save; the target is never half-written."""
    target = tmp_path / "last.ckpt"
    partial = tmp_path / ".last.ckpt.12345.partial"
    partial.write_bytes(b"\0" * 1000)
    AtomicCheckpointIO().save_checkpoint({"step": 3}, target)
    assert torch.load(target, weights_only=True) == {"step": 3}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.ckpt"]


def test_the_clock_is_not_needed_for_exactness():
    """Without max_time the schedule depends on the step alone (resumes are exact)."""
    param = torch.nn.Parameter(torch.zeros(1))
    a = BudgetCosineLR(torch.optim.SGD([param], lr=1.0), total_steps=10, eta_min=0.0)
    time.sleep(0.01)
    a.step()
    b = BudgetCosineLR(torch.optim.SGD([param], lr=1.0), total_steps=10, eta_min=0.0)
    b.step()
    assert a.get_last_lr() == b.get_last_lr()


class SigtermAt(L.Callback):
    """Delivers what SIGTERM (a cluster's pre-emption) does, after batch ``batch`` of epoch
    ``epoch``: Lightning stops at the end of that step and last.ckpt is written mid-epoch."""

    def __init__(self, epoch: int, batch: int) -> None:
        self.epoch, self.batch = epoch, batch

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.current_epoch == self.epoch and batch_idx == self.batch:
            trainer._signal_connector.received_sigterm = True


def test_resume_mid_epoch_continues_with_the_unseen_batches(tmp_path):
    """Stopped mid-epoch, resumed: the loader skips the batches already trained on, the
    generators continue, and the run ends where the uninterrupted one does."""
    _run(tmp_path / "full", "trainer.max_epochs=2")
    cfg = compose("train", [*TINY, "trainer.max_epochs=2"], tmp_path / "stopped")
    with open_dict(cfg):
        cfg.callbacks.sigterm = {"_target_": f"{__name__}.SigtermAt", "epoch": 1, "batch": 1}
    with pytest.raises(SIGTERMException):
        train(cfg)
    last = tmp_path / "stopped" / "checkpoints" / "last.ckpt"
    assert torch.load(last, weights_only=True)["global_step"] == 5 + 2  # 5 batches an epoch
    _run(tmp_path / "resumed", "trainer.max_epochs=2", f"ckpt_path={last}")
    a = _weights(tmp_path / "full" / "checkpoints" / "last.ckpt")
    b = _weights(tmp_path / "resumed" / "checkpoints" / "last.ckpt")
    worst = max((a[k].float() - b[k].float()).abs().max().item() for k in a)
    assert worst <= 1e-5, worst
