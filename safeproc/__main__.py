"""Command line: ``python -m safeproc demo``, ``run`` and ``bench``."""

from __future__ import annotations

import argparse
import sys

from safeproc._demo import run_demo
from safeproc._run import run_command


def main(argv: list[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    arguments = sys.argv[1:] if argv is None else argv
    if arguments[:1] == ["run"]:
        # Everything after the program is the program's: argparse would take
        # its options, so "run" parses its own few.
        return run_command(arguments[1:])
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
    commands.add_parser(
        "run",
        help="run script.py or -m module exactly as python would, with safeproc.install()",
        add_help=False,
    )
    bench = commands.add_parser(
        "bench", help="measure what safe exit costs, next to plain multiprocessing"
    )
    bench.add_argument(
        "--full", action="store_true", help="the whole sweep (default: the quick profile)"
    )
    bench.add_argument("--json", metavar="FILE", help="write every figure and ratio as JSON")
    bench.add_argument("--plot", metavar="FILE.png", help="draw cost against heap size")
    args = parser.parse_args(argv)
    if args.command == "demo":
        return run_demo(args.method)
    if args.command == "bench":
        from safeproc._bench import run_bench  # noqa: PLC0415 - only bench pays for it

        return run_bench(full=args.full, json_path=args.json, plot_path=args.plot)
    return 2  # pragma: no cover - argparse rejects unknown commands


if __name__ == "__main__":
    sys.exit(main())
