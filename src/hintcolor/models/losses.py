"""The training loss: a weighted sum of terms on ab and on RGB; any weight may be 0."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchmetrics.functional.image import structural_similarity_index_measure

from hintcolor.data.color import normalized_lab_to_rgb


class ColorizationLoss(nn.Module):
    """``huber * smoothL1(ab) + l1 * L1(ab) + mse * MSE(ab) + ssim * (1 - SSIM(RGB))
    + distribution * CE(colour distribution)``.

    The Huber term is PyTorch's smooth-L1 (Huber divided by ``huber_delta``), so its
    gradient has unit scale for large errors and its weight mixes evenly with L1.
    ``huber_delta`` is in normalised ab units (Zhang et al. use 1/110, one ab unit).
    The distribution term is computed by the colour-distribution head
    (:meth:`ColorDistributionHead.distribution_loss`, which owns the bins and the colour
    prior) and only weighted here.
    """

    def __init__(
        self,
        huber: float = 1.0,
        huber_delta: float = 1.0 / 110.0,
        l1: float = 0.0,
        mse: float = 0.0,
        ssim: float = 0.0,
        distribution: float = 0.0,
    ) -> None:
        super().__init__()
        self.weights = {
            "huber": huber,
            "l1": l1,
            "mse": mse,
            "ssim": ssim,
            "distribution": distribution,
        }
        if any(w < 0 for w in self.weights.values()) or not any(self.weights.values()):
            raise ValueError(f"loss weights must be >= 0 and not all 0, got {self.weights}")
        if huber_delta <= 0:
            raise ValueError(f"loss.huber_delta must be > 0, got {huber_delta}")
        self.huber_delta = huber_delta

    def forward(
        self,
        pred_ab: Tensor,
        target_ab: Tensor,
        l_norm: Tensor,
        distribution: Tensor | None = None,
    ) -> dict[str, Tensor]:
        """Returns every active term and their weighted sum under ``"loss"`` (in fp32).
        ``distribution``: the head's cross-entropy, needed when its weight is > 0."""
        if self.weights["distribution"] and distribution is None:
            raise ValueError("loss.distribution > 0 needs the colour-distribution head's loss")
        with torch.autocast(pred_ab.device.type, enabled=False):
            terms = self._terms(pred_ab.float(), target_ab.float(), l_norm.float())
        if self.weights["distribution"]:
            terms["distribution"] = distribution.float()
        terms["loss"] = torch.stack([self.weights[k] * v for k, v in terms.items()]).sum()
        return terms

    def _terms(self, pred_ab: Tensor, target_ab: Tensor, l_norm: Tensor) -> dict[str, Tensor]:
        terms: dict[str, Tensor] = {}
        if self.weights["huber"]:
            terms["huber"] = F.smooth_l1_loss(pred_ab, target_ab, beta=self.huber_delta)
        if self.weights["l1"]:
            terms["l1"] = F.l1_loss(pred_ab, target_ab)
        if self.weights["mse"]:
            terms["mse"] = F.mse_loss(pred_ab, target_ab)
        if self.weights["ssim"]:
            pred_rgb = normalized_lab_to_rgb(l_norm, pred_ab)
            target_rgb = normalized_lab_to_rgb(l_norm, target_ab)
            ssim = structural_similarity_index_measure(pred_rgb, target_rgb, data_range=1.0)
            terms["ssim"] = 1.0 - ssim
        return terms
