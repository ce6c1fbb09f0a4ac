"""What ``src/export.py`` does: a trained model as an ONNX graph with dynamic height and width.

The graph is the whole backbone as the Lightning module runs it (hint prior included): input
``input`` (N, 4, H, W) = normalised L, hint a, hint b, mask; output ``ab`` (N, 2, H, W) in
(-1, 1), normalised as in :mod:`hintcolor.data.color` (ab * 110 = CIE a*, b*). Exported in
fp32, any H and W (the backbone pads to its stride inside the graph).
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from torch import nn

log = logging.getLogger(__name__)


def export_onnx(backbone: nn.Module, path: Path, example_size: int = 256, opset: int = 18) -> Path:
    """Write ``backbone`` to ``path`` with batch, height and width dynamic; returns the path."""
    backbone = backbone.eval().float().to(memory_format=torch.contiguous_format)
    example = torch.zeros(1, 4, example_size, example_size)
    example[:, 0] = torch.linspace(-0.5, 0.5, example_size)  # some lightness, not a blank input
    dims = {0: torch.export.Dim("batch", max=1024)}
    dims |= {2: torch.export.Dim.DYNAMIC, 3: torch.export.Dim.DYNAMIC}
    path.parent.mkdir(parents=True, exist_ok=True)
    program = torch.onnx.export(
        backbone,
        (example,),
        dynamo=True,
        input_names=["input"],
        output_names=["ab"],
        dynamic_shapes=({0: dims[0], 2: dims[2], 3: dims[3]},),
        opset_version=opset,
        verbose=False,
    )
    program.save(str(path))
    return path
