"""The Lightning module, its loss and the backbones."""

from hintcolor.models.losses import ColorizationLoss
from hintcolor.models.module import ColorizationModule

__all__ = ["ColorizationLoss", "ColorizationModule"]
