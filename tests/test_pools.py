"""Pools: every worker finalizes what it created, however the pool ends, and
the parent never hangs in terminate()."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from conftest import RunScript

WORKER_SETUP = """
import tempfile

class Cycle:
    def __init__(self):
        self.me = self
    def __del__(self):
        mark("del", os.getpid())

class Target:
    pass

def init():
    global keep, tmp
    atexit.register(mark, "atexit", os.getpid())
    keep = Target()
    weakref.finalize(keep, mark, "finalize", os.getpid())
    tmp = tempfile.TemporaryDirectory()
    mark("tmpdir", os.getpid(), tmp.name)
    Cycle()
    mark("ready", os.getpid())

def square(x):
    return x * x

def slow(x):
    mark("busy", os.getpid())
    time.sleep(600)
"""


def _per_worker(marks: list[str]) -> dict[str, list[str]]:
    """Group 'word pid ...' marks by pid."""
    seen: dict[str, list[str]] = {}
    for m in marks:
        parts = m.split()
        if parts[0] in {"atexit", "finalize", "del", "tmpdir", "busy"}:
            seen.setdefault(parts[1], []).append(parts[0])
    return seen


def _assert_each_worker_finalized(marks: list[str], explain: str) -> set[str]:
    workers = _per_worker(marks)
    assert workers, explain
    for words in workers.values():
        for word in ("atexit", "finalize", "del", "tmpdir"):
            assert words.count(word) == 1, explain
    assert "tmpdirs-left 0" in marks, explain
    return set(workers)


CHECK_TMPDIRS = """
    tmpdirs = [l.split()[2] for l in open(MARK).read().splitlines() if l.startswith("tmpdir ")]
    mark("tmpdirs-left", sum(os.path.exists(t) for t in tmpdirs))
"""


def test_close_and_join(run_script: RunScript) -> None:
    """close()+join(): each worker runs its initializer's atexit handler,
    finalizer, cyclic __del__ and temp-dir removal, once."""
    run = run_script(
        WORKER_SETUP
        + """
if __name__ == "__main__":
    pool = ctx().Pool(2, initializer=init)
    assert pool.map(square, range(20)) == [x * x for x in range(20)]
    pool.close()
    pool.join()
"""
        + CHECK_TMPDIRS
    )
    assert run.returncode == 0, run.explain()
    assert len(_assert_each_worker_finalized(run.marks, run.explain())) == 2


def test_maxtasksperchild_recycling(run_script: RunScript) -> None:
    """Every worker retired by maxtasksperchild finalizes what it created."""
    run = run_script(
        WORKER_SETUP
        + """
if __name__ == "__main__":
    pool = ctx().Pool(2, initializer=init, maxtasksperchild=1)
    assert pool.map(square, range(6), chunksize=1) == [x * x for x in range(6)]
    pool.close()
    pool.join()
"""
        + CHECK_TMPDIRS
    )
    assert run.returncode == 0, run.explain()
    assert len(_assert_each_worker_finalized(run.marks, run.explain())) >= 6


SAME_STDIO_EVERY_WORKER = """
import threading
from safeproc import _cleanup

def stdio_mode(x):
    time.sleep(0.05)  # both workers take a task
    return _cleanup.running_child().stdio

if __name__ == "__main__":
    # The first workers start before the pool's own threads; replacements
    # start while they (and a thread of the program's own) run.
    with ctx().Pool(2, maxtasksperchild=1) as pool:
        first = pool.map(stdio_mode, range(2), chunksize=1)
        user_thread = threading.Thread(target=time.sleep, args=(1,))
        user_thread.start()
        later = pool.map(stdio_mode, range(6), chunksize=1)
    user_thread.join()
    mark("first", *sorted(set(first)), "later", *sorted(set(later)))
"""


def test_replacement_workers_handle_stdio_as_the_first(
    run_script: RunScript, start_method: str
) -> None:
    """The default stdio policy resolves the same in every worker of a pool,
    whatever threads the parent runs when each one starts: re-armed in every
    forked worker, flushed at exit in every spawned one (docs/stdio.rst)."""
    run = run_script(SAME_STDIO_EVERY_WORKER)
    assert run.returncode == 0, run.explain()
    mode = "flush" if start_method == "spawn" else "reopen"
    assert run.marks == [f"first {mode} later {mode}"], run.explain()


def test_recycled_workers_report_their_real_exit_code(run_script: RunScript) -> None:
    """Workers recycled by maxtasksperchild are reaped by the pool's own
    thread while safeproc collects their reports: every report carries the
    exit code the worker really had (0), never one read from a half-reaped
    process (forkserver's 255), and no worker is reported twice or missed."""
    run = run_script(
        """
def worker_pid(x):
    return os.getpid()

if __name__ == "__main__":
    policy = safe_mp.CleanupPolicy(report=True)
    pool = ctx().Pool(2, maxtasksperchild=1, cleanup=policy)
    ran = set(pool.map(worker_pid, range(40), chunksize=1))
    pool.close()
    pool.join()
    reports = pool.cleanup_reports()
    reported = [r.pid for r in reports]
    mark("ran", len(ran), "twice", len(reported) - len(set(reported)))
    mark("missed", len(ran - set(reported)))
    mark("exitcodes", sorted({r.exitcode for r in reports}))
    mark("triggers", sorted({r.trigger for r in reports}))
"""
    )
    assert run.returncode == 0, run.explain()
    assert run.marks == [
        "ran 40 twice 0",
        "missed 0",
        "exitcodes [0]",
        "triggers ['exit']",
    ], run.explain()


def test_cleanup_reports_clear_keeps_only_uncollected_reports(run_script: RunScript) -> None:
    """``cleanup_reports(clear=True)`` hands each report out once: a
    long-lived recycling pool collects them as it goes, nothing is lost or
    repeated, and the pool then holds none."""
    run = run_script(
        """
def worker_pid(x):
    return os.getpid()

if __name__ == "__main__":
    pool = ctx().Pool(2, maxtasksperchild=1, cleanup=safe_mp.CleanupPolicy(report=True))
    ran = set(pool.map(worker_pid, range(20), chunksize=1))
    first = pool.cleanup_reports(clear=True)
    ran |= set(pool.map(worker_pid, range(20), chunksize=1))
    pool.close()
    pool.join()
    second = pool.cleanup_reports(clear=True)
    reported = [r.pid for r in first + second]
    # A replacement worker may start and end without a task: 40 or more.
    mark("first", len(first) > 0, "at-least-40", len(reported) >= 40)
    mark("repeated", len(reported) - len(set(reported)))
    mark("missed", len(ran - set(reported)), "left", len(pool.cleanup_reports()))
"""
    )
    assert run.returncode == 0, run.explain()
    assert run.marks == [
        "first True at-least-40 True",
        "repeated 0",
        "missed 0 left 0",
    ], run.explain()


def test_terminate_while_busy_with_sigterm_cleanup(run_script: RunScript) -> None:
    """terminate() of busy workers with sigterm="cleanup": each worker
    finalizes, dies by SIGTERM, and reports the sigterm trigger."""
    run = run_script(
        WORKER_SETUP
        + """
if __name__ == "__main__":
    policy = safe_mp.CleanupPolicy(sigterm="cleanup", report=True, timeout=1.0)
    pool = ctx().Pool(2, initializer=init, cleanup=policy)
    results = [pool.apply_async(slow, (i,)) for i in range(2)]
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if os.path.exists(MARK) and open(MARK).read().count("busy ") == 2:
            break
        time.sleep(0.01)
    started = time.monotonic()
    pool.terminate()
    mark("terminate-seconds", round(time.monotonic() - started, 2))
    reports = pool.cleanup_reports()
    mark("triggers", ",".join(sorted(r.trigger for r in reports)))
"""
        + CHECK_TMPDIRS
    )
    assert run.returncode == 0, run.explain()
    assert len(_assert_each_worker_finalized(run.marks, run.explain())) == 2
    assert "triggers sigterm,sigterm" in run.marks, run.explain()
    seconds = float(next(m for m in run.marks if m.startswith("terminate-seconds")).split()[1])
    assert seconds < 10, run.explain()


def test_with_block_terminates_with_cleanup(run_script: RunScript) -> None:
    """Leaving a `with Pool(...)` block (which terminates) finalizes the workers."""
    run = run_script(
        WORKER_SETUP
        + """
if __name__ == "__main__":
    policy = safe_mp.CleanupPolicy(sigterm="cleanup")
    with ctx().Pool(2, initializer=init, cleanup=policy) as pool:
        assert pool.map(square, range(10)) == [x * x for x in range(10)]
        # Both initializers done, so terminate() cannot cut one short.
        deadline = time.monotonic() + 30
        while open(MARK).read().count("ready ") < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
"""
        + CHECK_TMPDIRS
    )
    assert run.returncode == 0, run.explain()
    assert len(_assert_each_worker_finalized(run.marks, run.explain())) == 2


def test_terminate_never_hangs_on_a_lock_a_dead_worker_held(run_script: RunScript) -> None:
    """An idle worker holds inqueue._rlock while it waits for work; killed
    (OOM, SIGKILL), it never releases it and the stock terminate blocks
    forever. SafePool.terminate() ends the workers and returns."""
    run = run_script(
        """
import warnings

def square(x):
    return x * x

if __name__ == "__main__":
    pool = ctx().Pool(2)
    assert pool.map(square, range(4)) == [0, 1, 4, 9]
    for worker in list(pool._pool):
        os.kill(worker.pid, signal.SIGKILL)
    time.sleep(0.5)  # the pool replaces them; the lock stays held
    workers = list(pool._pool)
    started = time.monotonic()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pool.terminate()
    mark("seconds", round(time.monotonic() - started, 2))
    mark("warnings", len(caught))
    mark("alive", sum(p.is_alive() for p in workers))
"""
    )
    assert run.returncode == 0, run.explain()
    marks = dict(m.split(" ", 1) for m in run.marks)
    assert marks["alive"] == "0", run.explain()
    assert float(marks["seconds"]) < 15, run.explain()


def test_worker_cleanup_errors_are_printed_and_results_kept(run_script: RunScript) -> None:
    """A failing atexit handler in a worker is printed; results are unchanged."""
    run = run_script(
        """
def init():
    atexit.register(lambda: 1 / 0)

def square(x):
    return x * x

if __name__ == "__main__":
    with ctx().Pool(2, initializer=init) as pool:
        mark("results", pool.map(square, range(5)))
        pool.close()
        pool.join()
"""
    )
    assert run.returncode == 0, run.explain()
    assert run.marks == ["results [0, 1, 4, 9, 16]"], run.explain()
    assert run.stderr.count("ZeroDivisionError") == 2, run.explain()


def test_pool_policy_and_aggregate_report(run_script: RunScript) -> None:
    """Pool(cleanup=...) overrides the context's policy; reports aggregate."""
    run = run_script(
        """
def init():
    atexit.register(print, "worker-atexit")

def square(x):
    return x * x

if __name__ == "__main__":
    c = mp.get_context(METHOD, cleanup=safe_mp.CleanupPolicy(report=False))
    pool = c.Pool(2, initializer=init, cleanup=safe_mp.CleanupPolicy(report=True))
    mark("policy-report", pool.cleanup.report)
    pool.map(square, range(4))
    pool.close()
    pool.join()
    reports = pool.cleanup_reports()
    mark("reports", len(reports))
    mark("atexit-counts", sorted(r.step("atexit").count >= 1 for r in reports))
"""
    )
    assert run.returncode == 0, run.explain()
    assert run.marks == [
        "policy-report True",
        "reports 2",
        "atexit-counts [True, True]",
    ], run.explain()
