"""Vision Transformer backbone (after iColoriT, Yun et al., WACV 2023).

The image is cut into ``patch`` x ``patch`` tokens; pre-norm Transformer blocks let every token
attend to every other, so a hint reaches the whole image in one layer (a CNN needs depth for
that); a linear head turns each token back into its patch of ab (pixel shuffle), tanh-bounded.

Positions enter as a learned 2-D *relative* bias per head and block (Swin-style), indexed by
the row and column offset between two tokens and clipped at ``max_relative`` tokens: any
image size works without interpolating absolute embeddings (sizes that are not a multiple of
the patch are padded and cropped back). Hints are not pre-averaged into cells: the patch
embedding is a linear map of all the patch's pixels (L, hint ab, mask), so it can average
them itself, and a 1-pixel hint still counts.

Module names follow timm's ``VisionTransformer`` (``patch_embed.proj``, ``blocks.N.attn.qkv``,
``mlp.fc1`` ...), so ``pretrained_path`` can start from a timm checkpoint a user has locally:
every tensor whose name and shape match is copied (the patch embedding and head never match:
different input and output channels). Nothing is downloaded.
"""

from __future__ import annotations

import functools
import logging
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .common import Backbone, crop_to, pad_to_multiple

log = logging.getLogger(__name__)


class RelativePositionBias(nn.Module):
    """(heads, N, N) attention bias from the 2-D offset between tokens of an (h, w) grid."""

    def __init__(self, heads: int, max_relative: int) -> None:
        super().__init__()
        self.max_relative = max_relative
        side = 2 * max_relative + 1
        self.table = nn.Parameter(torch.zeros(side * side, heads))
        nn.init.trunc_normal_(self.table, std=0.02)

    def forward(self, h: int, w: int) -> Tensor:
        r, device = self.max_relative, self.table.device
        if isinstance(h, int) and isinstance(w, int):
            index = cached_relative_index(h, w, r, device)
        else:  # symbolic sizes while exporting: no cache
            index = relative_index(h, w, r, device)
        return self.table[index].permute(2, 0, 1)


def relative_index(h: int, w: int, r: int, device: torch.device) -> Tensor:
    """(N, N) index into the (2r+1)^2 bias table for every pair of tokens of an (h, w) grid."""
    ys, xs = torch.meshgrid(
        torch.arange(h, device=device), torch.arange(w, device=device), indexing="ij"
    )
    ys, xs = ys.flatten(), xs.flatten()
    dy = (ys[:, None] - ys[None, :]).clamp(-r, r) + r
    dx = (xs[:, None] - xs[None, :]).clamp(-r, r) + r
    return dy * (2 * r + 1) + dx


# every block of every forward pass at one size needs the same index
cached_relative_index = functools.lru_cache(maxsize=16)(relative_index)


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int, max_relative: int) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim {dim} is not divisible by heads {heads}")
        self.heads = heads
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)
        self.relative_bias = RelativePositionBias(heads, max_relative)

    def forward(self, x: Tensor, grid: tuple[int, int]) -> Tensor:
        b, n, c = x.shape
        q, k, v = self.qkv(x).view(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        bias = self.relative_bias(*grid).to(q.dtype)
        # torch's fused attention (flash / memory-efficient kernels where they apply)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)
        return self.proj(out.transpose(1, 2).reshape(b, n, c))


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    """Pre-norm Transformer block: x + attn(norm(x)), then x + mlp(norm(x))."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float, max_relative: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, heads, max_relative)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: Tensor, grid: tuple[int, int]) -> Tensor:
        x = x + self.attn(self.norm1(x), grid)
        return x + self.mlp(self.norm2(x))


class PatchEmbed(nn.Module):
    def __init__(self, in_channels: int, dim: int, patch: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_channels, dim, patch, stride=patch)

    def forward(self, x: Tensor) -> tuple[Tensor, tuple[int, int]]:
        x = self.proj(x)
        return x.flatten(2).transpose(1, 2), (x.shape[-2], x.shape[-1])


class ViT(Backbone):
    """(B, in_channels, H, W) -> (B, out_channels, H, W) in (-1, 1); H, W any size.

    Features (:meth:`forward_features`): the normalised tokens as a (B, dim, H/p, W/p) grid.
    """

    def __init__(
        self,
        in_channels: int = 4,
        out_channels: int = 2,
        patch: int = 16,
        dim: int = 192,
        depth: int = 12,
        heads: int = 3,
        mlp_ratio: float = 4.0,
        max_relative: int = 31,
        pretrained_path: str | None = None,
    ) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.patch = patch
        self.stride: int = patch
        self.feature_channels: int = dim
        self.feature_stride: int = patch
        self.patch_embed = PatchEmbed(in_channels, dim, patch)
        self.blocks = nn.ModuleList(
            Block(dim, heads, mlp_ratio, max_relative) for _ in range(depth)
        )
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.head = nn.Linear(dim, out_channels * patch * patch)
        self.apply(self._init)
        if pretrained_path:
            self.load_pretrained(pretrained_path)

    @staticmethod
    def _init(m: nn.Module) -> None:
        if isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, std=0.02)
            nn.init.zeros_(m.bias)

    def load_pretrained(self, path: str | Path) -> int:
        """Copy every tensor of a local (timm) checkpoint whose name and shape match."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"model.backbone.pretrained_path: {path} does not exist")
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
            state = state.get("state_dict", state.get("model", state))
        own = self.state_dict()
        matched = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
        self.load_state_dict(matched, strict=False)
        log.info(f"pretrained {path.name}: {len(matched)} of {len(own)} tensors copied")
        return len(matched)

    def forward_features(self, x: Tensor) -> Tensor:
        x, _ = pad_to_multiple(x, self.patch)
        tokens, grid = self.patch_embed(x)
        for block in self.blocks:
            tokens = block(tokens, grid)
        tokens = self.norm(tokens)  # (B, N, C)
        # a view of the tokens: forward_output's flatten + transpose gives them back as they
        # were, so the head sees the same tensor as before the split (same bits)
        return tokens.transpose(1, 2).unflatten(2, grid)

    def forward_output(self, features: Tensor, size: tuple[int, int]) -> Tensor:
        b, _, gh, gw = features.shape
        out = self.head(features.flatten(2).transpose(1, 2))  # (B, N, C * p * p)
        out = out.transpose(1, 2).reshape(b, self.out_channels * self.patch**2, gh, gw)
        return crop_to(torch.tanh(F.pixel_shuffle(out, self.patch)), size)
