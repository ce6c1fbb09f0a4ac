"""Benchmark reports: printed, saved as Markdown + JSON, and regenerated into a Markdown page.

The `make bench*` targets regenerate their blocks in ``docs/benchmarks.md`` (the README keeps
a short summary of each); ``scripts/release_model.py`` regenerates the README's release block.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def replace_block(path: Path, name: str, text: str) -> None:
    """Replace what lies between ``<!-- name:begin -->`` and ``<!-- name:end -->`` in ``path``."""
    begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
    content = path.read_text()
    if begin not in content or end not in content:
        raise SystemExit(f"{path} has no {begin} ... {end} block")
    head, rest = content.split(begin, 1)
    _, tail = rest.split(end, 1)
    path.write_text(f"{head}{begin}\n{text}\n{end}{tail}")


def publish(
    table: str, data: dict[str, Any], out: Path, stem: str, page: Path | None, block: str
) -> None:
    """Print ``table``; write ``out/stem.md`` and ``out/stem.json``; regenerate ``block`` in
    the Markdown ``page`` (the ``--readme`` argument of the bench scripts) when one is given."""
    print(table)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{stem}.md").write_text(table + "\n")
    (out / f"{stem}.json").write_text(json.dumps(data, indent=2))
    if page:
        replace_block(page, block, table)
    print(f"wrote {out / stem}.md and .json")
