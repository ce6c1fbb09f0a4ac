"""Callbacks of our own (Lightning's are configured directly in conf/callbacks/)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch import Callback
from lightning.pytorch.loggers import TensorBoardLogger, WandbLogger
from PIL import Image

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
