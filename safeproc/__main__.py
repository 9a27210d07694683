"""Command line: ``python -m safeproc demo``, ``run`` and ``bench``."""

from __future__ import annotations

import argparse
import os
import sys

from safeproc._demo import run_demo
from safeproc._run import run_command

PROG = "python -m safeproc"

DESCRIPTION = """\
safeproc: multiprocessing children that exit as if they were their own
Python program (atexit handlers, weakref finalizers, __del__ of the garbage
they made, logging handlers and files flushed), under fork, forkserver and
spawn.
"""

EPILOG = """\
examples:
  python -m safeproc demo                      the seed program, plain and safe
  python -m safeproc run train.py --epochs 3   a program, with safe children
  python -m safeproc run --report train.py     ... saying what each child cleaned up
  python -m safeproc bench                     what safe exit costs (about a minute)

"python -m safeproc COMMAND --help" describes each command.
"""

BENCH_DESCRIPTION = """\
Measure what safe exit costs next to plain multiprocessing: plain, safeproc
and a hand-rolled gc.collect() ("naive") run interleaved, for both backends,
and the table gives medians, ratios and a verdict per target.
"""

BENCH_EPILOG = """\
profiles:
  quick (default)  start-to-join latency, cleanup time and private memory of
                   one child: fork with an inherited heap of 0 and 4 million
                   objects, forkserver (with and without preloading safeproc)
                   and spawn at 0; Pool.map throughput, a pool's life (start,
                   map, close, join) and terminate() of a sigterm="cleanup"
                   pool, on fork. About a minute on 2 cores.
  --full           the same for every start method at heaps of 0, 100k, 1M
                   and 4M objects (forkserver with preloading at 0 and 4M),
                   with 2.5 to 3 times the rounds, plus Pool.map with
                   chunksize=1; pools and terminate() on every start method.
                   About 5 minutes on 2 cores.

The machine should be otherwise idle: other processes on the same cores
widen the intervals (never the ratios' bias: the variants are interleaved).
"""


def _version() -> str:
    """``safeproc X.Y.Z``: the installed distribution's version, else the package's."""
    from importlib import metadata  # noqa: PLC0415 - only --version pays for it

    try:
        version = metadata.version("safeproc")
    except metadata.PackageNotFoundError:
        from safeproc import __version__ as version  # noqa: PLC0415 - a source checkout
    return f"safeproc {version}"


def _writable_file(parser: argparse.ArgumentParser, option: str, path: str | None) -> None:
    """Stop with a usage error unless *path* can be written: checked before a long run."""
    if path is None:
        return
    directory = os.path.dirname(os.path.abspath(path))
    problem = None
    if os.path.isdir(path):
        problem = "is a directory"
    elif not os.path.isdir(directory):
        problem = f"its directory {directory!r} does not exist"
    elif not os.access(directory, os.W_OK | os.X_OK):
        problem = f"its directory {directory!r} is not writable"
    elif os.path.exists(path) and not os.access(path, os.W_OK):
        problem = "it exists and is not writable"
    if problem is not None:
        parser.error(f"argument {option}: cannot write {path!r}: {problem}")


def _parser() -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
    """Return the top-level parser and each subcommand's, by name."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=_version())
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    demo = commands.add_parser(
        "demo",
        help="run the seed program under plain multiprocessing and safeproc, side by side",
        description="Run the seed program (a child whose cyclic garbage has a __del__) "
        "under plain multiprocessing and under safeproc, for each backend and start "
        "method, and print what each child printed.",
    )
    demo.add_argument(
        "--method",
        action="append",
        choices=["fork", "forkserver", "spawn"],
        help="start method to show (repeatable; default: all available)",
    )
    # Parsed by safeproc._run (argparse would take the program's options);
    # listed here for the help.
    commands.add_parser(
        "run",
        help="run script.py or -m module exactly as python would, with safe children",
        add_help=False,
    )
    bench = commands.add_parser(
        "bench",
        help="measure what safe exit costs, next to plain multiprocessing",
        description=BENCH_DESCRIPTION,
        epilog=BENCH_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    bench.add_argument(
        "--full", action="store_true", help="the full profile (default: the quick one, below)"
    )
    bench.add_argument(
        "--json", metavar="FILE", help="also write every figure, ratio and sample as JSON"
    )
    bench.add_argument(
        "--plot", metavar="FILE.png", help="also draw cost against heap size (needs matplotlib)"
    )
    return parser, {"demo": demo, "bench": bench}


def main(argv: list[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    arguments = sys.argv[1:] if argv is None else argv
    if arguments[:1] == ["run"]:
        # Everything after the program is the program's: argparse would take
        # its options, so "run" parses its own few.
        return run_command(arguments[1:])
    parser, subparsers = _parser()
    args, extra = parser.parse_known_args(arguments)
    if extra:
        # argparse reports a subcommand's unknown options with the top-level
        # usage: report them with the subcommand's.
        subparsers[args.command].error(f"unrecognized arguments: {' '.join(extra)}")
    if args.command == "demo":
        return run_demo(args.method)
    if args.command == "bench":
        _writable_file(subparsers["bench"], "--json", args.json)
        _writable_file(subparsers["bench"], "--plot", args.plot)
        from safeproc._bench import run_bench  # noqa: PLC0415 - only bench pays for it

        return run_bench(full=args.full, json_path=args.json, plot_path=args.plot)
    return 2  # pragma: no cover - argparse rejects unknown commands


if __name__ == "__main__":
    sys.exit(main())
