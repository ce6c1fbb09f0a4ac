"""Compare local runs: python src/compare.py <run or sweep dirs...> [--out DIR] [--evals DIR]

Writes comparison.md/.csv/.json, val_psnr.png and (with eval results) psnr_at_k.png.
"""

from __future__ import annotations

import argparse
import sys
from datetime import datetime
from pathlib import Path

from hintcolor.cli import use_repository_root
from hintcolor.comparison import CompareError, compare


def main() -> None:
    root = use_repository_root()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dirs", nargs="+", type=Path, help="run dirs, sweep dirs or log trees")
    parser.add_argument("--out", type=Path, help="default: logs/compare/<timestamp>")
    parser.add_argument(
        "--evals", type=Path, default=root / "logs" / "eval", help="also search here for evals"
    )
    args = parser.parse_args()
    out = args.out or root / "logs" / "compare" / datetime.now().strftime("%Y-%m-%d_%H-%M-%S")
    try:
        result = compare(args.dirs, out, args.evals, root)
    except CompareError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    print(result["markdown"])
    for path in result["paths"].values():
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
