"""The generated parts of ``--help`` (conf/hydra/help/*.yaml): a config group's line with its
options, and the top-level keys, both as the composed config has them now.

Resolvers rather than Hydra's ``$APP_CONFIG_GROUPS``, which lists every group under conf/
(``colorizer`` in the training help) and every option (the internal ``hparams_search: base``).
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from typing import Any

from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig, OmegaConf

WIDTH = 100
GROUP_COLUMN = 18  # where the descriptions start: two spaces, the longest group name and some


def register_resolvers() -> None:
    """Make ``${hintcolor.help.group:...}`` and ``${hintcolor.help.keys:}`` resolvable."""
    for name, resolver in (("hintcolor.help.group", group_line), ("hintcolor.help.keys", keys)):
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, resolver)


def group_line(
    group: str, description: str, hidden: Sequence[str] = (), *, _root_: DictConfig
) -> str:
    """``  model           the backbone network: resunet*, unet, ...``: the group's options
    (``*``: the choice now; ``hidden`` left out), wrapped to ``WIDTH`` columns."""
    chosen = _root_.hydra.runtime.choices.get(group)
    options = GlobalHydra.instance().config_loader().get_group_options(group)
    shown = [f"{o}*" if o == chosen else o for o in sorted(options) if o not in hidden]
    line = f"  {group:<{GROUP_COLUMN - 2}}{description}: {', '.join(shown)}"
    return _wrap(line, " " * GROUP_COLUMN)


def keys(*, _root_: DictConfig) -> str:
    """The top-level keys that are values, not groups, as overrides: ``seed=42 train=true``."""
    tree = OmegaConf.to_container(_root_, resolve=False)
    assert isinstance(tree, dict)
    pairs = [
        f"{key}={_as_override(value)}"
        for key, value in tree.items()
        if key != "hydra" and not isinstance(value, dict)
    ]
    return _wrap("  " + " ".join(pairs), "  ")


def _as_override(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, list):
        return "[" + ",".join(_as_override(v) for v in value) + "]"
    return str(value)


def _wrap(text: str, indent: str) -> str:
    """Wrapped at ``WIDTH``; ``$`` doubled, as Hydra's help template is a ``string.Template``."""
    lines = textwrap.wrap(text, WIDTH, subsequent_indent=indent, break_on_hyphens=False)
    return "\n".join(lines).replace("$", "$$")
