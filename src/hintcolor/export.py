"""What ``src/export.py`` does: a trained model as an ONNX graph with dynamic height and width.

The graph is the whole backbone as the Lightning module runs it (hint prior included): input
``input`` (N, 4, H, W) = normalised L, hint a, hint b, mask; output ``ab`` (N, 2, H, W) in
(-1, 1), normalised as in :mod:`hintcolor.data.color` (ab * 110 = CIE a*, b*). Exported in
fp32, any H and W (the backbone pads to its stride inside the graph).

A model with a colour-distribution head (``color_head=default``) has a second output,
``ab_distribution`` (N, Q, ceil(H/4), ceil(W/4)): the probabilities of the Q ab bins at 1/4
resolution; the bins' (a*, b*) centres are in the graph's metadata (``ab_bins``, JSON).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import torch
from torch import Tensor, nn

from hintcolor.models.color_head import ColorDistributionHead

log = logging.getLogger(__name__)


class WithDistribution(nn.Module):
    """ab and the head's bin probabilities, as the exported graph returns them."""

    def __init__(self, model: ColorDistributionHead) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        ab, logits = self.model.forward_with_distribution(x)
        return ab, logits.softmax(dim=1)


def export_onnx(backbone: nn.Module, path: Path, example_size: int = 256, opset: int = 18) -> Path:
    """Write ``backbone`` to ``path`` with batch, height and width dynamic; returns the path."""
    backbone = backbone.eval().float().to(memory_format=torch.contiguous_format)
    head = isinstance(backbone, ColorDistributionHead)
    graph = WithDistribution(backbone).eval() if head else backbone
    example = torch.zeros(1, 4, example_size, example_size)
    example[:, 0] = torch.linspace(-0.5, 0.5, example_size)  # some lightness, not a blank input
    dims = {0: torch.export.Dim("batch", max=1024)}
    dims |= {2: torch.export.Dim.DYNAMIC, 3: torch.export.Dim.DYNAMIC}
    path.parent.mkdir(parents=True, exist_ok=True)
    program = torch.onnx.export(
        graph,
        (example,),
        dynamo=True,
        input_names=["input"],
        output_names=["ab", "ab_distribution"] if head else ["ab"],
        dynamic_shapes=({0: dims[0], 2: dims[2], 3: dims[3]},),
        opset_version=opset,
        verbose=False,
    )
    if head:
        bins = [[float(a), float(b)] for a, b in backbone.bins.tolist()]
        program.model.metadata_props["ab_bins"] = json.dumps(bins)
    program.save(str(path))
    return path
