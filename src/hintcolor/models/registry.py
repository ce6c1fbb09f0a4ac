"""The backbones, listed once: the options of the ``model`` config group, ``conf/model/*.yaml``.

Tests, benchmarks and the backbone sweep iterate over these functions, so a new backbone is
its module (``src/hintcolor/models/backbones/``) and its YAML, nothing else. Two facts per
backbone live in its YAML besides the network's arguments:

- ``quick``: the backbone's keys at a tiny size, for tests and ``--quick`` benchmarks
  (``python scripts/bench.py --quick``); they replace those of ``backbone``.
- ``defaults: [<another option>]`` makes it a *size variant* of that option (``resunet_large``
  of ``resunet``). The backbone comparison (``hparams_search=backbones``, its W&B sweep and the
  default backbones of the benchmarks) takes every option that is not a size variant: one per
  network design, at its own default size. Why not all: the variants are the same network,
  and training ``vit_base`` (86 M parameters) under the comparison's budget takes hours.

Only PyYAML here (no Hydra, no torch), so ``scripts/bench_device.py`` can use it on a bare GPU
machine; ``tests/test_configs.py`` checks that :func:`model_yaml` gives what Hydra composes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

MODEL_DIR = Path(__file__).resolve().parents[3] / "conf" / "model"


def backbone_names() -> list[str]:
    """Every option of the model group (``model=<name>``), sorted."""
    return sorted(path.stem for path in MODEL_DIR.glob("*.yaml"))


def compared_backbones() -> list[str]:
    """The options that are not size variants of another (the module docstring says why)."""
    return [name for name in backbone_names() if not _read(name).get("defaults")]


def model_yaml(name: str) -> dict[str, Any]:
    """``conf/model/<name>.yaml`` as Hydra composes it: the options in its ``defaults`` list
    first, then its own keys merged on top (Hydra's order when ``_self_`` is not listed)."""
    own = _read(name)
    merged: dict[str, Any] = {}
    for base in own.pop("defaults", None) or []:
        if not isinstance(base, str) or base not in backbone_names():
            raise ValueError(
                f"conf/model/{name}.yaml: defaults may only name other options of conf/model/, "
                f"got {base!r}"
            )
        merged = _merge(merged, model_yaml(base))
    return _merge(merged, own)


def quick_settings(name: str) -> dict[str, Any]:
    """The ``quick`` keys of a backbone's YAML: its arguments at a tiny size."""
    quick = model_yaml(name).get("quick")
    if not isinstance(quick, dict) or not quick:
        raise ValueError(
            f"conf/model/{name}.yaml has no `quick:` mapping: give the backbone's keys at a tiny "
            "size (tests and --quick benchmarks build it so), e.g. quick: {widths: [4, 8]}"
        )
    return quick


def quick_backbone(name: str) -> dict[str, Any]:
    """The ``backbone`` node of ``model=<name>`` at its quick size (``hydra.utils.instantiate``
    builds it)."""
    return {**model_yaml(name)["backbone"], **quick_settings(name)}


def quick_overrides(name: str) -> list[str]:
    """Hydra overrides that shrink ``model=<name>`` to its quick size."""
    return [f"model.backbone.{key}={_override_value(v)}" for key, v in quick_settings(name).items()]


def _read(name: str) -> dict[str, Any]:
    path = MODEL_DIR / f"{name}.yaml"
    if not path.is_file():
        raise ValueError(f"no backbone {name!r}: conf/model/ has {', '.join(backbone_names())}")
    return yaml.safe_load(path.read_text()) or {}


def _merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    """Mappings merge key by key, anything else (lists too) is replaced, as in OmegaConf."""
    out = dict(base)
    for key, value in top.items():
        both_maps = isinstance(value, dict) and isinstance(out.get(key), dict)
        out[key] = _merge(out[key], value) if both_maps else value
    return out


def _override_value(value: Any) -> str:
    """A YAML value as Hydra's override grammar reads it back."""
    if isinstance(value, list):
        return "[" + ",".join(_override_value(v) for v in value) + "]"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)
