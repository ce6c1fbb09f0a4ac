"""Colorization backbones: (B, 4, H, W) [L, hint a, hint b, hint mask] -> (B, 2, H, W) ab."""

from .resunet import ResUNet
from .siggraph17 import SIGGRAPH17
from .unet import UNet
from .vit import ViT

__all__ = ["SIGGRAPH17", "ResUNet", "UNet", "ViT"]
