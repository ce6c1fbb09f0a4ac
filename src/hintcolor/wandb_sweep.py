"""Create a W&B sweep from ``sweeps/wandb/<name>.yaml``, with its derived values filled in.

    python -m hintcolor.wandb_sweep sweeps/wandb/backbones.yaml [--project hintcolor] [--entity E]
    python -m hintcolor.wandb_sweep sweeps/wandb/backbones.yaml --print   # the definition only

A sweep's ``parameters`` may use hintcolor's resolvers (:mod:`hintcolor.resolvers`), e.g.
``values: ${hintcolor.backbones:}`` for every compared backbone of ``conf/model/``: they are
resolved here, when the sweep is created, so no sweep file repeats what ``conf/`` says.
W&B's own macros in ``command`` (``${env}``, ``${program}``, ...) are left to the agent.
``wandb sweep FILE`` would send the unresolved text, which W&B refuses.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import yaml
from omegaconf import OmegaConf

from hintcolor.resolvers import register


def load_sweep(path: str | Path) -> dict[str, Any]:
    """The sweep definition in ``path``, its ``parameters`` resolved."""
    sweep = yaml.safe_load(Path(path).read_text())
    if not isinstance(sweep, dict):
        raise ValueError(f"{path}: not a W&B sweep definition (a YAML mapping)")
    register()
    parameters = OmegaConf.create(sweep.get("parameters") or {})
    sweep["parameters"] = OmegaConf.to_container(parameters, resolve=True)
    return sweep


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path", type=Path, help="a sweep definition, e.g. sweeps/wandb/optuna.yaml")
    parser.add_argument("--project", default="hintcolor")
    parser.add_argument("--entity", default=None)
    parser.add_argument("--print", action="store_true", help="print the definition, create nothing")
    args = parser.parse_args(argv)
    sweep = load_sweep(args.path)
    if args.print:
        print(yaml.safe_dump(sweep, sort_keys=False), end="")
        return
    import wandb

    sweep_id = wandb.sweep(sweep=sweep, project=args.project, entity=args.entity)
    entity = f" --entity {args.entity}" if args.entity else ""
    print(f"start agents with: wandb agent --project {args.project}{entity} {sweep_id}")


if __name__ == "__main__":
    main()
