"""The LightningModule: any backbone, the loss, metrics, optimiser and schedule."""

from __future__ import annotations

import inspect
from typing import Any

import lightning as L
import torch
from hydra.utils import instantiate
from torch import Tensor, nn
from torchmetrics import MaxMetric, MeanMetric

from hintcolor.data.color import normalized_lab_to_rgb
from hintcolor.metrics import HEADLINE, METRICS, ImageScorer
from hintcolor.models.color_head import ColorDistributionHead
from hintcolor.models.losses import ColorizationLoss
from hintcolor.utils.hardware import avoid_onednn_strided_1x1_bug


class ColorizationModule(L.LightningModule):
    """Predicts ab from (L, hint ab, mask) with whatever backbone it is given.

    ``optimizer`` and ``scheduler`` are plain config mappings (Hydra ``_target_`` with
    ``_partial_: true``), so checkpoints hold no pickled objects and load with
    ``weights_only=True``. ``config`` is the run's resolved configuration, stored in every
    checkpoint so ``eval.py`` can rebuild the backbone from the checkpoint alone.

    With a colour-distribution head (:class:`ColorDistributionHead`) and ``loss.distribution``
    > 0, every step runs :meth:`~ColorDistributionHead.forward_with_distribution` (ab and bin
    logits in one pass) and adds the head's cross-entropy. ``freeze_backbone``: only the head
    trains; the network under it gets no gradients and stays in eval mode, so its batch-norm
    statistics do not move and its ab output stays exactly what it was.
    """

    def __init__(
        self,
        backbone: nn.Module,
        loss: dict[str, float],
        optimizer: dict[str, Any],
        scheduler: dict[str, Any] | None = None,
        channels_last: bool = False,
        freeze_backbone: bool = False,
        config: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["backbone", "config"], logger=False)
        self.backbone = backbone
        self.criterion = ColorizationLoss(**loss)
        has_head = isinstance(backbone, ColorDistributionHead)
        self.with_distribution = has_head and self.criterion.weights["distribution"] > 0
        if self.criterion.weights["distribution"] > 0 and not has_head:
            raise ValueError("loss.distribution > 0 needs a colour-distribution head")
        self.freeze_backbone = freeze_backbone
        if freeze_backbone:
            if not has_head:
                raise ValueError("freeze_backbone needs a colour-distribution head to train")
            backbone.network.requires_grad_(False)
            backbone.network.eval()
        self.config = config
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.backbone.to(memory_format=self.memory_format)
        avoid_onednn_strided_1x1_bug(self.backbone)  # a oneDNN bug would crash or hang training

        # Each metric per image, then averaged over the stage's images (hintcolor.metrics).
        self.scores = nn.ModuleDict(
            {
                stage: nn.ModuleDict({m.name: MeanMetric() for m in METRICS})
                for stage in ("val", "test")
            }
        )
        # The running best is part of the checkpoint, so a resumed run still knows it.
        self.val_psnr_best = MaxMetric()
        self.val_psnr_best.persistent(True)
        self.train_loss = MeanMetric()

    def forward(self, x: Tensor) -> Tensor:
        """(B,4,H,W) model input -> normalised ab (B,2,H,W), float32."""
        return self.backbone(x.contiguous(memory_format=self.memory_format)).float()

    def train(self, mode: bool = True) -> ColorizationModule:
        super().train(mode)
        if getattr(self, "freeze_backbone", False):  # Lightning switches all at every stage
            self.backbone.network.eval()
        return self

    def _predict_and_score(self, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        """(ab float32, loss terms); with the head's loss when it is trained."""
        if not self.with_distribution:
            pred = self(batch["input"])
            return pred, self.criterion(pred, batch["ab"], batch["l"])
        x = batch["input"].contiguous(memory_format=self.memory_format)
        pred, logits = self.backbone.forward_with_distribution(x)
        # the running colour prior (class rebalancing) counts training targets only
        distribution = self.backbone.distribution_loss(logits, batch["ab"], self.training)
        pred = pred.float()
        return pred, self.criterion(pred, batch["ab"], batch["l"], distribution)

    def training_step(self, batch: dict[str, Tensor] | None, batch_idx: int) -> Tensor | None:
        if batch is None:  # every photo in this batch failed to load: skip the step
            return None
        _, terms = self._predict_and_score(batch)
        bs = batch["input"].shape[0]
        self.train_loss(terms["loss"].detach())
        for name, value in terms.items():
            self.log(f"train/{name}", value.detach(), batch_size=bs, prog_bar=name == "loss")
        self.log("train/hints_per_image", batch["hint_count"].float().mean(), batch_size=bs)
        return terms["loss"]

    def _evaluate(self, batch: dict[str, Tensor] | None, stage: str) -> None:
        if batch is None:
            return
        pred, terms = self._predict_and_score(batch)
        # Metrics in fp32 whatever the training precision, so runs compare across precisions.
        with torch.autocast(pred.device.type, enabled=False):
            rgb = normalized_lab_to_rgb(batch["l"], pred).clamp(0, 1)
            scorer = ImageScorer(batch["rgb"])
            for metric in METRICS:
                self.scores[stage][metric.name].update(metric.per_image(scorer, rgb))
        bs = pred.shape[0]
        self.log(f"{stage}/loss", terms["loss"], batch_size=bs, sync_dist=True)
        if "distribution" in terms:
            self.log(f"{stage}/distribution", terms["distribution"], batch_size=bs, sync_dist=True)
        for metric in METRICS:
            score = self.scores[stage][metric.name]
            self.log(f"{stage}/{metric.name}", score, batch_size=bs, prog_bar=metric is HEADLINE)

    def validation_step(self, batch: dict[str, Tensor] | None, batch_idx: int) -> None:
        self._evaluate(batch, "val")

    def test_step(self, batch: dict[str, Tensor] | None, batch_idx: int) -> None:
        self._evaluate(batch, "test")

    def on_validation_epoch_end(self) -> None:
        # The sanity check's validation must not count as the best epoch.
        if self._trainer is not None and self._trainer.sanity_checking:
            return
        # torchmetrics syncs across DDP processes in compute(). val/psnr_best is what sweeps
        # optimise (optimized_metric).
        self.val_psnr_best(self.scores["val"][HEADLINE.name].compute())
        self.log(f"val/{HEADLINE.name}_best", self.val_psnr_best.compute(), prog_bar=True)

    def configure_optimizers(self) -> dict[str, Any]:
        trainable = [p for p in self.parameters() if p.requires_grad]  # not a frozen network
        optimizer = instantiate(self.hparams.optimizer)(params=trainable)
        sched_cfg = self.hparams.scheduler
        if not sched_cfg or sched_cfg.get("scheduler") is None:
            return {"optimizer": optimizer}
        factory = instantiate(sched_cfg["scheduler"])
        run_length = {}
        if "total_steps" in inspect.signature(factory).parameters:  # OneCycleLR, BudgetCosineLR
            run_length["total_steps"] = self.trainer.estimated_stepping_batches
        scheduler = factory(optimizer=optimizer, **run_length)
        return {
            "optimizer": optimizer,
            "lr_scheduler": {
                "scheduler": scheduler,
                "interval": sched_cfg.get("interval", "epoch"),
                "monitor": sched_cfg.get("monitor", "val/loss"),
            },
        }

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["hintcolor_config"] = self.config

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # Checkpoints written before the running best was stored: it starts afresh.
        checkpoint["state_dict"].setdefault(
            "val_psnr_best.max_value", self.val_psnr_best.max_value.clone()
        )
