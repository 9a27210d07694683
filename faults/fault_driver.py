"""Run a batch of fault cases in one interpreter and check each from outside.

``run_faults.py`` starts a few of these at once, each with its own
environment token. For every case the driver starts the child, terminates
it at the drawn moment, joins it within a bound, and checks: the exit code,
the cleanup markers, the grandchild's exit code, that nothing the driver
registered was finalized in another process, and that no process carrying
its token (an orphan) and no zombie is left. One JSON line per case goes to
the results file as soon as the case ends.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import gc
import json
import logging
import logging.handlers
import os
import signal
import sys
import time
import weakref
from pathlib import Path
from typing import Any

import psutil
from fault_cases import (
    CLEAN_ENDINGS,
    MARKER_WAIT,
    TERMINATED_EXIT,
    Case,
    backend_module,
    draw_case,
    mark,
    run_child,
)

# The process search shared with the test suite (pytest finds it through
# pyproject's pythonpath; this script, run by path, through sys.path).
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "testing"))
from safeproc_testing import describe, token_processes

#: Environment variable that tags every process a driver started.
TOKEN_VARIABLE = "SAFEPROC_FAULTS_TOKEN"  # noqa: S105 - a variable name
#: Beyond the deadline: the parent's escalation margins (0.1 s + 1 s), then slack.
TERMINATE_BOUND_SLACK = 1.1 + 4.0
#: Seconds a child may take to start, run and clean up, beyond its deadlines.
JOIN_SLACK = 20.0
STDERR_TAIL = 4000


# -- what the driver registers: none of it may be finalized in a child -----------


class _InheritedRecords(logging.Handler):
    """Writes every record it gets, and its own closing, to the inherited-marker file."""

    def __init__(self, path: str) -> None:
        super().__init__()
        self.path = path

    def emit(self, record: logging.LogRecord) -> None:
        """Write the record with the pid that emits it."""
        mark(self.path, "inherited-record", record.getMessage(), os.getpid())

    def close(self) -> None:
        """Write that this handler was closed, and where."""
        mark(self.path, "inherited-logging-close", os.getpid())
        super().close()


class _InheritedCycle:
    """Cyclic garbage of the driver's, alive at fork."""

    def __init__(self, path: str) -> None:
        self.me = self
        self.path = path

    def __del__(self) -> None:
        mark(self.path, "inherited-del", os.getpid())


class _Watched:
    """What the driver's weakref.finalize watches."""


class InheritedState:
    """The driver's atexit handler, finalizer, logging handlers and cyclic garbage."""

    def __init__(self, path: str) -> None:
        """Register everything, writing to the marker file *path*."""
        self.path = path
        atexit.register(lambda: mark(path, "inherited-atexit", os.getpid()))
        self.watched = _Watched()
        weakref.finalize(self.watched, lambda: mark(path, "inherited-finalize", os.getpid()))
        # Records buffered here at fork must reach the target once, from the driver.
        self.buffer = logging.handlers.MemoryHandler(
            capacity=1_000_000, flushLevel=logging.CRITICAL + 1, target=_InheritedRecords(path)
        )
        self.logger = logging.getLogger("safeproc-faults-driver")
        self.logger.propagate = False
        self.logger.addHandler(self.buffer)
        self.logger.addHandler(_InheritedRecords(path))

    def before_case(self, index: int) -> None:
        """Leave a buffered record and fresh cyclic garbage for the child to inherit."""
        self.logger.warning("parent-record-%d", index)
        _InheritedCycle(self.path)

    def foreign_lines(self, driver_pid: int) -> list[str]:
        """Return the markers written by a process other than the driver."""
        if not os.path.exists(self.path):
            return []
        lines = Path(self.path).read_text().splitlines()
        return [line for line in lines if line.split()[-1] != str(driver_pid)]


# -- processes --------------------------------------------------------------------


def _is_helper(proc: psutil.Process, driver_pid: int) -> bool:
    """Tell the driver's forkserver and resource tracker: they live as long as it does."""
    try:
        if proc.ppid() != driver_pid:
            return False
        cmdline = " ".join(proc.cmdline())
    except psutil.Error:
        return False
    return "forkserver" in cmdline or "resource_tracker" in cmdline


def _zombies() -> list[psutil.Process]:
    zombies = []
    for proc in psutil.Process().children(recursive=True):
        with contextlib.suppress(psutil.Error):
            if proc.status() == psutil.STATUS_ZOMBIE:
                zombies.append(proc)
    return zombies


def leftovers(token: str, grace: float) -> tuple[list[str], list[str]]:
    """Wait up to *grace* seconds for orphans and zombies to go; return those left."""
    driver_pid = os.getpid()
    end = time.monotonic() + grace
    while True:
        zombies = _zombies()
        zombie_pids = {p.pid for p in zombies}
        orphans = [
            p
            for p in token_processes(TOKEN_VARIABLE, token, {driver_pid} | zombie_pids)
            if not _is_helper(p, driver_pid)
        ]
        if (not orphans and not zombies) or time.monotonic() > end:
            break
        time.sleep(0.05)
    left = [describe(p) for p in orphans]
    for proc in orphans:
        with contextlib.suppress(psutil.Error):
            proc.kill()
    return left, [describe(p) for p in zombies]


def _kill_tree(pid: int) -> None:
    with contextlib.suppress(psutil.Error):
        root = psutil.Process(pid)
        for proc in [*root.children(recursive=True), root]:
            with contextlib.suppress(psutil.Error):
                proc.kill()


# -- one case ---------------------------------------------------------------------


def _marks(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def _wait_for_marker(path: Path, word: str, process: Any) -> bool:
    """Wait until the child wrote *word* or ended; False if it did neither in time."""
    end = time.monotonic() + MARKER_WAIT
    while time.monotonic() < end:
        ended = process.exitcode is not None
        if any(line.split()[0] == word for line in _marks(path)):
            return True
        if ended:
            return True  # it ended first: terminate() now lands after the end
        time.sleep(0.002)
    return False


def _terminate_at_moment(case: Case, path: Path, process: Any) -> tuple[float, bool] | None:
    """Terminate the child at the case's moment; return when, and whether it was busy."""
    if case.terminate == "after-delay":
        time.sleep(case.terminate_delay)
    elif case.terminate in ("while-busy", "in-cleanup"):
        word = "busy" if case.terminate == "while-busy" else "done"
        if not _wait_for_marker(path, word, process):
            return None
        time.sleep(case.terminate_delay)
    busy = any(line.split()[0] == "busy" for line in _marks(path))
    process.terminate()
    return time.monotonic(), busy


def _handler_runs(marks: list[str], word: str) -> dict[int, list[str]]:
    runs: dict[int, list[str]] = {}
    for line in marks:
        parts = line.split()
        if parts[0] == word:
            runs.setdefault(int(parts[1]), []).append(parts[2])
    return runs


def _cleanup_must_run(  # noqa: PLR0911 - one answer per kind of ending
    case: Case, *, busy_at_terminate: bool | None
) -> bool | None:
    """Tell whether every handler must have run once (True), none (False), or either (None)."""
    child = case.child
    if child.cleanup_hangs:
        return None
    if case.terminate is None:
        if child.target in CLEAN_ENDINGS:
            return True
        if child.target == "os-exit":
            return False
        if child.target == "signal":
            return child.arg == -TERMINATED_EXIT and case.sigterm == "cleanup"
        return None
    if busy_at_terminate and child.target.startswith("busy"):
        # Handlers were registered before "busy": terminate() cleans, or kills at once.
        return case.sigterm == "cleanup"
    return None


def check_case(  # noqa: C901, PLR0912, PLR0913 - one list of independent checks
    case: Case,
    *,
    exitcode: int | None,
    pid: int | None,
    marks: list[str],
    terminated: tuple[float, bool] | None,
    ended: float,
) -> list[str]:
    """Return what is wrong with a finished case (empty when all is well)."""
    problems = []
    if exitcode not in case.expected_exits():
        problems.append(f"exit code {exitcode}, expected one of {sorted(case.expected_exits())}")
    if terminated is not None:
        took = ended - terminated[0]
        bound = case.timeout + TERMINATE_BOUND_SLACK
        if took > bound:
            problems.append(f"ended {took:.2f}s after terminate(), bound {bound:.2f}s")
    runs = _handler_runs(marks, "ran")
    for number, pids in sorted(runs.items()):
        if any(p != str(pid) for p in pids):
            problems.append(f"handler {number} ran in pids {pids}, child is {pid}")
        if len(pids) > 1:
            problems.append(f"handler {number} ran {len(pids)} times")
    must_run = _cleanup_must_run(case, busy_at_terminate=terminated[1] if terminated else None)
    if must_run and set(runs) != case.child.expected_runs():
        expected = sorted(case.child.expected_runs())
        problems.append(f"cleanup skipped: handlers that ran {sorted(runs)}, expected {expected}")
    if must_run is False and runs:
        problems.append(f"handlers {sorted(runs)} ran where plain exits without cleanup")
    grandchild = case.grandchild
    if grandchild is not None:
        g_pids = [line.split()[1] for line in marks if line.startswith("g-start ")]
        g_runs = _handler_runs(marks, "g-ran")
        for number, pids in sorted(g_runs.items()):
            if pids != g_pids[:1]:
                problems.append(f"grandchild handler {number} ran in {pids}, grandchild {g_pids}")
        g_exit = [line.split()[1] for line in marks if line.startswith("g-exit ")]
        if g_exit:
            g_expected = sorted(grandchild.natural_exits())
            if g_exit[0] not in {str(code) for code in g_expected}:
                problems.append(f"grandchild exit code {g_exit[0]}, expected one of {g_expected}")
            complete = set(g_runs) == grandchild.expected_runs()
            if grandchild.target in CLEAN_ENDINGS and not grandchild.cleanup_hangs and not complete:
                problems.append(
                    f"grandchild cleanup skipped: handlers that ran {sorted(g_runs)},"
                    f" expected {sorted(grandchild.expected_runs())}"
                )
    return problems


def run_case(case: Case, workdir: Path, inherited: InheritedState, token: str) -> dict[str, Any]:
    """Run one case; return its JSON-able result."""
    path = workdir / f"case-{case.index}.marks"
    stderr_path = workdir / f"case-{case.index}.stderr"
    mp = backend_module(case.backend)
    inherited.before_case(case.index)
    process = mp.get_context(case.method).Process(
        target=run_child,
        args=(case, str(path), str(stderr_path)),
        cleanup=mp.CleanupPolicy(sigterm=case.sigterm, timeout=case.timeout),
    )
    started = time.monotonic()
    process.start()
    terminated = None
    problems = []
    if case.terminate is not None:
        terminated = _terminate_at_moment(case, path, process)
        if terminated is None:
            problems.append(f"the child never reached the moment {case.terminate!r}")
            process.terminate()
    nested = 2 if case.grandchild is not None else 1
    process.join(JOIN_SLACK + nested * (case.timeout + MARKER_WAIT / 10) + case.terminate_delay)
    ended = time.monotonic()
    if process.exitcode is None:
        problems.append(f"hang: still running after {ended - started:.1f}s (tracebacks below)")
        with contextlib.suppress(OSError):
            os.kill(process.pid, signal.SIGUSR2)
        time.sleep(1.0)
        _kill_tree(process.pid)
        process.join()
    gc.collect()  # the driver's own cyclic garbage is finalized here, in the driver
    marks = _marks(path)
    problems += check_case(
        case,
        exitcode=process.exitcode,
        pid=process.pid,
        marks=marks,
        terminated=terminated,
        ended=ended,
    )
    foreign = inherited.foreign_lines(os.getpid())
    if foreign:
        problems.append(f"inherited state finalized in a child: {foreign}")
        Path(inherited.path).unlink()
    orphans, zombies = leftovers(token, grace=case.timeout + 5.0)
    if orphans:
        problems.append(f"orphans: {orphans}")
    if zombies:
        problems.append(f"zombies: {zombies}")
    result: dict[str, Any] = {
        "index": case.index,
        "case": case.describe(),
        "exitcode": process.exitcode,
        "seconds": round(ended - started, 3),
        "problems": problems,
    }
    if problems:
        result["marks"] = marks
        stderr = stderr_path.read_text(errors="replace") if stderr_path.exists() else ""
        result["stderr"] = stderr[-STDERR_TAIL:]
    return result


def main() -> None:
    """Run the cases named on the command line."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--indices", required=True, help="comma-separated case indices")
    parser.add_argument("--backends", required=True)
    parser.add_argument("--methods", required=True)
    parser.add_argument("--workdir", required=True, type=Path, help="marker and stderr files")
    parser.add_argument("--results", required=True, type=Path)
    args = parser.parse_args()
    token = os.environ[TOKEN_VARIABLE]
    gc.disable()  # the driver's cyclic garbage must still be there at fork
    workdir: Path = args.workdir
    workdir.mkdir(parents=True, exist_ok=True)
    inherited = InheritedState(str(workdir / "inherited.marks"))
    with open(args.results, "a") as results:
        for index in map(int, args.indices.split(",")):
            case = draw_case(
                args.seed, index, tuple(args.backends.split(",")), tuple(args.methods.split(","))
            )
            result = run_case(case, workdir, inherited, token)
            results.write(json.dumps(result) + "\n")
            results.flush()


if __name__ == "__main__":
    main()
