"""pyperf benchmarks of safeproc's child exit, next to plain multiprocessing.

``nox -s bench`` runs this file on every Python present and keeps the results
in ``bench-results/`` so that two runs (two safeproc commits, two Pythons)
compare with ``python -m pyperf compare_to old.json new.json``. The
interleaved, same-run comparison with verdicts against the targets is
``python -m safeproc bench``; this suite tracks the same figures over time.

Why pyperf rather than pytest-benchmark:

* every benchmark runs in several fresh worker processes: a benchmark that
  builds a million-object heap, starts a forkserver or keeps a pool alive
  leaves nothing behind for the next, whereas pytest-benchmark times
  everything inside one long-lived pytest process;
* pyperf calibrates the loop count per benchmark, so a 2 ms fork and a
  second-long naive ``gc.collect()`` both get enough values;
* ``compare_to`` reports whether a difference between two runs is
  significant, which is what a benchmark kept over time is for;
* a benchmark may return time measured elsewhere (``bench_time_func``):
  the cleanup benchmarks return the seconds the child itself measured;
* it is CPython's own harness (pyperformance), and stays clear of the test
  suite's strict pytest configuration (warnings as errors, timeouts).

Only the standard library is imported at module level: a spawned child and
the forkserver import this file as ``__mp_main__``, and a plain child must
not pay for importing safeproc (``main()`` does that).

Usage::

    python benchmarks/bench_exit.py --fast -o bench-results/empty.json
    python benchmarks/bench_exit.py --fast --heap 1000000 -o bench-results/1m.json
"""

from __future__ import annotations

import atexit
import gc
import os
import tempfile
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable

#: The inherited heap (built in each pyperf worker, see ``--heap``).
HEAP: list[list[int]] = []
BACKENDS = ("stdlib", "multiprocess")
METHODS = ("fork", "forkserver", "spawn")
POOL_TASKS = 10_000


def naive_target(result_path: str) -> None:
    """Run the hand-rolled fix, ``gc.collect()``, and record how long it took."""
    started = time.perf_counter()
    gc.collect()
    with open(result_path, "w", encoding="ascii") as f:
        f.write(repr(time.perf_counter() - started))


def time_start_join(loops: int, ctx: Any, target: Callable[..., object]) -> float:  # noqa: ANN401
    """Start and join *loops* processes; return the total seconds."""
    total = 0.0
    for _ in range(loops):
        process = ctx.Process(target=target)
        started = time.perf_counter()
        process.start()
        process.join()
        total += time.perf_counter() - started
    return total


def time_safe_cleanup(loops: int, ctx: Any, policy: Any) -> float:  # noqa: ANN401
    """Seconds the safe children's cleanup took, from their CleanupReports."""
    total = 0.0
    for _ in range(loops):
        process = ctx.Process(target=int, cleanup=policy)
        process.start()
        process.join()
        total += process.cleanup_report.seconds
    return total


def time_naive_cleanup(loops: int, ctx: Any) -> float:  # noqa: ANN401
    """Seconds ``gc.collect()`` took inside plain children."""
    total = 0.0
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "gc")
        for _ in range(loops):
            process = ctx.Process(target=naive_target, args=(path,))
            process.start()
            process.join()
            with open(path, encoding="ascii") as f:
                total += float(f.read())
    return total


_pools: dict[str, Any] = {}


def time_pool_map(loops: int, ctx: Any, key: str) -> float:  # noqa: ANN401
    """``Pool(2).map(abs, range(10_000))`` on a pool kept for the worker's life."""
    pool = _pools.get(key)
    if pool is None:
        pool = _pools[key] = ctx.Pool(2)
        atexit.register(_close_pool, pool)  # before interpreter teardown
        pool.map(abs, range(POOL_TASKS))
    started = time.perf_counter()
    for _ in range(loops):
        pool.map(abs, range(POOL_TASKS))
    return time.perf_counter() - started


def _close_pool(pool: Any) -> None:  # noqa: ANN401 - either backend's Pool
    pool.close()
    pool.join()


def main() -> None:
    """Register every benchmark with pyperf and run them."""
    import multiprocessing  # noqa: PLC0415 - see the module docstring

    import multiprocess  # noqa: PLC0415
    import pyperf  # noqa: PLC0415

    import safeproc  # noqa: PLC0415
    import safeproc.stdlib  # noqa: PLC0415

    def add_heap_arg(cmd: list[str], args: Any) -> None:  # noqa: ANN401 - argparse namespace
        cmd.extend(("--heap", str(args.heap)))

    runner = pyperf.Runner(add_cmdline_args=add_heap_arg)
    runner.argparser.add_argument(
        "--heap",
        type=int,
        default=0,
        help="objects in the inherited heap (fork benchmarks only when > 0)",
    )
    args = runner.parse_args()
    heap = args.heap
    if args.worker:
        HEAP.extend([i] for i in range(heap))
        gc.collect()
    runner.metadata["safeproc_heap_objects"] = str(heap)
    plain = {"stdlib": multiprocessing, "multiprocess": multiprocess}
    safe = {"stdlib": safeproc.stdlib, "multiprocess": safeproc}
    report = safeproc.CleanupPolicy(report=True)
    # A spawned or forkserver child inherits nothing: a heap matters to fork.
    methods = METHODS if heap == 0 else ("fork",)
    for method in methods:
        for backend in BACKENDS:
            plain_ctx = plain[backend].get_context(method)
            safe_ctx = safe[backend].get_context(method)
            name = f"{method}-{backend}-heap{heap}"
            runner.bench_time_func(f"start_join-plain-{name}", time_start_join, plain_ctx, int)
            runner.bench_time_func(f"start_join-safe-{name}", time_start_join, safe_ctx, int)
            runner.bench_time_func(
                f"start_join-naive-{name}", time_start_join, plain_ctx, gc.collect
            )
            if method == "fork":
                runner.bench_time_func(f"cleanup-safe-{name}", time_safe_cleanup, safe_ctx, report)
                runner.bench_time_func(f"cleanup-naive-{name}", time_naive_cleanup, plain_ctx)
    if heap == 0:
        for backend in BACKENDS:
            for kind, module in (("plain", plain[backend]), ("safe", safe[backend])):
                name = f"pool_map-{kind}-fork-{backend}"
                runner.bench_time_func(
                    name, time_pool_map, module.get_context("fork"), name, inner_loops=POOL_TASKS
                )


if __name__ == "__main__":
    main()
