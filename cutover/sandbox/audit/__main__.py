"""``python -m cutover.sandbox.audit``: the whole audit (harness.py); exit 1 on any leak."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from cutover.errors import CutoverError
from cutover.sandbox.audit.harness import audit


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m cutover.sandbox.audit",
        description="Run the sandbox cutover forward and back, recorded, and scan it for secrets.",
    )
    parser.add_argument("--rows", type=int, default=400, help="rows seeded (default 400)")
    parser.add_argument(
        "--keep",
        type=Path,
        default=None,
        help="work in this (new) folder and keep it: the record, state and temp folders",
    )
    args = parser.parse_args(argv)
    if args.keep is not None:
        args.keep.mkdir(mode=0o700, parents=True, exist_ok=False)
    try:
        report = audit(args.keep.absolute() if args.keep else None, rows=args.rows)
    except CutoverError as exc:
        print(f"audit: the sandbox run could not be made: {exc}", file=sys.stderr)
        return 1
    for line in report.lines():
        print(line)
    return 1 if report.leaks or report.failed else 0


if __name__ == "__main__":
    sys.exit(main())
