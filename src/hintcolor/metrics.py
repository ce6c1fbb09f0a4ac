"""The image-quality metrics: what they are (:data:`METRICS`) and how each is computed per image.

Training (``val/psnr``, ``val/ssim``, ``test/...``), the evaluation (``eval/<method>/psnr@k``,
its tables and JSON) and the run comparison (its ``last val/...`` columns) all iterate over
:data:`METRICS`: a new metric is an :class:`ImageScorer` method and one entry there. Every
metric is per image on RGB in [0, 1], then averaged over images (as Zhang et al. report PSNR).

SSIM is torchmetrics' definition (Gaussian window 11x11, sigma 1.5, reflect padding, k1 0.01,
k2 0.03, the mean over the full image), computed differently: the window is separable, so the
local means are two matrix products with banded (H, H) and (W, W) blur matrices that have the
reflect padding folded in, and the target's local statistics are computed once for every
prediction scored against it. An evaluation scores ~60 predictions per image (every method at
every hint count); on a CPU torchmetrics' grouped 11x11 convolution took a quarter of its time,
and a separable grouped convolution is no faster, while a dense matrix product runs at the
BLAS's speed. The values agree with torchmetrics to float32 rounding (tests/test_metrics.py).

Importing this module does not import torch (only building an SSIM window does): the run
comparison (``src/compare.py``) reads :data:`METRICS` and nothing else, and starts in a
fraction of a second rather than after torch's seconds-long import.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch
    from torch import Tensor

SSIM_SIGMA = 1.5
SSIM_RADIUS = 5  # torchmetrics: int(3.5 sigma + 0.5) -> an 11-tap window
SSIM_C1 = 0.01**2  # (k1 * data_range)^2 with data_range 1
SSIM_C2 = 0.03**2


def psnr_per_image(pred: Tensor, target: Tensor) -> Tensor:
    """(N,) PSNR in dB of (N, C, H, W) images in [0, 1]."""
    mse = (pred - target).pow(2).flatten(1).mean(dim=1).clamp_min(1e-10)
    return 10.0 * (1.0 / mse).log10()


def _blur_matrix(n: int, dtype: torch.dtype, device: torch.device) -> Tensor:
    """(n, n) M with (M @ x)[i] = the 11-tap Gaussian mean of x around i, x reflect-padded."""
    import torch  # here, not at the top: see the module's docstring

    offsets = torch.arange(-SSIM_RADIUS, SSIM_RADIUS + 1, dtype=torch.float64)
    window = torch.exp(-((offsets / SSIM_SIGMA) ** 2) / 2)
    window /= window.sum()
    if n <= SSIM_RADIUS:
        raise ValueError(f"SSIM needs images of at least {SSIM_RADIUS + 1} pixels a side, got {n}")
    matrix = torch.zeros(n, n, dtype=torch.float64)
    rows = torch.arange(n)
    for tap, weight in zip(offsets.long(), window, strict=True):
        source = (rows + tap).abs()  # reflect at the start: -1 -> 1
        source = torch.where(source > n - 1, 2 * (n - 1) - source, source)  # and at the end
        matrix.index_put_((rows, source), weight.expand(n), accumulate=True)
    return matrix.to(dtype=dtype, device=device)


class ImageScorer:
    """PSNR and SSIM of any number of predictions against one batch of targets."""

    def __init__(self, target: Tensor) -> None:
        self.target = target
        h, w = target.shape[-2:]
        self.blur_h = _blur_matrix(h, target.dtype, target.device)
        self.blur_w_t = _blur_matrix(w, target.dtype, target.device).T.contiguous()
        self.mu_target = self._blur(target)
        self.target_sq = self._blur(target.square())

    def _blur(self, x: Tensor) -> Tensor:
        """The Gaussian-weighted local mean of (N, C, H, W) maps."""
        return self.blur_h @ (x @ self.blur_w_t)

    def psnr(self, pred: Tensor) -> Tensor:
        return psnr_per_image(pred, self.target)

    def ssim(self, pred: Tensor) -> Tensor:
        """(N,) SSIM of ``pred`` (N, C, H, W) against the targets."""
        mu_pred = self._blur(pred)
        pred_sq = self._blur(pred.square())
        pred_target = self._blur(pred * self.target)
        mu_pred_sq, mu_target_sq = mu_pred.square(), self.mu_target.square()
        mu_pred_target = mu_pred * self.mu_target
        var_pred = (pred_sq - mu_pred_sq).clamp_min(0.0)
        var_target = (self.target_sq - mu_target_sq).clamp_min(0.0)
        covariance = pred_target - mu_pred_target
        ssim = ((2 * mu_pred_target + SSIM_C1) * (2 * covariance + SSIM_C2)) / (
            (mu_pred_sq + mu_target_sq + SSIM_C1) * (var_pred + var_target + SSIM_C2)
        )
        return ssim.flatten(1).mean(dim=1)


def ssim_per_image(pred: Tensor, target: Tensor) -> Tensor:
    """(N,) SSIM of (N, C, H, W) images in [0, 1] (torchmetrics' definition)."""
    return ImageScorer(target).ssim(pred)


@dataclass(frozen=True)
class Metric:
    """How a metric is named, computed and shown."""

    name: str  # logged as val/<name>, test/<name> and eval/<method>/<name>@<k>
    title: str  # its table heading
    per_image: Callable[[ImageScorer, Tensor], Tensor]  # (scorer, pred (N,C,H,W)) -> (N,)
    digits: int  # decimals in tables
    # the evaluation also reports its standard deviation over images (<name>_std)
    spread: bool = False


METRICS = (
    Metric("psnr", "PSNR", ImageScorer.psnr, digits=2, spread=True),
    Metric("ssim", "SSIM", ImageScorer.ssim, digits=4),
)
# The headline metric: in progress bars and plots, and the one that selects checkpoints and
# trials (conf/callbacks monitor val/psnr, sweeps optimise val/psnr_best).
HEADLINE = METRICS[0]
