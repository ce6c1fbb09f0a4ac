"""The settings a study was started with, so that a later run or worker cannot mix in others.

Trials only compare if they trained under the same settings (data, model, epochs, hint law,
...): everything but the searched parameters. The first run records them in the study (user
attribute ``settings``, shown by optuna-dashboard); every later run must match them.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import optuna
from omegaconf import DictConfig, OmegaConf

ATTR = "settings"
UNSET = "<unset>"
MAX_SHOWN = 8  # differences named in the message; the rest are counted


class SettingsMismatchError(ValueError):
    """A run whose settings differ from those its study was started with."""


def job_settings(job_config: DictConfig, searched: Iterable[str]) -> dict[str, Any]:
    """A trial job's config, composed without the searched parameters, as flat ``key: value``
    plus the config groups chosen (``model: resunet``); searched keys are left out.

    Values stay unresolved, so that paths and environment variables read as written (the same
    on every machine), and a change shows up under the key that was changed.
    """
    tree = OmegaConf.to_container(job_config, resolve=False)
    assert isinstance(tree, dict)
    tree.pop("hydra", None)
    choices = {
        group: choice
        for group, choice in job_config.hydra.runtime.choices.items()
        if group != "hydra" and not group.startswith("hydra/")
    }
    settings = {**dict(_flatten(tree)), **choices}
    kept = {k: v for k, v in sorted(settings.items()) if not _below(k, searched)}
    return json.loads(json.dumps(kept))  # as the storage gives it back


def check_settings(
    study: optuna.study.Study,
    settings: Mapping[str, Any],
    ignore: Iterable[str] = (),
    searched: Iterable[str] = (),
) -> None:
    """Record ``settings`` in a study that has none yet; raise ``SettingsMismatchError``,
    naming the differences, when they differ from the recorded ones."""
    stored = study.user_attrs.get(ATTR)
    if stored is None:
        study.set_user_attr(ATTR, dict(settings))
        return
    diffs = differences(stored, settings, skip=[*ignore, *searched])
    if diffs:
        shown = "; ".join(diffs[:MAX_SHOWN])
        more = f"; and {len(diffs) - MAX_SHOWN} more" if len(diffs) > MAX_SHOWN else ""
        raise SettingsMismatchError(
            f"study {study.study_name!r} was started with other settings "
            f"(key: stored -> now): {shown}{more}. Run it with its settings, or start "
            "another study (hydra.sweeper.study_name=...)"
        )


def differences(
    stored: Mapping[str, Any], now: Mapping[str, Any], skip: Iterable[str] = ()
) -> list[str]:
    """``key: stored -> now`` for every key that differs, except those below ``skip``.

    A changed config group is named once: its own values are not listed as well.
    """
    skip = list(skip)
    changed = [k for k in sorted({*stored, *now}) if stored.get(k, UNSET) != now.get(k, UNSET)]
    changed = [k for k in changed if not _below(k, skip)]
    # top-level keys that changed: config group choices (model, hints@eval_hints, ...)
    groups = [_package(k) for k in changed if "." not in k]
    return [
        f"{k}: {_show(stored.get(k, UNSET))} -> {_show(now.get(k, UNSET))}"
        for k in changed
        if not any(k.startswith(g + ".") for g in groups)
    ]


def _flatten(tree: Mapping[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    for key, value in tree.items():
        if isinstance(value, Mapping) and value:
            yield from _flatten(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


def _below(key: str, prefixes: Iterable[str]) -> bool:
    return any(key == p or key.startswith(p + ".") for p in prefixes)


def _package(group: str) -> str:
    """Where a group's values live: ``hints@eval_hints`` -> eval_hints, ``a/b`` -> a.b."""
    return group.split("@")[-1].replace("/", ".")


def _show(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)
