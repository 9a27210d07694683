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

import contextlib
import datetime as dt
import gc
import json
import math
import multiprocessing
import os
import platform
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import multiprocess

import safeproc
import safeproc.stdlib

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Sequence

__all__ = ["run_bench", "run_worker"]

BACKENDS = ("stdlib", "multiprocess")
#: The start methods measured; ``forkserver+preload`` is forkserver with
#: safeproc in the server's preload list (the server imports it once, so
#: safe children do not import it each).
METHODS = ("fork", "forkserver", "forkserver+preload", "spawn")
PROBE_MODULE = "_safeproc_bench_probe"
POOL_TASKS = 10_000
POOL_WORKERS = 2
TERMINATE_DEADLINE = 1.0
#: How long a terminate() may take before the bench calls it hung.
TERMINATE_HANG = 10.0

# -- targets (issue 6); never loosened -----------------------------------------

TARGET_LATENCY_EMPTY = {"fork": 1.05, "forkserver": 1.03, "spawn": 1.03}
TARGET_LATENCY_FORK_4M = 1.10
TARGET_CLEANUP_4M_SECONDS = 0.002
TARGET_CLEANUP_NAIVE_FACTOR = 300.0
TARGET_EXTRA_PRIVATE_KIB = 1024
TARGET_POOL_THROUGHPUT = 0.98
TARGET_TERMINATE_MARGIN = 0.100
BIG_HEAP = 4_000_000
#: From this heap size on, the naive variant (a second a run) gets fewer rounds.
NAIVE_COSTLY_HEAP = 1_000_000


@dataclass(frozen=True)
class Profile:
    """How much to measure."""

    name: str
    #: start method -> inherited heap sizes
    heaps: dict[str, tuple[int, ...]]
    #: start method -> measured latency rounds (after warm-up)
    rounds: dict[str, int]
    warmup: int
    #: rounds of the naive variant at heaps of a million objects and more
    naive_rounds_big: int
    #: memory and cleanup-phase runs per variant
    memory_rounds: int
    pool_methods: tuple[str, ...]
    pool_rounds: int
    #: rounds of Pool.map with chunksize=1 (one pipe round trip per task)
    chunk1_rounds: int
    lifecycle_rounds: int
    terminate_methods: tuple[str, ...]
    terminate_rounds: int


QUICK = Profile(
    name="quick",
    heaps={
        "fork": (0, BIG_HEAP),
        "forkserver": (0,),
        "forkserver+preload": (0,),
        "spawn": (0,),
    },
    rounds={"fork": 30, "forkserver": 15, "forkserver+preload": 15, "spawn": 8},
    warmup=2,
    naive_rounds_big=2,
    memory_rounds=3,
    pool_methods=("fork",),
    pool_rounds=100,
    chunk1_rounds=0,
    lifecycle_rounds=8,
    terminate_methods=("fork",),
    terminate_rounds=2,
)

FULL = Profile(
    name="full",
    heaps={
        "fork": (0, 100_000, 1_000_000, BIG_HEAP),
        "forkserver": (0, 100_000, 1_000_000, BIG_HEAP),
        "forkserver+preload": (0, BIG_HEAP),
        "spawn": (0, 100_000, 1_000_000, BIG_HEAP),
    },
    rounds={"fork": 100, "forkserver": 40, "forkserver+preload": 40, "spawn": 20},
    warmup=3,
    naive_rounds_big=5,
    memory_rounds=8,
    pool_methods=("fork", "forkserver", "spawn"),
    pool_rounds=300,
    chunk1_rounds=12,
    lifecycle_rounds=20,
    terminate_methods=("fork", "forkserver", "spawn"),
    terminate_rounds=5,
)

# -- the child side: a module that imports only the standard library -----------

# Written to a temporary directory and imported by name (by the fork parent,
# and by the forkserver through its preload list). Kept as source text, not
# a safeproc module: importing anything under safeproc would import safeproc
# into plain children too and hide what its import costs.
_PROBE_SOURCE = '''\
"""Child-side probes of python -m safeproc bench (standard library only)."""
import gc
import os
import time

HEAP_SIZE = {heap_size}
FLAG_PATH = {flag_path!r}
HEAP = [[i] for i in range(HEAP_SIZE)]
gc.collect()
start_private_kib = -1


def private_kib():
    """This process's private dirty memory in KiB, or -1 if unknown."""
    for path in ("/proc/self/smaps_rollup", "/proc/self/smaps"):
        try:
            with open(path, "rb") as f:
                data = f.read()
        except OSError:
            continue
        return sum(
            int(line.split()[1]) for line in data.splitlines()
            if line.startswith(b"Private_Dirty:")
        )
    try:
        import psutil
    except ImportError:
        return -1
    return psutil.Process().memory_full_info().uss // 1024


def _after_fork_in_child():
    global start_private_kib
    if os.path.exists(FLAG_PATH):
        start_private_kib = private_kib()


os.register_at_fork(after_in_child=_after_fork_in_child)


class Node:
    def __init__(self, value):
        self.value = value
        self.peer = None


def child_work():
    """What a small task leaves behind: a few hundred objects and a cycle."""
    nodes = [Node(i) for i in range(200)]
    for a, b in zip(nodes, nodes[1:]):
        a.peer = b
    nodes[-1].peer = nodes[0]
    return {{"rows": [dict(n=i, s=str(i)) for i in range(100)]}}


def probe(result_path, naive):
    """Target of the memory and cleanup runs; records them at os._exit."""
    child_work()
    gc_seconds = -1.0
    if naive:
        started = time.perf_counter()
        gc.collect()
        gc_seconds = time.perf_counter() - started
    real_exit = os._exit

    def exit_with_probe(code):
        end = private_kib()
        with open(result_path, "w") as f:
            f.write("%d %d %r" % (start_private_kib, end, gc_seconds))
        real_exit(code)

    os._exit = exit_with_probe


def busy(seconds, marker_dir):
    """A CPU-bound Python task (checks signals between bytecodes)."""
    open(os.path.join(marker_dir, str(os.getpid())), "w").close()
    end = time.monotonic() + seconds
    n = 0
    while time.monotonic() < end:
        n += 1
    return n
'''


# -- statistics -------------------------------------------------------------------


def _quantile(sorted_values: Sequence[float], q: float) -> float:
    """Linear-interpolated quantile of already sorted values."""
    if not sorted_values:
        return math.nan
    pos = (len(sorted_values) - 1) * q
    low = math.floor(pos)
    high = math.ceil(pos)
    return sorted_values[low] + (sorted_values[high] - sorted_values[low]) * (pos - low)


def summarize(samples: Sequence[float]) -> dict[str, Any]:
    """Median, spread and the samples themselves."""
    ordered = sorted(samples)
    if not ordered:
        return {"n": 0, "median": None, "p25": None, "p75": None, "min": None, "max": None}
    return {
        "n": len(ordered),
        "median": statistics.median(ordered),
        "p25": _quantile(ordered, 0.25),
        "p75": _quantile(ordered, 0.75),
        "min": ordered[0],
        "max": ordered[-1],
        "samples": list(samples),
    }


def _ratio(numerator: dict[str, Any] | None, denominator: dict[str, Any] | None) -> float | None:
    if not numerator or not denominator:
        return None
    top, bottom = numerator.get("median"), denominator.get("median")
    if top is None or bottom is None or bottom <= 0:
        return None
    return float(top) / float(bottom)


# -- progress -------------------------------------------------------------------


class _Progress:
    """One updating line on a terminal, milestone lines elsewhere (stderr)."""

    def __init__(self) -> None:
        self.tty = sys.stderr.isatty()
        self.started = time.monotonic()

    def step(self, label: str, done: int, total: int) -> None:
        if self.tty:
            elapsed = time.monotonic() - self.started
            sys.stderr.write(f"\r\x1b[K[{elapsed:5.1f}s] {label} {done}/{total}")
            sys.stderr.flush()

    def line(self, text: str) -> None:
        elapsed = time.monotonic() - self.started
        prefix = "\r\x1b[K" if self.tty else ""
        sys.stderr.write(f"{prefix}[{elapsed:5.1f}s] {text}\n")
        sys.stderr.flush()


# -- the worker: one fresh interpreter per inherited heap size -------------------


def _contexts(method: str) -> dict[tuple[str, str], Any]:
    """(backend, kind) -> context; naive uses the plain context."""
    base = method.partition("+")[0]
    plain = {
        "stdlib": multiprocessing.get_context(base),
        "multiprocess": multiprocess.get_context(base),
    }
    safe = {"stdlib": safeproc.stdlib.get_context(base), "multiprocess": safeproc.get_context(base)}
    contexts: dict[tuple[str, str], Any] = {}
    for backend in BACKENDS:
        contexts[backend, "plain"] = plain[backend]
        contexts[backend, "safe"] = safe[backend]
        contexts[backend, "naive"] = plain[backend]
    return contexts


#: Children that failed, reported with the results (a bench keeps going).
_failures: list[str] = []


def _start_join_seconds(process: Any, label: str) -> float | None:  # noqa: ANN401
    """Start and join *process*; its start->join seconds, or None if it failed."""
    started = time.perf_counter()
    process.start()
    process.join()
    elapsed = time.perf_counter() - started
    if process.exitcode != 0:
        _failures.append(f"{label}: a child ended with exit code {process.exitcode}")
        return None
    return elapsed


def _latency(
    method: str, heap: int, cfg: dict[str, Any], rng: random.Random, progress: _Progress
) -> dict[str, Any]:
    """Start->join of one process: plain, safe, naive; both backends."""
    contexts = _contexts(method)
    targets: dict[str, Callable[[], object]] = {"plain": int, "safe": int, "naive": gc.collect}
    warmup, rounds = cfg["warmup"], cfg["rounds"][method]
    naive_rounds = cfg["naive_rounds_big"] if heap >= NAIVE_COSTLY_HEAP else rounds
    samples: dict[str, list[float]] = {f"{b}/{k}": [] for b, k in contexts}
    for r in range(warmup + rounds):
        measured = r - warmup
        variants = [
            (b, k)
            for (b, k) in contexts
            # The naive variant at a big heap costs a second a run: no
            # warm-up (nothing to warm), fewer rounds.
            if k != "naive" or naive_rounds == rounds or 0 <= measured < naive_rounds
        ]
        rng.shuffle(variants)
        for backend, kind in variants:
            process = contexts[backend, kind].Process(target=targets[kind])
            elapsed = _start_join_seconds(process, f"{method}, heap {heap:,}, {backend}/{kind}")
            if measured >= 0 and elapsed is not None:
                samples[f"{backend}/{kind}"].append(elapsed)
        progress.step(f"{method}, heap {heap:,}: latency", r + 1, warmup + rounds)
    return {label: summarize(values) for label, values in samples.items()}


def _child_phase(  # noqa: PLR0913 - one measurement, its inputs
    *,
    method: str,
    heap: int,
    cfg: dict[str, Any],
    rng: random.Random,
    progress: _Progress,
    workdir: str,
) -> dict[str, Any]:
    """Cleanup time inside the child and private memory added by exit."""
    probe = sys.modules[PROBE_MODULE]
    contexts = _contexts(method)
    report_policy = safeproc.CleanupPolicy(report=True)
    rounds = cfg["memory_rounds"]
    naive_rounds = min(rounds, cfg["naive_rounds_big"]) if heap >= NAIVE_COSTLY_HEAP else rounds
    kinds = ("plain", "safe", "safe-report", "naive")
    memory: dict[str, list[float]] = {f"{b}/{k}": [] for b in BACKENDS for k in kinds}
    cleanup: dict[str, list[float]] = {
        f"{b}/{part}": [] for b in BACKENDS for part in ("start", "exit", "total", "gc", "naive")
    }
    steps: dict[str, list[float]] = {}
    counter = 0
    flag = probe.FLAG_PATH
    with open(flag, "w"):
        pass
    try:
        for r in range(1 + rounds):  # one warm-up round
            # At a big heap the naive variant costs a second a run: no
            # warm-up for it (nothing to warm), and fewer rounds.
            with_naive = 1 <= r <= naive_rounds if naive_rounds < rounds else True
            variants = [(b, k) for b in BACKENDS for k in kinds if k != "naive" or with_naive]
            rng.shuffle(variants)
            for backend, kind in variants:
                counter += 1
                result_path = os.path.join(workdir, f"probe-{counter}")
                ctx = contexts[backend, "safe" if kind.startswith("safe") else "plain"]
                kwargs: dict[str, Any] = {}
                if kind == "safe-report":
                    kwargs["cleanup"] = report_policy
                process = ctx.Process(
                    target=probe.probe, args=(result_path, kind == "naive"), **kwargs
                )
                label = f"{method}, heap {heap:,}, {backend}/{kind} (memory)"
                if _start_join_seconds(process, label) is None or r == 0:
                    continue
                with open(result_path, encoding="ascii") as f:
                    start_kib, end_kib, gc_seconds = f.read().split()
                if int(start_kib) >= 0 and int(end_kib) >= 0:
                    memory[f"{backend}/{kind}"].append(float(int(end_kib) - int(start_kib)))
                if kind == "naive":
                    cleanup[f"{backend}/naive"].append(float(gc_seconds))
                if kind == "safe-report":
                    report = process.cleanup_report
                    start = sum(s.seconds for s in report.steps if s.name == "start")
                    gc_step = sum(s.seconds for s in report.steps if s.name == "gc")
                    cleanup[f"{backend}/start"].append(start)
                    cleanup[f"{backend}/exit"].append(report.seconds - start)
                    cleanup[f"{backend}/total"].append(report.seconds)
                    cleanup[f"{backend}/gc"].append(gc_step)
                    for step in report.steps:
                        steps.setdefault(f"{backend}/{step.name}", []).append(step.seconds)
            progress.step(f"{method}, heap {heap:,}: cleanup and memory", r + 1, 1 + rounds)
    finally:
        os.unlink(flag)
    return {
        "memory_kib": {label: summarize(v) for label, v in memory.items()},
        "cleanup_seconds": {label: summarize(v) for label, v in cleanup.items()},
        "step_seconds": {label: summarize(v) for label, v in steps.items()},
    }


def _configure_forkservers(method: str) -> None:
    """Preload the heap module in both forkservers (plus safeproc for +preload)."""
    stdlib_preload = [PROBE_MODULE]
    dill_preload = [PROBE_MODULE]
    if method == "forkserver+preload":
        stdlib_preload.append("safeproc.stdlib")
        dill_preload.append("safeproc")
    multiprocessing.get_context("forkserver").set_forkserver_preload(stdlib_preload)
    multiprocess.get_context("forkserver").set_forkserver_preload(dill_preload)
    # As in a program that uses safeproc: its first safe process starts the
    # server, and so puts safeproc in the server's preload list (plain
    # children share that server). Left to the shuffled order, a plain
    # process would start it in some runs and not in others.
    contexts = _contexts(method)
    for backend in BACKENDS:
        _start_join_seconds(contexts[backend, "safe"].Process(target=int), f"{method} server")


def _heap_cell(cfg: dict[str, Any], progress: _Progress) -> dict[str, Any]:
    heap = cfg["heap"]
    rng = random.Random(cfg["seed"])  # noqa: S311 - shuffling, not cryptography
    started = time.perf_counter()
    __import__(PROBE_MODULE)  # builds the fork parent's heap
    build_seconds = time.perf_counter() - started
    results: dict[str, Any] = {"heap": heap, "heap_build_seconds": build_seconds, "methods": {}}
    for method in cfg["methods"]:
        if method.startswith("forkserver"):
            _configure_forkservers(method)
        progress.line(f"{method}, inherited heap {heap:,} objects")
        cell: dict[str, Any] = {"latency": _latency(method, heap, cfg, rng, progress)}
        if method != "spawn":
            cell.update(
                _child_phase(
                    method=method,
                    heap=heap,
                    cfg=cfg,
                    rng=rng,
                    progress=progress,
                    workdir=cfg["workdir"],
                )
            )
        results["methods"][method] = cell
    return results


def _pool_cell(cfg: dict[str, Any], progress: _Progress) -> dict[str, Any]:
    """Pool.map throughput on warm pools, and a pool's whole lifecycle."""
    rng = random.Random(cfg["seed"])  # noqa: S311 - shuffling, not cryptography
    tasks = range(POOL_TASKS)
    results: dict[str, Any] = {}
    for method in cfg["pool_methods"]:
        contexts = _contexts(method)
        variants = [(b, k) for b in BACKENDS for k in ("plain", "safe")]
        progress.line(f"Pool.map of {POOL_TASKS:,} tiny tasks, {method}")
        pools = {v: contexts[v].Pool(POOL_WORKERS) for v in variants}
        map_samples: dict[str, list[float]] = {f"{b}/{k}": [] for b, k in variants}
        chunk1_samples: dict[str, list[float]] = {f"{b}/{k}": [] for b, k in variants}
        try:
            for pool in pools.values():
                pool.map(abs, tasks)  # warm-up: workers started, pipes primed
            for samples, rounds, chunksize in (
                (map_samples, cfg["pool_rounds"], None),
                (chunk1_samples, cfg["chunk1_rounds"], 1),
            ):
                for r in range(rounds):
                    rng.shuffle(variants)
                    for variant in variants:
                        started = time.perf_counter()
                        pools[variant].map(abs, tasks, chunksize)
                        samples["/".join(variant)].append(time.perf_counter() - started)
                    progress.step(f"Pool.map chunksize={chunksize}, {method}", r + 1, rounds)
        finally:
            for pool in pools.values():
                pool.close()
                pool.join()
        life_samples: dict[str, list[float]] = {f"{b}/{k}": [] for b, k in variants}
        for r in range(1 + cfg["lifecycle_rounds"]):
            rng.shuffle(variants)
            for variant in variants:
                started = time.perf_counter()
                pool = contexts[variant].Pool(POOL_WORKERS)
                pool.map(abs, tasks)
                pool.close()
                pool.join()
                if r:
                    life_samples["/".join(variant)].append(time.perf_counter() - started)
            progress.step(f"Pool lifecycle, {method}", r + 1, 1 + cfg["lifecycle_rounds"])
        results[method] = {
            "map_seconds": {k: summarize(v) for k, v in map_samples.items()},
            "map_chunksize1_seconds": {k: summarize(v) for k, v in chunk1_samples.items()},
            "lifecycle_seconds": {k: summarize(v) for k, v in life_samples.items()},
        }
    return results


def _terminate_once(pool: Any, busy: Callable[[float, str], int], markers: str) -> dict[str, Any]:  # noqa: ANN401
    """Make every worker busy, terminate the pool, time terminate()."""
    for name in os.listdir(markers):
        os.unlink(os.path.join(markers, name))
    pending = [pool.apply_async(busy, (60.0, markers)) for _ in range(POOL_WORKERS)]
    waited = time.monotonic()
    while len(os.listdir(markers)) < POOL_WORKERS and time.monotonic() - waited < 60:  # noqa: PLR2004
        time.sleep(0.01)  # until every worker is inside busy()
    time.sleep(0.05)
    workers = list(pool._pool)
    outcome: dict[str, Any] = {"busy_workers": len(os.listdir(markers))}

    def terminate() -> None:
        started = time.perf_counter()
        pool.terminate()
        outcome["seconds"] = time.perf_counter() - started

    thread = threading.Thread(target=terminate, daemon=True)
    thread.start()
    thread.join(TERMINATE_HANG)
    if thread.is_alive():
        outcome["hung"] = True
        for worker in workers:  # this bench's own children
            if worker.pid is not None and worker.exitcode is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(worker.pid, signal.SIGKILL)
        thread.join(5.0)
    else:
        pool.join()
    outcome["exitcodes"] = [w.exitcode for w in workers]
    outcome["busy_tasks_left"] = sum(not p.ready() for p in pending)
    return outcome


def _terminate_cell(cfg: dict[str, Any], progress: _Progress) -> dict[str, Any]:
    """terminate() of a busy pool: plain, and safe with sigterm="cleanup"."""
    probe = __import__(PROBE_MODULE)
    policy = safeproc.CleanupPolicy(sigterm="cleanup", timeout=TERMINATE_DEADLINE, report=True)
    results: dict[str, Any] = {"deadline": TERMINATE_DEADLINE}
    markers = os.path.join(cfg["workdir"], "busy")
    os.makedirs(markers, exist_ok=True)
    for method in cfg["terminate_methods"]:
        if method.startswith("forkserver"):
            _configure_forkservers(method)
        contexts = _contexts(method)
        progress.line(f"terminate() of a busy pool, {method}")
        for backend in BACKENDS:
            for kind in ("plain", "safe"):
                runs = []
                for r in range(cfg["terminate_rounds"]):
                    if kind == "safe":
                        pool = contexts[backend, kind].Pool(POOL_WORKERS, cleanup=policy)
                    else:
                        pool = contexts[backend, kind].Pool(POOL_WORKERS)
                    outcome = _terminate_once(pool, probe.busy, markers)
                    if kind == "safe" and not outcome.get("hung"):
                        reports = pool.cleanup_reports()
                        outcome["reports"] = len(reports)
                        outcome["sigterm_reports"] = sum(
                            getattr(rep, "trigger", "") == "sigterm" for rep in reports
                        )
                    runs.append(outcome)
                    progress.step(
                        f"terminate, {method}, {backend}/{kind}", r + 1, cfg["terminate_rounds"]
                    )
                seconds = [o["seconds"] for o in runs if "seconds" in o]
                results[f"{method}/{backend}/{kind}"] = {
                    "seconds": summarize(seconds),
                    "runs": runs,
                }
    return results


def run_worker(argv: Sequence[str] | None = None) -> int:
    """Entry point of a bench worker interpreter (``python -c``)."""
    args = sys.argv[1:] if argv is None else list(argv)
    with open(args[0], encoding="utf-8") as f:
        cfg = json.load(f)
    # Pool workers are forked while the pool's threads run: on 3.12+ each
    # fork warns, which every pool user sees too; it is noise here.
    warnings.filterwarnings("ignore", message=r"This process .* is multi-threaded")
    progress = _Progress()
    progress.started = cfg["started"]
    kind = cfg["kind"]
    if kind == "heap":
        result = _heap_cell(cfg, progress)
    elif kind == "pool":
        result = _pool_cell(cfg, progress)
    else:
        result = _terminate_cell(cfg, progress)
    result["failures"] = _failures
    with open(cfg["result_path"], "w", encoding="utf-8") as f:
        json.dump(result, f)
    return 0


# -- the orchestrator ----------------------------------------------------------------


@dataclass
class _Run:
    profile: Profile
    workdir: str
    progress: _Progress
    seed: int
    errors: list[str] = field(default_factory=list)
    counter: int = 0

    def worker(self, cfg: dict[str, Any], timeout: float) -> dict[str, Any] | None:
        """Run one worker interpreter; return its results, or None on failure."""
        self.counter += 1
        cfg = {
            **cfg,
            "seed": self.seed + self.counter,
            "started": self.progress.started,
            "workdir": self.workdir,
            "result_path": os.path.join(self.workdir, f"result-{self.counter}.json"),
        }
        cfg_path = os.path.join(self.workdir, f"config-{self.counter}.json")
        with open(cfg_path, "w", encoding="utf-8") as f:
            json.dump(cfg, f)
        code = "import sys; from safeproc._bench import run_worker; sys.exit(run_worker())"
        # A new session: on a timeout the whole group (pool workers,
        # forkservers, children) goes, and nothing else.
        env = dict(os.environ)
        if "probe_dir" in cfg:
            # Through the environment, so the forkservers find the probe
            # module too (3.11's forkserver imports its preload list before
            # it applies the parent's sys.path).
            env["PYTHONPATH"] = os.pathsep.join(
                p for p in (cfg["probe_dir"], env.get("PYTHONPATH")) if p
            )
        with subprocess.Popen(  # noqa: S603 - this interpreter, a fixed program
            [sys.executable, "-c", code, cfg_path], start_new_session=True, env=env
        ) as worker:
            try:
                returncode = worker.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(worker.pid, signal.SIGKILL)
                worker.wait()
                self.errors.append(f"worker {cfg['kind']} timed out after {timeout:.0f} s")
                return None
            except BaseException:
                os.killpg(worker.pid, signal.SIGKILL)
                raise
            finally:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(worker.pid, signal.SIGKILL)  # forkservers left behind
        if returncode != 0:
            self.errors.append(f"worker {cfg['kind']} failed with exit code {returncode}")
            return None
        with open(cfg["result_path"], encoding="utf-8") as f:
            result: dict[str, Any] = json.load(f)
        failures = result.pop("failures", [])
        if failures:
            self.errors.append(f"{len(failures)} child(ren) failed, left out of the figures:")
            self.errors.extend(f"  {line}" for line in failures[:20])
        return result


def _write_probe(directory: str, heap: int) -> str:
    os.makedirs(directory, exist_ok=True)
    source = _PROBE_SOURCE.format(
        heap_size=heap, flag_path=os.path.join(directory, "measure-memory")
    )
    with open(os.path.join(directory, f"{PROBE_MODULE}.py"), "w", encoding="utf-8") as f:
        f.write(source)
    return directory


def _heap_groups(profile: Profile) -> Iterator[tuple[int, bool, tuple[str, ...]]]:
    """(heap, preload safeproc in the forkserver, methods) per worker."""
    heaps = sorted({h for hs in profile.heaps.values() for h in hs})
    for heap in heaps:
        methods = tuple(
            m for m in METHODS if m != "forkserver+preload" and heap in profile.heaps.get(m, ())
        )
        if methods:
            yield heap, False, methods
        if heap in profile.heaps.get("forkserver+preload", ()):
            yield heap, True, ("forkserver+preload",)


def _versions() -> dict[str, str | None]:
    from importlib import metadata  # noqa: PLC0415

    versions: dict[str, str | None] = {}
    for name in ("safeproc", "multiprocess", "dill", "psutil", "matplotlib"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def _machine_facts(profile: Profile) -> dict[str, Any]:
    cpu_model = platform.processor() or None
    with contextlib.suppress(OSError), open("/proc/cpuinfo", encoding="utf-8") as f:
        for line in f:
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    mem_total_kib = None
    with contextlib.suppress(OSError), open("/proc/meminfo", encoding="utf-8") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                mem_total_kib = int(line.split()[1])
                break
    return {
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "profile": profile.name,
        "python": sys.version,
        "python_version": platform.python_version(),
        "implementation": platform.python_implementation(),
        "executable": sys.executable,
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_model": cpu_model,
        "cpu_count": os.cpu_count(),
        "mem_total_kib": mem_total_kib,
        "load_average_start": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "versions": _versions(),
        "heap_objects": "N one-element lists, [[i] for i in range(N)], all gc-tracked",
        "pool_workers": POOL_WORKERS,
        "pool_tasks": POOL_TASKS,
    }


def measure(profile: Profile, progress: _Progress) -> dict[str, Any]:
    """Run every worker of *profile*; return the raw results and facts."""
    data: dict[str, Any] = {"facts": _machine_facts(profile), "heaps": [], "errors": []}
    common = {
        "warmup": profile.warmup,
        "rounds": profile.rounds,
        "naive_rounds_big": profile.naive_rounds_big,
        "memory_rounds": profile.memory_rounds,
    }
    with tempfile.TemporaryDirectory(prefix="safeproc-bench-") as workdir:
        run = _Run(profile, workdir, progress, seed=random.SystemRandom().randrange(1 << 30))
        data["facts"]["seed"] = run.seed
        for heap, preload, methods in _heap_groups(profile):
            probe_dir = _write_probe(os.path.join(workdir, f"probe-{heap}-{preload}"), heap)
            result = run.worker(
                {
                    **common,
                    "kind": "heap",
                    "heap": heap,
                    "methods": methods,
                    "probe_dir": probe_dir,
                },
                timeout=1800,
            )
            if result is not None:
                data["heaps"].append(result)
        progress.line("pools")
        data["pool"] = run.worker(
            {
                "kind": "pool",
                "pool_methods": profile.pool_methods,
                "pool_rounds": profile.pool_rounds,
                "chunk1_rounds": profile.chunk1_rounds,
                "lifecycle_rounds": profile.lifecycle_rounds,
            },
            timeout=1200,
        )
        data["terminate"] = run.worker(
            {
                "kind": "terminate",
                "terminate_methods": profile.terminate_methods,
                "terminate_rounds": profile.terminate_rounds,
                "probe_dir": _write_probe(os.path.join(workdir, "probe-terminate"), 0),
            },
            timeout=600,
        )
        data["errors"] = run.errors
    data["facts"]["load_average_end"] = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    data["facts"]["seconds"] = time.monotonic() - progress.started
    return data


# -- analysis: rows, ratios, verdicts ---------------------------------------------------


def analyse(data: dict[str, Any]) -> dict[str, Any]:
    """Turn raw worker results into table rows, ratios and verdicts."""
    latency_rows: list[dict[str, Any]] = []
    cleanup_rows: list[dict[str, Any]] = []
    memory_rows: list[dict[str, Any]] = []
    for heap_result in data["heaps"]:
        heap = heap_result["heap"]
        for method, cell in heap_result["methods"].items():
            lat = cell["latency"]
            for backend in BACKENDS:
                plain, safe, naive = (lat[f"{backend}/{k}"] for k in ("plain", "safe", "naive"))
                latency_rows.append(
                    {
                        "method": method,
                        "heap": heap,
                        "backend": backend,
                        "plain": plain,
                        "safe": safe,
                        "naive": naive,
                        "safe_over_plain": _ratio(safe, plain),
                        "safe_over_plain_ci95": _ratio_ci(safe, plain),
                        "naive_over_safe": _ratio(naive, safe),
                        "plain_spread": _relative_spread(plain),
                    }
                )
                if "cleanup_seconds" not in cell:
                    continue
                cs = cell["cleanup_seconds"]
                cleanup_rows.append(
                    {
                        "method": method,
                        "heap": heap,
                        "backend": backend,
                        "safe_start": cs[f"{backend}/start"],
                        "safe_exit": cs[f"{backend}/exit"],
                        "safe_gc_step": cs[f"{backend}/gc"],
                        "safe_total": cs[f"{backend}/total"],
                        "naive_gc": cs[f"{backend}/naive"],
                        "naive_over_safe": _ratio(cs[f"{backend}/naive"], cs[f"{backend}/total"]),
                        "safe_steps": {
                            label.split("/", 1)[1]: value
                            for label, value in cell.get("step_seconds", {}).items()
                            if label.startswith(f"{backend}/")
                        },
                    }
                )
                mem = cell["memory_kib"]
                row = {
                    "method": method,
                    "heap": heap,
                    "backend": backend,
                    "plain": mem[f"{backend}/plain"],
                    "safe": mem[f"{backend}/safe"],
                    "safe_report": mem[f"{backend}/safe-report"],
                    "naive": mem[f"{backend}/naive"],
                }
                p, s = row["plain"].get("median"), row["safe"].get("median")
                row["safe_minus_plain"] = None if p is None or s is None else s - p
                memory_rows.append(row)
    pool_rows: list[dict[str, Any]] = []
    for method, cell in (data.get("pool") or {}).items():
        for backend in BACKENDS:
            plain_map, safe_map = (cell["map_seconds"][f"{backend}/{k}"] for k in ("plain", "safe"))
            plain_one, safe_one = (
                cell["map_chunksize1_seconds"][f"{backend}/{k}"] for k in ("plain", "safe")
            )
            plain_life, safe_life = (
                cell["lifecycle_seconds"][f"{backend}/{k}"] for k in ("plain", "safe")
            )
            plain_tput = safe_tput = None
            if plain_map.get("median") and safe_map.get("median"):
                plain_tput = POOL_TASKS / plain_map["median"]
                safe_tput = POOL_TASKS / safe_map["median"]
            pool_rows.append(
                {
                    "method": method,
                    "backend": backend,
                    "plain_map": plain_map,
                    "safe_map": safe_map,
                    "plain_tasks_per_second": plain_tput,
                    "safe_tasks_per_second": safe_tput,
                    "throughput_safe_over_plain": _ratio(plain_map, safe_map),
                    "throughput_safe_over_plain_ci95": _ratio_ci(plain_map, safe_map),
                    "plain_map_chunksize1": plain_one,
                    "safe_map_chunksize1": safe_one,
                    "chunk1_safe_over_plain": _ratio(plain_one, safe_one),
                    "chunk1_safe_over_plain_ci95": _ratio_ci(plain_one, safe_one),
                    "plain_lifecycle": plain_life,
                    "safe_lifecycle": safe_life,
                    "lifecycle_safe_over_plain": _ratio(safe_life, plain_life),
                }
            )
    terminate_rows: list[dict[str, Any]] = []
    term = data.get("terminate") or {}
    for key, value in term.items():
        if key == "deadline":
            continue
        method, backend, kind = key.split("/")
        runs = value["runs"]
        terminate_rows.append(
            {
                "method": method,
                "backend": backend,
                "kind": kind,
                "deadline": term.get("deadline"),
                "seconds": value["seconds"],
                "hung": sum(bool(r.get("hung")) for r in runs),
                "runs": len(runs),
                "exitcodes": sorted({c for r in runs for c in r["exitcodes"] if c is not None}),
                "workers": sum(len(r["exitcodes"]) for r in runs),
                "busy_workers": sum(r.get("busy_workers", 0) for r in runs),
                "reports": sum(r.get("reports", 0) for r in runs),
                "sigterm_reports": sum(r.get("sigterm_reports", 0) for r in runs),
            }
        )
    analysis: dict[str, Any] = {
        "latency": latency_rows,
        "cleanup": cleanup_rows,
        "memory": memory_rows,
        "pool": pool_rows,
        "terminate": terminate_rows,
    }
    analysis["verdicts"] = _verdicts(analysis)
    return analysis


def _ratio_ci(
    numerator: dict[str, Any], denominator: dict[str, Any], resamples: int = 1000
) -> tuple[float, float] | None:
    """95% bootstrap interval of the ratio of medians: how far noise reaches."""
    top, bottom = numerator.get("samples"), denominator.get("samples")
    if not top or not bottom:
        return None
    rng = random.Random(0)  # noqa: S311 - resampling, not cryptography
    ratios = []
    for _ in range(resamples):
        low = statistics.median(rng.choices(bottom, k=len(bottom)))
        if low > 0:
            ratios.append(statistics.median(rng.choices(top, k=len(top))) / low)
    ratios.sort()
    return (_quantile(ratios, 0.025), _quantile(ratios, 0.975))


def _relative_spread(stats: dict[str, Any]) -> float | None:
    if not stats.get("median"):
        return None
    return float(stats["p75"] - stats["p25"]) / float(stats["median"])


@dataclass
class Verdict:
    """One target: met, missed, or not measured in this run."""

    target: str
    status: str  # "met", "missed", "not measured", "not verified"
    detail: str

    def line(self) -> str:
        return f"{self.status.upper():>12}  {self.target}: {self.detail}"


def _fmt_ratio(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def _fmt_ci(ci: Sequence[float] | None) -> str:
    return "n/a" if ci is None else f"{ci[0]:.2f}-{ci[1]:.2f}"


def _noise_note(
    estimates: Sequence[tuple[float | None, Sequence[float] | None]], limit: float, *, upper: bool
) -> str:
    """Say when noise alone could flip a verdict (a 95% CI reaching the limit).

    *upper*: the limit is a maximum (ratios must stay below it).
    """
    flips = []
    for value, ci in estimates:
        if value is None or ci is None:
            continue
        missed = value > limit if upper else value < limit
        reaches = ci[0] <= limit if upper else ci[1] >= limit
        if missed and reaches:
            flips.append("a miss")
        reaches = ci[1] >= limit if upper else ci[0] <= limit
        if not missed and reaches:
            flips.append("a pass")
    if not flips:
        return ""
    kinds = " and ".join(sorted(set(flips)))
    return f"; noise: {kinds} whose 95% CI reaches the limit"


def _verdicts(a: dict[str, Any]) -> list[Verdict]:  # noqa: C901, PLR0912, PLR0915 - one per target
    verdicts: list[Verdict] = []

    def latency_target(method: str, heap: int, limit: float, label: str) -> None:
        rows = [r for r in a["latency"] if r["method"] == method and r["heap"] == heap]
        target = f"latency safe/plain, {label} <= {limit:.2f}"
        if not rows:
            verdicts.append(Verdict(target, "not measured", "not in this profile"))
            return
        worst = max((r["safe_over_plain"] or math.inf) for r in rows)
        parts = ", ".join(
            f"{r['backend']} {_fmt_ratio(r['safe_over_plain'])}"
            f" (95% CI {_fmt_ci(r['safe_over_plain_ci95'])};"
            f" {_ms(r['safe']['median'])} vs {_ms(r['plain']['median'])} ms)"
            for r in rows
        )
        note = _noise_note(
            [(r["safe_over_plain"], r["safe_over_plain_ci95"]) for r in rows], limit, upper=True
        )
        if worst <= limit:
            verdicts.append(Verdict(target, "met", parts + note))
        else:
            verdicts.append(
                Verdict(target, "missed", f"{parts}; over by {worst - limit:.3f}{note}")
            )

    for method in ("fork", "forkserver", "spawn"):
        latency_target(method, 0, TARGET_LATENCY_EMPTY[method], f"{method}, empty heap")
    latency_target("fork", BIG_HEAP, TARGET_LATENCY_FORK_4M, "fork, 4M objects")

    rows = [r for r in a["cleanup"] if r["heap"] == BIG_HEAP and r["method"] == "fork"]
    target = (
        f"cleanup in the child at 4M objects (fork) <= {TARGET_CLEANUP_4M_SECONDS * 1e3:.0f} ms"
        f" and >= {TARGET_CLEANUP_NAIVE_FACTOR:.0f}x below naive gc.collect()"
    )
    if not rows:
        verdicts.append(Verdict(target, "not measured", "not in this profile"))
    else:
        ok = True
        parts = []
        for r in rows:
            total, factor = r["safe_total"]["median"], r["naive_over_safe"]
            ok = ok and total is not None and total <= TARGET_CLEANUP_4M_SECONDS
            ok = ok and factor is not None and factor >= TARGET_CLEANUP_NAIVE_FACTOR
            parts.append(
                f"{r['backend']} {_ms(total)} ms (start {_ms(r['safe_start']['median'])},"
                f" exit steps {_ms(r['safe_exit']['median'])}, gc step"
                f" {_ms(r['safe_gc_step']['median'])}) vs naive {_ms(r['naive_gc']['median'])} ms"
                f" = {_fmt_ratio(factor)}x"
            )
        verdicts.append(Verdict(target, "met" if ok else "missed", "; ".join(parts)))

    target = f"extra private memory per child (safe - plain) <= {TARGET_EXTRA_PRIVATE_KIB} KiB"
    mem = [r for r in a["memory"] if r["safe_minus_plain"] is not None]
    if not mem:
        verdicts.append(Verdict(target, "not measured", "no /proc and no psutil"))
    else:
        parts = []
        for method in dict.fromkeys(r["method"] for r in mem):
            row = max(
                (r for r in mem if r["method"] == method), key=lambda r: r["safe_minus_plain"]
            )
            parts.append(
                f"{method} worst {row['safe_minus_plain']:+,.0f} KiB"
                f" (heap {_heap_label(row['heap'])}, {row['backend']};"
                f" naive {_kib(row['naive']['median'])} KiB)"
            )
        worst = max(r["safe_minus_plain"] for r in mem)
        status = "met" if worst <= TARGET_EXTRA_PRIVATE_KIB else "missed"
        verdicts.append(Verdict(target, status, "; ".join(parts)))

    target = f"Pool.map throughput safe/plain >= {TARGET_POOL_THROUGHPUT:.2f}"
    if not a["pool"]:
        verdicts.append(Verdict(target, "not measured", "the pool worker failed"))
    else:
        measures = [
            (r, size, r[f"{key}_safe_over_plain"], r[f"{key}_safe_over_plain_ci95"])
            for r in a["pool"]
            for key, size in (("throughput", "default chunksize"), ("chunk1", "chunksize=1"))
        ]
        measures = [m for m in measures if m[2] is not None]
        worst = min((m[2] for m in measures), default=0.0)
        detail = ", ".join(
            f"{r['method']} {r['backend']} {size} {_fmt_ratio(ratio)} (95% CI {_fmt_ci(ci)})"
            for r, size, ratio, ci in measures
        )
        detail += _noise_note([(m[2], m[3]) for m in measures], TARGET_POOL_THROUGHPUT, upper=False)
        verdicts.append(
            Verdict(target, "met" if worst >= TARGET_POOL_THROUGHPUT else "missed", detail)
        )

    target = (
        f'busy-pool terminate() with sigterm="cleanup" returns within deadline'
        f" + {TARGET_TERMINATE_MARGIN * 1e3:.0f} ms"
    )
    safe_rows = [r for r in a["terminate"] if r["kind"] == "safe"]
    if not safe_rows:
        verdicts.append(Verdict(target, "not measured", "the terminate worker failed"))
    else:
        parts = []
        status = "met"
        for r in safe_rows:
            limit = r["deadline"] + TARGET_TERMINATE_MARGIN
            slowest = r["seconds"].get("max")
            parts.append(
                f"{r['method']} {r['backend']} max {_ms(slowest)} ms (limit {_ms(limit)}),"
                f" exit codes {r['exitcodes']}, cleanup ran in"
                f" {r['sigterm_reports']}/{r['workers']} workers"
            )
            if r["busy_workers"] < r["workers"]:
                parts.append(f"only {r['busy_workers']}/{r['workers']} workers were busy")
            if r["hung"] or slowest is None or slowest > limit:
                status = "missed"
            elif r["sigterm_reports"] == 0 and status == "met":
                status = "not verified"
        if status == "not verified":
            parts.append("no worker reported a SIGTERM cleanup: is sigterm='cleanup' in place?")
        verdicts.append(Verdict(target, status, "; ".join(parts)))
    return verdicts


# -- output ------------------------------------------------------------------------------


def _ms(seconds: float | None) -> str:
    if seconds is None:
        return "n/a"
    ms = seconds * 1e3
    if ms >= 100:  # noqa: PLR2004 - display precision
        return f"{ms:.0f}"
    if ms >= 10:  # noqa: PLR2004
        return f"{ms:.1f}"
    if ms >= 1:
        return f"{ms:.2f}"
    return f"{ms:.3f}"


def _kib(value: float | None) -> str:
    return "n/a" if value is None else f"{value:,.0f}"


def _heap_label(heap: int) -> str:
    if heap >= 1_000_000:  # noqa: PLR2004 - display units
        return f"{heap / 1e6:g}M"
    if heap >= 1_000:  # noqa: PLR2004
        return f"{heap / 1e3:g}k"
    return str(heap)


def _spread_ms(stats: dict[str, Any]) -> str:
    if stats.get("median") is None:
        return "n/a"
    return f"{_ms(stats['median'])} [{_ms(stats['p25'])}-{_ms(stats['p75'])}]"


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=False))]
    lines.append("  ".join("-" * w for w in widths))
    lines.extend("  ".join(c.rjust(w) for c, w in zip(row, widths, strict=False)) for row in rows)
    return "\n".join(lines)


def render(data: dict[str, Any], analysis: dict[str, Any]) -> str:
    """Render the human-readable report."""
    facts = data["facts"]
    out = [
        f"safeproc bench ({facts['profile']} profile), {facts['date']}",
        f"Python {facts['python_version']} ({facts['implementation']}), {facts['platform']},"
        f" {facts['cpu_count']} CPUs ({facts['cpu_model']}),"
        f" load average {facts['load_average_start'][0]:.2f} -> {facts['load_average_end'][0]:.2f}"
        if facts.get("load_average_start")
        else f"Python {facts['python_version']}, {facts['platform']}",
        "versions: " + ", ".join(f"{k} {v}" for k, v in facts["versions"].items() if v),
        (
            "medians [25th-75th percentile] of rounds interleaved in this run;"
            " ratios are ratios of medians"
        ),
        "",
        "Start->join latency of one process, ms (naive = plain + gc.collect() in the target)",
    ]
    rows = [
        [
            r["method"],
            _heap_label(r["heap"]),
            r["backend"],
            _spread_ms(r["plain"]),
            _spread_ms(r["safe"]),
            _spread_ms(r["naive"]),
            _fmt_ratio(r["safe_over_plain"]),
            _fmt_ratio(r["naive_over_safe"]),
        ]
        for r in analysis["latency"]
    ]
    out.append(
        _table(
            ["method", "heap", "backend", "plain", "safe", "naive", "safe/plain", "naive/safe"],
            rows,
        )
    )
    out += ["", "Cleanup phase inside the child, ms (safe: CleanupReport steps; naive: gc.collect)"]
    rows = [
        [
            r["method"],
            _heap_label(r["heap"]),
            r["backend"],
            _spread_ms(r["safe_start"]),
            _spread_ms(r["safe_exit"]),
            _spread_ms(r["safe_gc_step"]),
            _spread_ms(r["safe_total"]),
            _spread_ms(r["naive_gc"]),
            _fmt_ratio(r["naive_over_safe"]),
        ]
        for r in analysis["cleanup"]
    ]
    out.append(
        _table(
            [
                "method",
                "heap",
                "backend",
                "safe start",
                "safe exit steps",
                "(gc step)",
                "safe total",
                "naive gc",
                "naive/safe",
            ],
            rows,
        )
    )
    names = ("start", "atexit", "finalizers", "gc", "logging", "files", "stdio")
    out += ["", "safe cleanup, median ms per CleanupReport step"]
    rows = [
        [
            r["method"],
            _heap_label(r["heap"]),
            r["backend"],
            *(_ms(r["safe_steps"][n]["median"]) if n in r["safe_steps"] else "-" for n in names),
        ]
        for r in analysis["cleanup"]
    ]
    out.append(_table(["method", "heap", "backend", *names], rows))
    out += ["", "Private memory the child added between fork and os._exit, KiB (Private_Dirty)"]
    rows = [
        [
            r["method"],
            _heap_label(r["heap"]),
            r["backend"],
            _kib(r["plain"].get("median")),
            _kib(r["safe"].get("median")),
            _kib(r["naive"].get("median")),
            "n/a" if r["safe_minus_plain"] is None else f"{r['safe_minus_plain']:+,.0f}",
        ]
        for r in analysis["memory"]
    ]
    out.append(_table(["method", "heap", "backend", "plain", "safe", "naive", "safe-plain"], rows))
    if analysis["pool"]:
        out += [
            "",
            (
                f"Pool({POOL_WORKERS}).map(abs, range({POOL_TASKS:,})), ms: on a warm pool"
                " (default chunksize; chunksize=1), and a pool's whole life"
                " (start, map, close, join); tput = throughput"
            ),
        ]
        rows = [
            [
                r["method"],
                r["backend"],
                _spread_ms(r["plain_map"]),
                _spread_ms(r["safe_map"]),
                _fmt_ratio(r["throughput_safe_over_plain"]),
                _spread_ms(r["plain_map_chunksize1"]),
                _spread_ms(r["safe_map_chunksize1"]),
                _fmt_ratio(r["chunk1_safe_over_plain"]),
                _spread_ms(r["plain_lifecycle"]),
                _spread_ms(r["safe_lifecycle"]),
                _fmt_ratio(r["lifecycle_safe_over_plain"]),
            ]
            for r in analysis["pool"]
        ]
        out.append(
            _table(
                [
                    "method",
                    "backend",
                    "plain map",
                    "safe map",
                    "tput safe/plain",
                    "plain chunk=1",
                    "safe chunk=1",
                    "tput safe/plain",
                    "plain life",
                    "safe life",
                    "life safe/plain",
                ],
                rows,
            )
        )
    if analysis["terminate"]:
        out += [
            "",
            (
                "terminate() of a pool whose workers are busy, ms"
                f" (safe: sigterm='cleanup', deadline {_ms(TERMINATE_DEADLINE)} ms)"
            ),
        ]
        rows = [
            [
                r["method"],
                r["backend"],
                r["kind"],
                _spread_ms(r["seconds"]),
                _ms(r["seconds"].get("max")),
                " ".join(map(str, r["exitcodes"])),
                f"{r['sigterm_reports']}/{r['workers']}" if r["kind"] == "safe" else "-",
                str(r["hung"]),
            ]
            for r in analysis["terminate"]
        ]
        out.append(
            _table(
                [
                    "method",
                    "backend",
                    "pool",
                    "terminate()",
                    "max",
                    "exit codes",
                    "cleanup ran",
                    "hung",
                ],
                rows,
            )
        )
    out += ["", "Targets (issue 6):"]
    out += [v.line() for v in analysis["verdicts"]]
    if data["errors"]:
        out += ["", "Errors:", *(f"  {e}" for e in data["errors"])]
    return "\n".join(out)


def to_json(data: dict[str, Any], analysis: dict[str, Any]) -> dict[str, Any]:
    """Everything: facts, raw samples, rows with ratios, verdicts (seconds, KiB)."""
    return {
        "facts": data["facts"],
        "units": {"time": "seconds", "memory": "KiB"},
        "targets": {
            "latency_empty_heap_safe_over_plain_max": TARGET_LATENCY_EMPTY,
            "latency_fork_4M_safe_over_plain_max": TARGET_LATENCY_FORK_4M,
            "cleanup_4M_seconds_max": TARGET_CLEANUP_4M_SECONDS,
            "cleanup_4M_naive_over_safe_min": TARGET_CLEANUP_NAIVE_FACTOR,
            "extra_private_kib_max": TARGET_EXTRA_PRIVATE_KIB,
            "pool_throughput_safe_over_plain_min": TARGET_POOL_THROUGHPUT,
            "terminate_over_deadline_seconds_max": TARGET_TERMINATE_MARGIN,
        },
        **{k: v for k, v in analysis.items() if k != "verdicts"},
        "verdicts": [
            {"target": v.target, "status": v.status, "detail": v.detail}
            for v in analysis["verdicts"]
        ],
        "errors": data["errors"],
        # What the workers measured, before analysis: enough to redo it.
        "raw": {k: v for k, v in data.items() if k != "facts"},
    }


def _plot_panel(  # noqa: PLR0913 - one panel, its inputs
    ax: Any,  # noqa: ANN401 - a matplotlib Axes
    rows: list[dict[str, Any]],
    lines: Sequence[tuple[str, str, str, str]],
    *,
    heaps: list[int],
    scale: float,
    title: str,
    unit: str,
) -> None:
    """Draw one (key, method, style, label) line per backend against heap size."""
    for key, method, style, label in lines:
        for backend in BACKENDS:
            picked = sorted(
                (r for r in rows if r["method"] == method and r["backend"] == backend),
                key=lambda r: r["heap"],
            )
            if not picked:
                continue
            xs = [heaps.index(r["heap"]) for r in picked]  # evenly spaced sizes
            ys = [max((r[key]["median"] or 0.0) * scale, 0.01) for r in picked]
            ax.plot(xs, ys, style, label=f"{label} ({backend})")
    ax.set(yscale="log", xlabel="inherited heap, objects", ylabel=unit, title=title)
    ax.set_xticks(range(len(heaps)), [_heap_label(h) for h in heaps])
    ax.legend(fontsize="small")


def plot(data: dict[str, Any], analysis: dict[str, Any], path: str) -> None:
    """Cost against inherited heap size, in a PNG (needs matplotlib)."""
    import matplotlib as mpl  # noqa: PLC0415 - optional extra "plot"

    mpl.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.5), constrained_layout=True)
    heaps = sorted({r["heap"] for r in analysis["latency"]})
    by_kind = [
        ("plain", "fork", "o-", "plain"),
        ("safe", "fork", "s-", "safe"),
        ("naive", "fork", "^--", "naive"),
    ]
    _plot_panel(
        axes[0],
        analysis["latency"],
        by_kind,
        heaps=heaps,
        scale=1e3,
        title="fork: start->join latency",
        unit="ms",
    )
    cleanup_lines = [
        ("safe_total", "fork", "s-", "safe fork"),
        ("naive_gc", "fork", "^--", "naive fork"),
        ("safe_total", "forkserver", "s:", "safe forkserver"),
        ("naive_gc", "forkserver", "^:", "naive forkserver"),
    ]
    _plot_panel(
        axes[1],
        analysis["cleanup"],
        cleanup_lines,
        heaps=heaps,
        scale=1e3,
        title="cleanup inside the child",
        unit="ms",
    )
    _plot_panel(
        axes[2],
        analysis["memory"],
        by_kind,
        heaps=heaps,
        scale=1 / 1024,
        title="fork: private memory added by exit",
        unit="MiB",
    )
    facts = data["facts"]
    fig.suptitle(
        f"safeproc bench, Python {facts['python_version']}, {facts['cpu_count']} CPUs,"
        f" {facts['date'][:10]} (medians)"
    )
    fig.savefig(path, dpi=100)
    plt.close(fig)


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
    progress = _Progress()
    progress.line(
        f"safeproc bench, {profile.name} profile"
        + ("" if full else " (fork at heaps 0 and 4M; forkserver and spawn at 0; --full for all)")
    )
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
