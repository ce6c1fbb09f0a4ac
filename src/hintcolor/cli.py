"""What every entry point (src/*.py) does around Hydra: point ``paths.root_dir`` at this
checkout, check the command line's keys, and run ``hydra.main`` on conf/<name>.yaml.

    @hydra_entry_point("train")
    def main(cfg: DictConfig) -> ...: ...
"""

from __future__ import annotations

import difflib
import functools
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from importlib.util import find_spec
from pathlib import Path
from typing import Any

import hydra
from hydra import compose, initialize_config_dir
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override, OverrideType
from hydra.errors import HydraException
from hydra.types import TaskFunction
from omegaconf import OmegaConf

from hintcolor.help_text import register_resolvers

ROOT = Path(__file__).resolve().parents[2]
CONF_DIR = ROOT / "conf"
# Hydra flags that compose another config, or none: the keys are not checked then
UNCHECKED_FLAGS = ("-cn", "--config-name", "-cp", "--config-path", "-cd", "--config-dir")
UNCHECKED_FLAGS += ("--info", "--shell-completion", "-sc", "--experimental-rerun")
# Choices that need the `scale` extra (pyproject.toml), which `make train` does not install:
# group -> {option: the module it imports}
SCALE_EXTRA = {
    "hydra/launcher": dict.fromkeys(
        ("local", "slurm", "submitit_local", "submitit_slurm"), "submitit"
    ),
    "data": {"streaming": "litdata"},
}


def use_repository_root() -> Path:
    """The repository root, exported as ``HINTCOLOR_ROOT`` unless already set: conf/paths/
    reads it, so that a run writes under this checkout's logs/ from any current directory."""
    os.environ.setdefault("HINTCOLOR_ROOT", str(ROOT))
    return Path(os.environ["HINTCOLOR_ROOT"])


def hydra_entry_point(config_name: str) -> Callable[[TaskFunction], Callable[[], Any]]:
    """``hydra.main`` on conf/<config_name>.yaml, after ``use_repository_root`` and
    ``check_override_keys`` (a mistyped key ends the run with one line naming the closest
    valid key), with the --help template's resolvers registered."""
    use_repository_root()
    register_resolvers()

    def decorate(task: TaskFunction) -> Callable[[], Any]:
        # the task itself goes to hydra.main: Hydra names the job after the task's file
        run = hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name=config_name)
        run_task = run(task)

        @functools.wraps(task)
        def main() -> Any:
            check_scale_extra(config_name, sys.argv[1:])
            check_override_keys(config_name, sys.argv[1:])
            return run_task()

        return main

    return decorate


def check_scale_extra(config_name: str, args: Sequence[str]) -> None:
    """Exit with one line naming the missing package when the command needs the `scale`
    extra (streaming shards, submitit launchers) and it is not installed; Hydra would fail
    with a traceback about a config or a target it cannot load."""
    needed = {"litdata"} if config_name == "shard" else set()
    for arg in args:
        group, _, option = arg.lstrip("+").partition("=")
        needed |= {SCALE_EXTRA.get(group, {}).get(o) for o in option.split(",")} - {None}
    missing = sorted(m for m in needed if find_spec(m) is None)
    if missing:
        raise SystemExit(
            f"error: {', '.join(missing)} not installed: this command needs the scale extra "
            f"(make install-scale installs it; docs/scale-out.md)"
        )


def check_override_keys(config_name: str, args: Sequence[str]) -> None:
    """Exit with one line, ``error: unknown key optimizer.lrr: did you mean optimizer.lr?``,
    when a ``key=value`` on the command line sets a key that conf/<config_name>.yaml, with
    the command line's config groups, does not have. (Hydra's own message advises
    ``+optimizer.lrr=...``, which adds the typo as a new key.)

    Costs one composition when there is such an override; anything this check does not
    understand is left to Hydra, which reports it as before."""
    if any(a.split("=", 1)[0] in UNCHECKED_FLAGS for a in args):
        return
    try:
        overrides = OverridesParser.create().parse_overrides(
            [a for a in args if not a.startswith("-") and "=" in a]
        )
    except HydraException:
        return
    keys = [o for o in overrides if _is_plain_key(o)]
    if not keys or any(o.is_sweep_override() for o in overrides if _is_group(o)):
        return  # nothing to check, or a group sweep: each job composes other keys
    # what shapes the config besides those keys: groups, additions, deletions (not hydra.*)
    others = [o for o in overrides if not (_is_plain_key(o) or _is_hydra(o))]
    try:
        nodes = dict(_config_nodes(config_name, others))
    except HydraException:
        return
    unknown = [o for o in keys if not _is_known(o.key_or_group, nodes)]
    if unknown:
        raise SystemExit("error: " + "; ".join(_unknown_key(o, nodes) for o in unknown))


def _is_hydra(override: Override) -> bool:
    return override.key_or_group.split(".")[0].split("/")[0] == "hydra"


def _is_group(override: Override) -> bool:
    return _is_hydra(override) or (CONF_DIR / override.key_or_group).is_dir()


def _is_plain_key(override: Override) -> bool:
    """``key=value`` on a key of the app's config: it must exist (``+``, ``++`` and ``~`` say
    what they mean; ``hydra.*`` is Hydra's)."""
    return override.type == OverrideType.CHANGE and not _is_group(override)


def _config_nodes(config_name: str, overrides: Sequence[Override]) -> Iterator[tuple[str, bool]]:
    """(dotted key, whether it is a mapping) for every key of the composed config."""
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name, [o.input_line for o in overrides])
    yield from _dotted(OmegaConf.to_container(cfg, resolve=False))


def _dotted(tree: dict, prefix: str = "") -> Iterator[tuple[str, bool]]:
    for key, value in tree.items():
        yield f"{prefix}{key}", isinstance(value, dict)
        if isinstance(value, dict):
            yield from _dotted(value, f"{prefix}{key}.")


def _is_known(key: str, nodes: dict[str, bool]) -> bool:
    """In the config; or below a list or a value (``tags.0``; below null Hydra's own message
    stands): only a key missing from a mapping is a typo."""
    parts = key.split(".")
    for end in range(len(parts), 0, -1):
        prefix = ".".join(parts[:end])
        if prefix in nodes:
            return end == len(parts) or not nodes[prefix]
    return False


def _unknown_key(override: Override, nodes: dict[str, bool]) -> str:
    key = override.key_or_group
    close = difflib.get_close_matches(key, list(nodes), n=1)
    new = f"+{override.input_line} adds it as a new key"
    if close:
        return f"unknown key {key}: did you mean {close[0]}? ({new})"
    return f"unknown key {key} ({new})"
