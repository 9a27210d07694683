"""Command line: ``python -m safeproc demo``."""

from __future__ import annotations

import argparse
import sys

from safeproc._demo import run_demo


def main(argv: list[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    parser = argparse.ArgumentParser(prog="python -m safeproc", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser(
        "demo", help="run the seed program under plain multiprocessing and safeproc"
    )
    demo.add_argument(
        "--method",
        action="append",
        choices=["fork", "forkserver", "spawn"],
        help="start method to show (repeatable; default: all available)",
    )
    args = parser.parse_args(argv)
    if args.command == "demo":
        return run_demo(args.method)
    return 2  # pragma: no cover - argparse rejects unknown commands


if __name__ == "__main__":
    sys.exit(main())
