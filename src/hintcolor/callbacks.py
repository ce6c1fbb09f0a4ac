"""Callbacks of our own (Lightning's are configured directly in conf/callbacks/)."""

from __future__ import annotations

import logging
import random
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch import Callback
from lightning.pytorch.callbacks import Timer
from lightning.pytorch.loggers import TensorBoardLogger, WandbLogger
from PIL import Image

from hintcolor.checkpoints import CheckpointWriteError
from hintcolor.data.sampler import mix_seed
from hintcolor.visualization import PANEL_TITLES, colorization_panels, to_uint8_images

log = logging.getLogger(__name__)


class ValidationImages(Callback):
    """Every ``every_n_epochs`` (and at the last epoch), the first ``num_images`` validation
    photos as panels - gray | hints | prediction | ground truth - to W&B, TensorBoard and a
    PNG in ``save_dir``.

    Validation hints are seeded per image, so the panels of successive epochs show the same
    photo with the same hints: only the prediction changes as training goes.
    """

    def __init__(self, every_n_epochs: int = 5, num_images: int = 4, save_dir: str | None = None):
        if every_n_epochs < 1 or num_images < 1:
            raise ValueError("every_n_epochs and num_images must be >= 1")
        self.every_n_epochs = every_n_epochs
        self.num_images = num_images
        self.save_dir = Path(save_dir) if save_dir else None
        self._panels: list[torch.Tensor] = []
        self._hints: list[int] = []

    def _due(self, trainer: L.Trainer) -> bool:
        if trainer.sanity_checking or not trainer.is_global_zero:
            return False
        epoch = trainer.current_epoch
        last = trainer.max_epochs is not None and epoch + 1 >= trainer.max_epochs
        return epoch % self.every_n_epochs == 0 or last

    def on_validation_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._panels, self._hints = [], []

    def on_validation_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        need = self.num_images - sum(len(p) for p in self._panels)
        if batch is None or need <= 0 or not self._due(trainer):
            return
        part = {k: v[:need] for k, v in batch.items()}
        with torch.no_grad():
            pred = pl_module(part["input"])
        self._panels.append(colorization_panels(part, pred).cpu())
        self._hints += part["hint_count"].tolist()

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not self._panels:
            return
        images = to_uint8_images(torch.cat(self._panels))
        epoch, step = trainer.current_epoch, trainer.global_step
        captions = [
            f"val #{i}, {k} hints: {' | '.join(PANEL_TITLES)}" for i, k in enumerate(self._hints)
        ]
        if self.save_dir is not None:
            self.save_dir.mkdir(parents=True, exist_ok=True)
            Image.fromarray(np.concatenate(images, axis=0)).save(
                self.save_dir / f"val_epoch{epoch:03d}.png"
            )
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger):
                logger.log_image("val/samples", images, step=step, caption=captions)
            elif isinstance(logger, TensorBoardLogger):
                logger.experiment.add_images(
                    "val/samples", np.stack(images), global_step=step, dataformats="NHWC"
                )
        self._panels, self._hints = [], []


class LastCheckpoint(Callback):
    """``last.ckpt``: the run as it stands, after every epoch and at every stop.

    Lightning's ``save_last`` rewrites it only when a top-k checkpoint is saved, so a resume
    lost every epoch since the last new best. This one is written after each training epoch
    (after its validation, so the running best is in it) and whenever training stops: the
    time limit or ``max_steps`` (``on_train_end``), SIGTERM, Ctrl+C or an error
    (``on_exception``). A kill -9 loses at most the epoch in progress.
    """

    def __init__(self, dirpath: str, filename: str = "last") -> None:
        self.path = Path(dirpath) / f"{filename}.ckpt"
        self._saved_step: int | None = None

    def save(self, trainer: L.Trainer) -> None:
        if trainer.sanity_checking or trainer.state.fn != "fit" or trainer.fast_dev_run:
            return
        if trainer.global_step == self._saved_step:  # nothing trained since the last save
            return
        trainer.save_checkpoint(self.path, weights_only=False)
        self._saved_step = trainer.global_step

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.save(trainer)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.save(trainer)

    def on_exception(
        self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException
    ) -> None:
        if isinstance(exception, CheckpointWriteError):  # the disk refused: do not try again
            return
        try:
            self.save(trainer)
        except Exception as exc:  # the original error is what the user must see
            log.error(f"could not save {self.path} after {type(exception).__name__}: {exc}")
            return
        log.warning(
            f"{type(exception).__name__} at epoch {trainer.current_epoch + 1}, step "
            f"{trainer.global_step}: saved {self.path}; resume with ckpt_path={self.path}"
        )


def _duration(seconds: float) -> str:
    return str(timedelta(seconds=round(seconds)))


class EpochSummary(Callback):
    """One log line per epoch - loss, val/psnr, elapsed, ETA - whatever the terminal.

    The progress bar draws only on a terminal; a run under nohup, SLURM or a pipe otherwise
    shows nothing for hours. Log lines reach the run's ``train.log`` and stdout alike.
    """

    def __init__(self) -> None:
        self._start: float | None = None
        self._first_epoch = 0

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._start = time.monotonic()
        self._first_epoch = trainer.current_epoch  # > 0 when resumed
        if trainer.current_epoch or trainer.global_step:
            mid = trainer.fit_loop.epoch_loop.batch_progress.current.completed
            note = f", continuing after its first {mid} batches" if mid else ""
            log.info(
                f"resumed at epoch {trainer.current_epoch + 1}, step {trainer.global_step}{note}"
            )

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.is_global_zero or self._start is None:
            return
        elapsed = time.monotonic() - self._start
        done = trainer.current_epoch + 1
        total = trainer.max_epochs if trainer.max_epochs and trainer.max_epochs > 0 else None
        metrics = trainer.callback_metrics
        parts = [f"epoch {done}/{total or '?'}"]
        for key, fmt in (("train/loss", ".4f"), ("val/psnr", ".2f"), ("val/psnr_best", ".2f")):
            if key in metrics:
                parts.append(f"{key} {float(metrics[key]):{fmt}}")
        parts.append(f"elapsed {_duration(elapsed)}")
        if total:
            per_epoch = elapsed / max(1, done - self._first_epoch)
            eta = per_epoch * (total - done)
            timer = time_limit(trainer)
            if timer is not None and timer.time_remaining() is not None:
                eta = min(eta, max(0.0, timer.time_remaining()))
            parts.append(f"ETA {_duration(eta)}")
        log.info(", ".join(parts))


def time_limit(trainer: L.Trainer) -> Timer | None:
    """Lightning's ``max_time`` callback, when the run has a time limit."""
    return next((c for c in trainer.callbacks if isinstance(c, Timer)), None)


class EpochSeed(Callback):
    """Each epoch's randomness in this process - training hints, dropout - is a function of
    (seed, epoch), so a run resumed at an epoch boundary continues exactly as the
    uninterrupted run would have (same final weights in fp32). Data order and crops are
    keyed the same way by :class:`~hintcolor.data.sampler.EpochSampler`.
    """

    def __init__(self, seed: int) -> None:
        self.seed = int(seed)
        self._restored: dict[str, Any] | None = None

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        seed = mix_seed(self.seed, trainer.current_epoch)
        torch.manual_seed(seed)
        np.random.seed(seed)
        random.seed(seed)

    # Mid-epoch (SIGTERM, time limit) the generators' states are saved, and put back once
    # training restarts - after the sanity check and loader start-up, which draw from them.
    def state_dict(self) -> dict[str, Any]:
        name, keys, pos, has_gauss, gauss = np.random.get_state()
        return {
            "torch": torch.get_rng_state(),
            "numpy": [name, keys.tolist(), pos, has_gauss, gauss],
            "python": random.getstate(),
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._restored = state_dict

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._restored:
            state, self._restored = self._restored, None
            torch.set_rng_state(state["torch"])
            name, keys, pos, has_gauss, gauss = state["numpy"]
            np.random.set_state((name, np.array(keys, dtype=np.uint32), pos, has_gauss, gauss))
            version, internal, gauss_next = state["python"]
            random.setstate((version, tuple(internal), gauss_next))
