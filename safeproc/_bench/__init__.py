"""``python -m safeproc bench``: what safe exit costs, next to plain multiprocessing.

Every figure is a comparison measured in one run, interleaved: within a
round, the variants (plain, safeproc, naive; both backends) run once each in
a shuffled order, so machine noise (other processes on the same cores)
lands on all of them alike. The first rounds are warm-up and are dropped.
Tables show medians with the 25th-75th percentile spread; ratios are ratios
of medians, and the verdicts give each a 95% bootstrap interval. A child
that fails is left out of the figures and listed under "Errors".

Layout of a run::

    python -m safeproc bench        (this module, run_bench)
      for each inherited heap size:
        python -c <run_worker>      a fresh interpreter: heap, forkservers
          probe module              stdlib only, written to a temp directory:
                                    builds the heap, measures the child
          latency, cleanup, memory  for each start method
      python -c <run_worker>        Pool.map throughput, pool lifecycle
      python -c <run_worker>        terminate() of a busy sigterm="cleanup" pool
      table, verdicts, --json, --plot

Variants. *plain* is ``multiprocessing`` or ``multiprocess`` as is; *safe*
is ``safeproc.stdlib`` or ``safeproc`` with the default policy; *naive* is
plain with ``gc.collect()`` at the end of the target (the hand-rolled fix).
Latency targets are builtins (``int``, ``gc.collect``) and the child-side
probes live in a module that imports only the standard library: a plain
spawn or forkserver child therefore never imports safeproc, and safeproc's
own import, which its children pay, is charged to safeproc alone.

The inherited heap is ``N`` one-element lists (``[[i] for i in range(N)]``,
every one tracked by the garbage collector), built by a fork parent before
it forks, and by the forkserver process through its preload list. A spawned
child inherits nothing: its column shows only what the parent's heap costs
the parent.

Private memory is ``Private_Dirty`` from ``/proc/self/smaps_rollup`` (psutil's
USS where ``/proc`` is missing), read by the child itself right after the
fork (an ``os.register_at_fork`` hook) and again in ``os._exit``, after
everything the plain library and safeproc do; the difference is what the
exit path added (pages copied on write, modules imported).
"""

from __future__ import annotations

import json
import os
import sys

from safeproc._bench._analysis import analyse
from safeproc._bench._config import FULL, QUICK
from safeproc._bench._measure import measure
from safeproc._bench._plot import plot
from safeproc._bench._progress import Progress
from safeproc._bench._render import render, to_json
from safeproc._bench._worker import run_worker

__all__ = ["run_bench", "run_worker", "uncompiled_modules"]


def uncompiled_modules() -> list[str]:
    """Name safeproc's loaded modules that have no compiled bytecode file.

    A spawned child compiles those from source on every start (an install
    normally writes the bytecode; ``PYTHONDONTWRITEBYTECODE`` on a source
    checkout does not): the spawn figures would then charge safeproc for
    compiling, which users with an installed package never pay.
    """
    missing = []
    for name, module in sorted(sys.modules.items()):
        if name != "safeproc" and not name.startswith("safeproc."):
            continue
        cached = getattr(module, "__cached__", None)
        if getattr(module, "__file__", None) and cached and not os.path.exists(cached):
            missing.append(name)
    return missing


def run_bench(
    *, full: bool = False, json_path: str | None = None, plot_path: str | None = None
) -> int:
    """Run the bench, print the table and verdicts; return the exit status."""
    if plot_path is not None:
        try:
            import matplotlib as mpl  # noqa: F401, PLC0415 - checked before a long run
        except ImportError:
            sys.stderr.write("--plot needs matplotlib: python -m pip install 'safeproc[plot]'\n")
            return 2
    profile = FULL if full else QUICK
    progress = Progress()
    progress.line(
        f"safeproc bench, {profile.name} profile"
        + ("" if full else " (fork at heaps 0 and 4M; forkserver and spawn at 0; --full for all)")
    )
    missing = uncompiled_modules()
    if missing:
        progress.line(
            f"note: {len(missing)} of safeproc's modules have no compiled bytecode:"
            " spawned children compile them, and the spawn figures include that"
        )
        progress.line("(`python -m compileall` on safeproc's directory first measures an install)")
    data = measure(profile, progress)
    analysis = analyse(data)
    sys.stdout.write(render(data, analysis) + "\n")
    sys.stdout.flush()
    if json_path is not None:
        with open(json_path, "w", encoding="utf-8") as f:
            json.dump(to_json(data, analysis), f, indent=1)
        progress.line(f"wrote {json_path}")
    if plot_path is not None:
        plot(data, analysis, plot_path)
        progress.line(f"wrote {plot_path}")
    return 1 if data["errors"] else 0
