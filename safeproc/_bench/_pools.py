"""Pools in a worker interpreter: Pool.map throughput, a pool's life, terminate() of a busy pool."""

from __future__ import annotations

import contextlib
import os
import random
import signal
import threading
import time
from typing import TYPE_CHECKING, Any

import safeproc
from safeproc._bench._config import (
    BACKENDS,
    POOL_TASKS,
    POOL_WORKERS,
    PROBE_MODULE,
    TERMINATE_DEADLINE,
    TERMINATE_HANG,
)
from safeproc._bench._probes import bench_contexts, configure_forkservers
from safeproc._bench._stats import summarize

if TYPE_CHECKING:
    from collections.abc import Callable

    from safeproc._bench._progress import Progress

__all__ = ["pool_cell", "terminate_cell"]


def pool_cell(cfg: dict[str, Any], progress: Progress) -> dict[str, Any]:
    """Pool.map throughput on warm pools, and a pool's whole lifecycle."""
    rng = random.Random(cfg["seed"])  # noqa: S311 - shuffling, not cryptography
    tasks = range(POOL_TASKS)
    results: dict[str, Any] = {}
    for method in cfg["pool_methods"]:
        contexts = bench_contexts(method)
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


def terminate_cell(cfg: dict[str, Any], progress: Progress) -> dict[str, Any]:
    """terminate() of a busy pool: plain, and safe with sigterm="cleanup"."""
    probe = __import__(PROBE_MODULE)
    policy = safeproc.CleanupPolicy(sigterm="cleanup", timeout=TERMINATE_DEADLINE, report=True)
    results: dict[str, Any] = {"deadline": TERMINATE_DEADLINE}
    markers = os.path.join(cfg["workdir"], "busy")
    os.makedirs(markers, exist_ok=True)
    for method in cfg["terminate_methods"]:
        if method.startswith("forkserver"):
            configure_forkservers(method)
        contexts = bench_contexts(method)
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
