"""Running probes in a worker interpreter: start->join latency, cleanup time, memory.

Runs in a fresh interpreter per inherited heap size (see
:mod:`safeproc._bench`): the fork parent whose heap the children inherit.
"""

from __future__ import annotations

import gc
import multiprocessing
import os
import random
import sys
import time
from typing import TYPE_CHECKING, Any

import multiprocess

import safeproc
import safeproc.stdlib
from safeproc._bench._config import BACKENDS, NAIVE_COSTLY_HEAP, PROBE_MODULE
from safeproc._bench._stats import summarize

if TYPE_CHECKING:
    from collections.abc import Callable

    from safeproc._bench._progress import Progress

__all__ = [
    "bench_contexts",
    "configure_forkservers",
    "failures",
    "heap_cell",
    "start_join_seconds",
]


def bench_contexts(method: str) -> dict[tuple[str, str], Any]:
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
failures: list[str] = []


def start_join_seconds(process: Any, label: str) -> float | None:  # noqa: ANN401
    """Start and join *process*; its start->join seconds, or None if it failed."""
    started = time.perf_counter()
    process.start()
    process.join()
    elapsed = time.perf_counter() - started
    if process.exitcode != 0:
        failures.append(f"{label}: a child ended with exit code {process.exitcode}")
        return None
    return elapsed


def _latency(
    method: str, heap: int, cfg: dict[str, Any], rng: random.Random, progress: Progress
) -> dict[str, Any]:
    """Start->join of one process: plain, safe, naive; both backends."""
    contexts = bench_contexts(method)
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
            elapsed = start_join_seconds(process, f"{method}, heap {heap:,}, {backend}/{kind}")
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
    progress: Progress,
    workdir: str,
) -> dict[str, Any]:
    """Cleanup time inside the child and private memory added by exit."""
    probe = sys.modules[PROBE_MODULE]
    contexts = bench_contexts(method)
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
                if start_join_seconds(process, label) is None or r == 0:
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


def configure_forkservers(method: str) -> None:
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
    contexts = bench_contexts(method)
    for backend in BACKENDS:
        start_join_seconds(contexts[backend, "safe"].Process(target=int), f"{method} server")


def heap_cell(cfg: dict[str, Any], progress: Progress) -> dict[str, Any]:
    heap = cfg["heap"]
    rng = random.Random(cfg["seed"])  # noqa: S311 - shuffling, not cryptography
    started = time.perf_counter()
    __import__(PROBE_MODULE)  # builds the fork parent's heap
    build_seconds = time.perf_counter() - started
    results: dict[str, Any] = {"heap": heap, "heap_build_seconds": build_seconds, "methods": {}}
    for method in cfg["methods"]:
        if method.startswith("forkserver"):
            configure_forkservers(method)
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
