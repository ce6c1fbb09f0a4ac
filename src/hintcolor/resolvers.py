"""The ``${hintcolor.*:}`` resolvers that ``conf/`` and ``sweeps/wandb/`` may use.

- ``${hintcolor.backbones:}``: the compared backbones, a list
  (:func:`hintcolor.models.registry.compared_backbones`)
- ``${hintcolor.choice:LIST}``: Hydra's sweep ``choice(a, b, ...)`` of a list
- ``${hintcolor.grid_size:PARAMS}``: how many points a grid over a sweeper's ``params`` has

They are registered in every process that starts Hydra (CLI or compose API):
``src/hydra_plugins/hintcolor_resolvers`` calls :func:`register`, and Hydra imports every
module under ``hydra_plugins`` when it starts.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

from omegaconf import OmegaConf


def backbones() -> list[str]:
    # imported here: registering the resolvers must stay cheap (every Hydra start does it)
    from hintcolor.models.registry import compared_backbones

    return compared_backbones()


def choice(values: Iterable[Any]) -> str:
    return f"choice({', '.join(str(v) for v in values)})"


def grid_size(params: Mapping[str, Any]) -> int:
    """The product of the numbers of values of the sweeps in ``params`` (key -> Hydra sweep
    expression); a fixed value counts 1. Continuous ranges have no grid: an error."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parser = OverridesParser.create()
    sizes = []
    for key, expr in params.items():
        override = parser.parse_override(f"{key}={expr}")
        if not override.is_sweep_override():
            continue
        if not override.is_discrete_sweep():
            raise ValueError(f"hintcolor.grid_size: {key}={expr} is not a finite set of values")
        sizes.append(len(list(override.sweep_string_iterator())))
    return math.prod(sizes)


def register() -> None:
    """Register the resolvers (again: Hydra's plugin scan may import the caller twice)."""
    for name, function in (
        ("hintcolor.backbones", backbones),
        ("hintcolor.choice", choice),
        ("hintcolor.grid_size", grid_size),
    ):
        OmegaConf.register_new_resolver(name, function, replace=True)
