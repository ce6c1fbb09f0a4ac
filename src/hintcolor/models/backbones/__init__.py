"""Colorization backbones, and the contract every one of them keeps.

A backbone is an ``nn.Module`` that

- takes ``in_channels`` and ``out_channels`` (always 2) as constructor keywords: a hint prior
  (``hint_prior=push_pull``) builds it with ``in_channels`` = 4 + the prior's extra channels;
- sets ``stride`` (int >= 1), its total downsampling: it pads H and W up to a multiple of
  ``stride`` itself and crops its output back, so any input size works, and training crops
  (``data.image_size``) must be at least ``stride``. :func:`hintcolor.build.build_backbone`
  refuses a backbone without it;
- maps (B, in_channels, H, W) float, channels L ((L* - 50) / 100), hint a, hint b (a*, b* / 110
  where hinted, else 0), hint mask (1 where hinted) [, the prior's interpolated ab], to
  (B, 2, H, W) normalised ab in (-1, 1) (a tanh), in contiguous or channels_last memory and
  under bf16 autocast;
- is split in two halves, as :class:`~hintcolor.models.backbones.common.Backbone` declares,
  so that the colour-distribution head (``color_head=default``,
  :mod:`hintcolor.models.color_head`) can read its features:
  ``forward_features(x)`` -> (B, feature_channels, Hp / feature_stride, Wp / feature_stride),
  the last spatial feature map before the output layer (Hp, Wp: H, W padded to ``stride``),
  and ``forward_output(features, (H, W))`` -> the output layer, the tanh and the crop;
  ``forward`` is the two in a row, with attributes ``feature_channels`` and
  ``feature_stride`` (the head resamples the map to 1/4 resolution).

Adding one: its module here (subclass ``Backbone``) and ``conf/model/<name>.yaml`` with
``name: <name>``, ``backbone:`` (``_target_: hintcolor.models.backbones.<module>.<Class>``,
``in_channels: 4``, ``out_channels: 2``, its arguments) and ``quick:`` (its arguments at a tiny
size). Nothing else: tests, benchmarks and the backbone sweep list ``conf/model/``
(:mod:`hintcolor.models.registry`); ``tests/test_backbones.py`` checks the contract.
"""

from .resunet import ResUNet
from .siggraph17 import SIGGRAPH17
from .unet import UNet
from .vit import ViT

__all__ = ["SIGGRAPH17", "ResUNet", "UNet", "ViT"]
