"""Read offline W&B runs back with the wandb library's own reader (``wandb leet inspect``)."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

WANDB = Path(sys.executable).with_name("wandb")


@dataclass
class WandbRun:
    path: Path
    run: dict[str, Any] = field(default_factory=dict)  # id, group, display_name, job_type, ...
    config: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)
    artifacts: list[dict[str, Any]] = field(default_factory=list)
    exit_code: int | None = None

    def values(self, key: str) -> list[Any]:
        return [row[key] for row in self.history if key in row]


def _merge(into: dict[str, Any], update: dict[str, Any]) -> None:
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = value


def read_run(wandb_file: Path) -> WandbRun:
    out = subprocess.run(
        [str(WANDB), "leet", "inspect", "--json", str(wandb_file)],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    run = WandbRun(wandb_file)
    for line in out.stdout.splitlines():
        record = json.loads(line)
        kind = record.get("type")
        if kind == "run":
            run.run = record["run"]
        elif kind == "config":
            _merge(run.config, record["config"].get("update", {}))
        elif kind == "history":
            run.history.append(record["history"]["item"])
        elif kind == "summary":
            _merge(run.summary, record["summary"].get("update", {}))
        elif kind == "artifact":
            run.artifacts.append(record["artifact"])
        elif kind == "exit":
            run.exit_code = record["exit"].get("exit_code", 0)
    return run


def offline_runs(folder: Path) -> list[WandbRun]:
    """Every offline run written under ``folder`` (its ``wandb/offline-run-*/run-*.wandb``)."""
    return [read_run(f) for f in sorted(folder.rglob("offline-run-*/run-*.wandb"))]
