"""What a long-lived pool costs its parent: fds, threads and RSS over recycled workers.

A pool with ``maxtasksperchild=1`` starts a new worker for every task. The
parent must not keep anything per worker it ever started (a ``Process``
object, a pipe, a report file): its open fds, threads and resident memory
stay flat however many workers came and went. This runs the same program
twice, each in its own process, plain and under safeproc
(``CleanupPolicy(report=True)``, the case that keeps most), and prints the
two parents side by side every ``--every`` workers::

    python benchmarks/pool_recycling.py --workers 10000 --method fork

``--collect`` takes the reports as it goes, as a long-lived pool should
(``cleanup_reports(clear=True)``): the pool then holds only those not yet
collected, and the "reports" column counts all collected so far.

Only the standard library is imported at module level: spawned workers
import this file as ``__mp_main__``.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import resource
import subprocess
import sys
import threading


def _task(x: int) -> int:
    return x


def _parent_state() -> dict[str, float]:
    with open("/proc/self/statm") as f:
        rss_pages = int(f.read().split()[1])
    return {
        "fds": len(os.listdir("/proc/self/fd")),
        "threads": threading.active_count(),
        "rss_mib": round(rss_pages * resource.getpagesize() / 2**20, 1),
    }


def _run_one(  # noqa: PLR0913 - the benchmark's options
    mode: str, workers: int, every: int, method: str, *, report: bool, collect: bool
) -> None:
    """Run one pool; print one JSON line of the parent's state every *every* workers."""
    if mode == "safe":
        import safeproc.stdlib as mp  # noqa: PLC0415 - not in spawned workers

        pool = mp.get_context(method).Pool(
            2, maxtasksperchild=1, cleanup=mp.CleanupPolicy(report=report)
        )
    else:
        pool = multiprocessing.get_context(method).Pool(2, maxtasksperchild=1)
    collected = 0
    with pool:
        for done in range(every, workers + 1, every):
            for start in range(0, every, 100):
                pool.map(_task, range(min(100, every - start)), chunksize=1)
            if mode == "safe" and report and collect:
                collected += len(pool.cleanup_reports(clear=True))
            state = _parent_state()
            if mode == "safe" and report:
                state["reports"] = collected if collect else len(pool.cleanup_reports())
            print(json.dumps({"workers": done, **state}), flush=True)
        pool.close()
        pool.join()


def main() -> None:
    """Run plain and safe, each in its own process, and print them side by side."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=10_000)
    parser.add_argument("--every", type=int, default=1_000)
    parser.add_argument("--method", default="fork", choices=["fork", "forkserver", "spawn"])
    parser.add_argument(
        "--no-report",
        action="store_true",
        help="the default policy (no reports) instead of report=True",
    )
    parser.add_argument(
        "--collect",
        action="store_true",
        help="collect the reports every --every workers with cleanup_reports(clear=True)",
    )
    parser.add_argument("--only", choices=["plain", "safe"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.only:
        _run_one(
            args.only,
            args.workers,
            args.every,
            args.method,
            report=not args.no_report,
            collect=args.collect,
        )
        return
    base = [sys.executable, __file__, "--workers", str(args.workers), "--every", str(args.every)]
    if args.no_report:
        base.append("--no-report")
    if args.collect:
        base.append("--collect")
    procs = {
        mode: subprocess.Popen(
            [*base, "--method", args.method, "--only", mode], stdout=subprocess.PIPE, text=True
        )
        for mode in ("plain", "safe")
    }
    print(f"{args.method}: the parent's open fds, threads and RSS (MiB), plain | safe")
    columns = f"{'fds':>5} {'threads':>7} {'RSS':>6}"
    print(f"{'workers':>8} | {columns} | {columns} {'reports':>8}")
    plain_out, safe_out = procs["plain"].stdout, procs["safe"].stdout
    if plain_out is None or safe_out is None:  # pragma: no cover - PIPE was asked for
        raise RuntimeError
    for plain_line, safe_line in zip(plain_out, safe_out, strict=True):
        p, s = json.loads(plain_line), json.loads(safe_line)
        print(
            f"{p['workers']:>8} | {p['fds']:>5} {p['threads']:>7} {p['rss_mib']:>6} | "
            f"{s['fds']:>5} {s['threads']:>7} {s['rss_mib']:>6} {s.get('reports', '-'):>8}",
            flush=True,
        )
    for proc in procs.values():
        if proc.wait() != 0:
            sys.exit(proc.returncode)


if __name__ == "__main__":
    main()
