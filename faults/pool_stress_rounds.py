"""Terminate-while-busy rounds over one backend and start method (``nox -s stress``).

``python pool_stress_rounds.py BACKEND METHOD ROUNDS MARKS RESULTS``: each
round makes ``Pool(2, initializer=init, cleanup=CleanupPolicy(
sigterm="cleanup", timeout=2.0, report=True))``, reaches one moment (the
workers not yet busy, busy with a task that sleeps or loops in Python, idle,
right after ``map()``), calls ``terminate()`` and ``join()``, and appends
one JSON line to RESULTS: the moment, how long terminate+join took, and per
worker its pid, exit code, whether its initializer completed ("ready") and
its atexit handler ran, and its cleanup report. Workers append their
markers to MARKS. A round that does not end within ``ROUND_BOUND`` seconds
dumps every thread's traceback and ends the program (faulthandler).
"""

from __future__ import annotations

import atexit
import faulthandler
import importlib
import json
import os
import random
import sys
import time
from typing import Any

#: Seconds one round may take; a hang ends the whole program with tracebacks.
ROUND_BOUND = 60.0
MOMENTS = ("before-busy", "while-busy", "while-idle", "after-map")
POLICY_TIMEOUT = 2.0


def mark(path: str, *words: object) -> None:
    """Append one line to the marker file *path*."""
    with open(path, "a") as f:
        f.write(" ".join(map(str, words)) + "\n")


def init(marks: str) -> None:
    """Pool initializer: register the atexit marker, then say the worker is ready."""
    atexit.register(mark, marks, "atexit", os.getpid())
    mark(marks, "ready", os.getpid())


def square(x: int) -> int:
    """Return x squared."""
    return x * x


def slow(kind: str, marks: str) -> None:
    """Say the worker is busy, then sleep or loop in Python until terminated."""
    mark(marks, "busy", os.getpid())
    if kind == "sleep":
        time.sleep(3600)
    while True:
        pass


def _lines_since(marks: str, round_number: int) -> list[str]:
    with open(marks) as f:
        text = f.read()
    return text.split(f"round {round_number}\n")[-1].splitlines()


def _wait_until(marks: str, round_number: int, word: str, count: int) -> None:
    end = time.monotonic() + 30
    while time.monotonic() < end:
        if sum(line.startswith(word + " ") for line in _lines_since(marks, round_number)) >= count:
            return
        time.sleep(0.005)


def _report(worker: Any) -> dict[str, Any] | None:
    report = worker.cleanup_report
    if report is None:
        return None
    return {
        "trigger": report.trigger,
        "deadline_expired": report.deadline_expired,
        "steps": [(s.name, s.completed, s.count) for s in report.steps],
    }


def run_round(
    mp: Any,
    method: str,
    number: int,
    rng: random.Random,
    marks: str,
) -> dict[str, Any]:
    """Run one round; return its JSON-able result."""
    moment = MOMENTS[number % len(MOMENTS)]
    kind = rng.choice(("sleep", "loop"))
    mark(marks, "round", number)
    policy = mp.CleanupPolicy(sigterm="cleanup", timeout=POLICY_TIMEOUT, report=True)
    faulthandler.dump_traceback_later(ROUND_BOUND, exit=True)
    pool = mp.get_context(method).Pool(2, initializer=init, initargs=(marks,), cleanup=policy)
    if moment == "before-busy":
        pool.apply_async(slow, (kind, marks))
    elif moment == "while-busy":
        for _ in range(2):
            pool.apply_async(slow, (kind, marks))
        _wait_until(marks, number, "busy", 2)
        time.sleep(rng.uniform(0.0, 0.02))
    else:
        assert pool.map(square, range(8)) == [x * x for x in range(8)]
        if moment == "while-idle":
            _wait_until(marks, number, "ready", 2)
            time.sleep(rng.uniform(0.0, 0.05))
    # No worker ends before terminate() here (no maxtasksperchild): these are all.
    started_workers = list(pool._pool)
    started = time.monotonic()
    pool.terminate()
    pool.join()
    seconds = time.monotonic() - started
    faulthandler.cancel_dump_traceback_later()
    lines = set(_lines_since(marks, number))
    workers = [
        {
            "pid": w.pid,
            "exitcode": w.exitcode,
            "ready": f"ready {w.pid}" in lines,
            "atexit": f"atexit {w.pid}" in lines,
            "report": _report(w),
        }
        for w in started_workers
        if w.pid is not None
    ]
    return {"round": number, "moment": moment, "task": kind, "seconds": seconds, "workers": workers}


def main() -> None:
    """Run the rounds named on the command line."""
    backend, method, rounds, marks, results = sys.argv[1:6]
    mp = importlib.import_module("safeproc" if backend == "multiprocess" else "safeproc.stdlib")
    rng = random.Random(f"{backend}-{method}")
    with open(results, "a") as out:
        for number in range(int(rounds)):
            out.write(json.dumps(run_round(mp, method, number, rng, marks)) + "\n")
            out.flush()


if __name__ == "__main__":
    main()
