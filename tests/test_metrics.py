"""The metrics table and its per-image PSNR/SSIM (training, evaluation and comparison use them)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torchmetrics.functional.image import structural_similarity_index_measure

from hintcolor.metrics import HEADLINE, METRICS, ImageScorer, psnr_per_image, ssim_per_image


def _photos(kodak_files: list[Path], size: tuple[int, int]) -> torch.Tensor:
    h, w = size
    crops = [np.asarray(Image.open(p).convert("RGB"))[:h, :w] for p in kodak_files[:3]]
    return torch.from_numpy(np.stack(crops)).permute(0, 3, 1, 2).float() / 255.0


@pytest.mark.parametrize("size", [(64, 64), (37, 90)])
def test_ssim_is_torchmetrics_ssim(kodak_files: list[Path], size: tuple[int, int]) -> None:
    target = _photos(kodak_files, size)
    noisy = (target + 0.08 * torch.randn_like(target)).clamp(0, 1)
    blurred = torch.nn.functional.avg_pool2d(target, 3, 1, 1, count_include_pad=False)
    for pred in (noisy, blurred, target):
        expected = structural_similarity_index_measure(
            pred, target, data_range=1.0, reduction="none"
        )
        assert torch.allclose(ssim_per_image(pred, target), expected, atol=2e-5)
    assert torch.allclose(ssim_per_image(target, target), torch.ones(3), atol=1e-5)
    assert (ssim_per_image(noisy, target) < 0.95).all()


def test_one_scorer_scores_many_predictions_like_separate_calls(kodak_files: list[Path]) -> None:
    target = _photos(kodak_files, (48, 48))
    scorer = ImageScorer(target)
    for scale in (0.02, 0.2):
        pred = (target + scale * torch.randn_like(target)).clamp(0, 1)
        assert torch.equal(scorer.ssim(pred), ssim_per_image(pred, target))
        assert torch.equal(scorer.psnr(pred), psnr_per_image(pred, target))


def test_psnr_of_a_known_error() -> None:
    target = torch.zeros(2, 3, 8, 8)
    pred = torch.full_like(target, 0.1)  # MSE 0.01 -> 20 dB
    assert torch.allclose(psnr_per_image(pred, target), torch.tensor([20.0, 20.0]))


def test_the_table_scores_with_the_per_image_functions(kodak_files: list[Path]) -> None:
    target = _photos(kodak_files, (32, 40))
    pred = (target + 0.1 * torch.randn_like(target)).clamp(0, 1)
    scorer = ImageScorer(target)
    by_name = {m.name: m.per_image(scorer, pred) for m in METRICS}
    assert torch.equal(by_name["psnr"], psnr_per_image(pred, target))
    assert torch.equal(by_name["ssim"], ssim_per_image(pred, target))
    assert len(by_name) == len(METRICS)  # names are what runs log: each once
    assert HEADLINE.name == "psnr"  # conf/ monitors val/psnr; sweeps optimise val/psnr_best
