"""A non-learned first guess of the colours from the hints, which a backbone then corrects.

A network trained for minutes on a few hundred photos learns little about carrying one hint's
colour across a whole image, which plain interpolation of the hints does for free (IDW beats
such a network at few hints). :class:`PushPullResidual` gives the backbone the interpolated
colours as two extra input channels and makes it predict a correction to them, so training
starts from interpolation and spends its steps on what interpolation cannot know: edges,
objects, where a colour should stop.

The interpolation is push-pull (Gortler et al., "The Lumigraph", 1996): a pyramid of
normalised averages of the hints, filled back top-down. Unlike IDW it needs only the dense
hint maps (ab, mask) every backbone already receives, costs O(H W) whatever the number of
hints, and is made of pooling and resizing alone, so it exports to ONNX with the network.

Plain push-pull ignores the photo, so a hint's colour spreads across object boundaries.
``edge_sweeps > 0`` makes it edge-aware (``hint_prior=guided``): at every pyramid level, after
the push, a few sweeps of Levin et al.'s (2004) neighbour averaging - each pixel becomes the
mean of its 3x3 neighbours weighted by luminance similarity - with the hints held in
proportion to their weight at that level. A cascade of cheap Jacobi sweeps, not a solve:
O(H W) like push-pull, and on 16 training-pool photos as close to the truth as the exact
Levin solve (PSNR@10 26.35 dB vs 26.30; push-pull 26.02, IDW 26.06; 256 px).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

# Binomial [1, 3, 3, 1] / 8 in each direction: the pull's low-pass filter. A 2x2 box (the
# textbook pull) leaves the quadtree's blocks in the fill; this smoother kernel gave 0.1-0.3 dB
# more PSNR at 5-500 hints, measured on 64 photos of the training pool (not the test images).
_TAPS = torch.tensor([1.0, 3.0, 3.0, 1.0]) / 8


def _pull(x: Tensor) -> Tensor:
    """Half resolution (ceil), as sums: each pixel's weight is spread over the coarse cells."""
    kernel = (_TAPS[:, None] * _TAPS[None, :]).to(x.device, x.dtype) * 4
    channels = x.shape[1]
    # padding (1, 2) gives ceil(n / 2) outputs for odd and even n alike, without shape logic
    x = F.pad(x, (1, 2, 1, 2))
    return F.conv2d(x, kernel.expand(channels, 1, 4, 4), stride=2, groups=channels)


# Levin et al.'s floor of the local luminance variance (luma in [0, 1]): flat regions get
# sharply peaked weights without dividing by zero.
_MIN_VARIANCE = 2e-6


_OFFSETS = [(i, j) for i in range(3) for j in range(3)]  # 3x3 neighbours; (1, 1) the centre


def _shifted(x: Tensor, pad_mode: str = "replicate") -> list[Tensor]:
    """The 9 neighbours of every pixel as shifted views of ``x`` padded by one pixel.
    Slices rather than unfold: cheaper, and exports to ONNX with dynamic sizes."""
    h, w = x.shape[-2:]
    p = F.pad(x, (1, 1, 1, 1), mode=pad_mode)
    return [p[..., i : i + h, j : j + w] for i, j in _OFFSETS]


def luminance_weights(luma: Tensor) -> Tensor:
    """Levin et al. 2004 affinities: (B,1,H,W) luma in [0, 1] -> (B,9,H,W) weights of each
    pixel's 3x3 neighbours (centre 0), w = exp(-(Y_r - Y_s)^2 / (2 var_r)), var_r the window's
    variance (floored), normalised to sum 1. Neighbours outside the image weigh 0; a pixel
    with none (1x1 image) weighs only itself."""
    mean = F.avg_pool2d(luma, 3, stride=1, padding=1, count_include_pad=False)
    square = F.avg_pool2d(luma * luma, 3, stride=1, padding=1, count_include_pad=False)
    two_var = 2 * (square - mean * mean).clamp_min(_MIN_VARIANCE)
    centre = torch.zeros_like(luma)
    diffs = torch.cat([y - luma if n != 4 else centre for n, y in enumerate(_shifted(luma))], 1)
    inside = _shifted(torch.ones_like(luma), "constant")
    inside = torch.cat([m if n != 4 else centre for n, m in enumerate(inside)], 1)
    # exponents capped and negligible weights zeroed: denormal floats (exp(-100) ~ 4e-44)
    # slow every later multiplication by them ~30x on x86
    w = torch.exp(-(diffs.pow(2) / two_var).clamp(max=60.0)) * inside
    total = w.sum(1, keepdim=True)  # >= e^-60 for any pixel with a neighbour
    w = w / total.clamp_min(1e-30)
    # a pixel without neighbours (a 1x1 image: the pyramid's top) averages to itself
    itself = (torch.arange(9, device=w.device) == 4).to(w.dtype).view(1, 9, 1, 1)
    return torch.where(total > 0, w * (w > 1e-12), itself)


def _average_neighbours(weights: Tensor, u: Tensor) -> Tensor:
    """sum_s w_rs u_s, accumulated slice by slice (no 9x copy of ``u``)."""
    out = torch.zeros_like(u)
    for n, neighbour in enumerate(_shifted(u)):
        out = torch.addcmul(out, weights[:, n : n + 1], neighbour)
    return out


def edge_guide(luma: Tensor, levels: int = 12) -> list[Tensor]:
    """What the edge-aware fill needs from the photo alone: for ``luma`` (B,1,H,W, in [0, 1])
    and each of push-pull's ``levels`` + 1 levels (finest first), the luminance weights
    (:func:`luminance_weights`) of that level's mean luma per cell."""
    lumas = [luma.float()]
    for _ in range(levels):
        ones = torch.ones_like(lumas[-1])
        lumas.append(_pull(lumas[-1]) / _pull(ones))
    return [luminance_weights(level) for level in lumas]


def push_pull(
    ab: Tensor,
    mask: Tensor,
    levels: int = 12,
    luma: Tensor | None = None,
    edge_sweeps: int = 0,
    guide: list[Tensor] | None = None,
) -> Tensor:
    """Fill ab (B,2,H,W) everywhere from the pixels where ``mask`` (B,1,H,W) is 1.

    Pull: halve the resolution ``levels`` times (12: down to 1x1 for sides up to 4096; a 1x1
    level pulls to itself), each level holding the weighted mean hint colour of its cells and
    a weight (hint pixels under it, clamped to 1). Push: from the coarsest level down, a cell
    keeps its own colour in proportion to its weight and takes the coarser level's
    (bilinearly upsampled) for the rest. Hinted pixels keep their colour exactly; with one
    hint the whole image gets its colour; no hints give ab = 0. Computed in float32. The fixed
    number of levels (not "until 1x1") keeps the graph the same for every input size, so it
    exports to ONNX with dynamic height and width.

    With ``luma`` (B,1,H,W, in [0, 1]) and ``edge_sweeps`` > 0, every level is then swept
    that many times with luminance-weighted neighbour averaging (see the module's docstring);
    ``guide``, :func:`edge_guide` of that luma computed beforehand, stands in for ``luma``.
    """
    alpha = mask.float().clamp(0, 1)
    colour = ab.float() * alpha
    if edge_sweeps > 0 and guide is None and luma is not None:
        guide = edge_guide(luma, levels)
    edges = guide is not None and edge_sweeps > 0
    pyramid = [(colour, alpha)]
    for _ in range(levels):
        weight = _pull(alpha)
        alpha = weight.clamp(max=1.0)
        # premultiplied by the clamped weight
        colour = _pull(colour) * (alpha / weight.clamp_min(1e-12))
        pyramid.append((colour, alpha))
    filled = pyramid[-1][0] / pyramid[-1][1].clamp_min(1e-12)
    for level in range(levels, -1, -1):
        colour, alpha = pyramid[level]
        if level < levels:
            coarse = F.interpolate(
                filled, size=colour.shape[-2:], mode="bilinear", align_corners=False
            )
            filled = colour + (1 - alpha) * coarse
        if edges:
            for _ in range(edge_sweeps):
                filled = colour + (1 - alpha) * _average_neighbours(guide[level], filled)
    return filled


class _GuideMemo:
    """The edge guides of the last few single photos a model in inference saw, found again by
    exact equality of the luma: the page's clicks on one photo change only the hints, and the
    guide was ~40 % of the prior's time (3.8 of 9.2 ms at 96x64 px, one thread). Never kept
    through pickling or copying (a model's copy starts empty)."""

    def __init__(self, size: int = 4) -> None:
        self.size, self.entries = size, []

    def __getstate__(self) -> dict:
        return {"size": self.size, "entries": []}

    def guide(self, luma: Tensor, compute: Callable[[Tensor], list[Tensor]]) -> list[Tensor]:
        for n, (key, guide) in enumerate(self.entries):
            if key.shape == luma.shape and torch.equal(key, luma):
                self.entries.insert(0, self.entries.pop(n))
                return guide
        guide = compute(luma)
        self.entries = [(luma.clone(), guide), *self.entries[: self.size - 1]]
        return guide


class PushPullResidual(nn.Module):
    """Wrap a backbone: input (L, hint ab, mask) + push-pull ab; output push-pull ab + correction.
    With ``edge_sweeps`` > 0 the push-pull is the edge-aware one (``hint_prior=guided``).

    The backbone is built with 2 more input channels (:attr:`extra_channels`); it sees the
    same 4-channel model input as any backbone from the outside, so data, metrics, evaluation
    and export need nothing special.
    """

    extra_channels = 2

    def __init__(
        self, backbone: nn.Module, initial_gain: float = 1.0, edge_sweeps: int = 0
    ) -> None:
        super().__init__()
        self.backbone = backbone
        # > 0: the interpolation follows the photo's edges (push_pull's docstring)
        self.edge_sweeps = int(edge_sweeps)
        self.stride: int = backbone.stride
        # Per-channel scale of the correction. At 0 the untrained model *is* the interpolation
        # and moves away from it only as far as training finds it pays (ReZero, Bachlechner
        # et al. 2021): a short run cannot end below its own prior.
        self.gain = nn.Parameter(torch.full((1, 2, 1, 1), float(initial_gain)))
        self._guides = _GuideMemo()

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs) -> None:
        # checkpoints from before the gain: the correction was added as it came (gain 1)
        state_dict.setdefault(prefix + "gain", torch.ones_like(self.gain))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    @property
    def feature_channels(self) -> int:
        return self.backbone.feature_channels

    @property
    def feature_stride(self) -> int:
        return self.backbone.feature_stride

    def _prior_and_input(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(the interpolated ab, float32; the backbone's input: x and that ab)."""
        # float32 even under bf16 autocast: luminance differences of ~1e-3 steer the fill
        with torch.autocast(x.device.type, enabled=False):
            planar = x.float().contiguous()  # NCHW: the fill's many slices are faster so
            luma = planar[:, 0:1] + 0.5  # normalised L in [-0.5, 0.5] -> [0, 1]
            guide = None
            if self.edge_sweeps > 0 and self._memoizable(luma):
                guide = self._guides.guide(luma, edge_guide)
            prior = push_pull(
                planar[:, 1:3],
                planar[:, 3:4],
                luma=luma,
                edge_sweeps=self.edge_sweeps,
                guide=guide,
            )
        layout = (
            torch.channels_last
            if x.is_contiguous(memory_format=torch.channels_last)
            else torch.contiguous_format
        )
        return prior, torch.cat([x, prior.to(x.dtype)], dim=1).contiguous(memory_format=layout)

    def _memoizable(self, luma: Tensor) -> bool:
        """One photo in inference, run eagerly (not training, exporting or compiling)."""
        # the tracers first: a test of the batch size would fix it in an exported graph
        eager = not (
            torch.jit.is_tracing()
            or torch.onnx.is_in_onnx_export()
            or torch.compiler.is_compiling()
        )
        return eager and not self.training and not torch.is_grad_enabled() and luma.shape[0] == 1

    def _combine(self, prior: Tensor, correction: Tensor) -> Tensor:
        return (prior + self.gain * correction.float()).clamp(-1.0, 1.0)

    def forward_features(self, x: Tensor) -> Tensor:
        """The backbone's features of the prior-augmented input (its ``forward_features``)."""
        return self.backbone.forward_features(self._prior_and_input(x)[1])

    def forward_with_features(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(ab, the backbone's features) in one pass, for a side head."""
        prior, inputs = self._prior_and_input(x)
        correction, features = self.backbone.forward_with_features(inputs)
        return self._combine(prior, correction), features

    def forward(self, x: Tensor) -> Tensor:
        prior, inputs = self._prior_and_input(x)
        return self._combine(prior, self.backbone(inputs))
