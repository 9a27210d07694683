"""The cleanup deadline always wins: a hung cleanup step never hangs join()."""

from __future__ import annotations

import signal
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from conftest import Run, RunScript

HANGS = {
    "python-loop": "while True: pass",
    "sleep": "time.sleep(600)",
    # Holds the GIL and never checks for signals.
    "c-call": "sum(range(10**13))",
}

SCENARIO = """
import threading

def hang():
    {hang}

class Cycle:
    def __init__(self):
        self.me = self
    def __del__(self):
        hang()

class Target:
    pass

def child():
    # Garbage is collected by cleanup, never by an allocation count that
    # happens to be reached earlier (a normal program could, too).
    gc.set_threshold(2**31 - 1)
    where = {where!r}
    if where == "atexit":
        atexit.register(hang)
    elif where == "finalizer":
        global t
        t = Target()
        weakref.finalize(t, hang)
    elif where == "del":
        Cycle()
    elif where == "thread":
        threading.Thread(target=hang).start()
    mark("target-done")

if __name__ == "__main__":
    {parent_setup}
    policy = safe_mp.CleanupPolicy(timeout=0.5, report=True)
    p = ctx().Process(target=child, cleanup=policy)
    started = time.monotonic()
    p.start()
    p.join(60)
    elapsed = time.monotonic() - started
    mark("exitcode", p.exitcode)
    mark("elapsed", round(elapsed, 3))
    report = p.cleanup_report
    mark("report", report.deadline_expired, report.hung_step)
"""

STEP_FUNCTIONS = {
    "atexit": ("run_child_atexit", "atexit"),
    "finalizer": ("run_child_atexit", "atexit"),  # weakref's hook runs in atexit
    "del": ("collect_child_garbage", "gc"),
    "thread": ("_shutdown", "threads"),  # threading's join of non-daemon threads
}


def _check_deadline_run(run: Run, where: str, start_method: str) -> None:
    marks = run.marks
    explain = run.explain()
    assert marks[0] == "target-done", explain
    assert marks[1] == f"exitcode {-signal.SIGALRM}", explain
    # The deadline is 0.5 s; anything near the 60 s join timeout is a hang.
    assert float(marks[2].split()[1]) < 10, explain
    function: str = STEP_FUNCTIONS[where][0]
    step: str | None = STEP_FUNCTIONS[where][1]
    if where == "del" and start_method == "spawn":
        # A spawned child's garbage is collected whenever the interpreter's
        # own gc runs (during any step, or its exit): the deadline still wins.
        function, step = "hang", None
        assert marks[3].startswith("report True "), explain
    stderr = run.stderr
    assert "most recent call first" in stderr, explain
    assert f"in {function}" in stderr, explain
    assert "in hang" in stderr, explain
    if step is not None:
        assert marks[3] == f"report True {step}", explain


@pytest.mark.parametrize("hang", list(HANGS))
@pytest.mark.parametrize("where", ["atexit", "del"])
def test_hung_cleanup_step_is_ended_by_the_deadline(
    run_script: RunScript, hang: str, where: str, start_method: str
) -> None:
    """A hung atexit handler or __del__ (Python loop, sleep, GIL-holding C
    call) ends the child by SIGALRM at the deadline, with a traceback."""
    run = run_script(SCENARIO.format(hang=HANGS[hang], where=where, parent_setup="pass"))
    _check_deadline_run(run, where, start_method)


@pytest.mark.parametrize("where", ["finalizer", "thread"])
def test_hung_finalizer_and_thread_join_are_covered(
    run_script: RunScript, where: str, start_method: str
) -> None:
    """A hung weakref.finalize callback and a non-daemon thread that never
    ends are bounded by the same deadline."""
    run = run_script(SCENARIO.format(hang=HANGS["sleep"], where=where, parent_setup="pass"))
    _check_deadline_run(run, where, start_method)


@pytest.mark.parametrize("start_method", ["fork"])
def test_lock_held_by_a_thread_that_did_not_survive_fork(
    run_script: RunScript, start_method: str
) -> None:
    """An atexit handler waiting on a lock a parent thread held at fork is
    ended by the deadline."""
    run = run_script(
        SCENARIO.format(
            hang="held.acquire()",
            where="atexit",
            parent_setup=(
                "held = threading.Lock()\n"
                "    got = threading.Event()\n"
                "    def holder():\n"
                "        held.acquire(); got.set(); time.sleep(30)\n"
                "    threading.Thread(target=holder, daemon=True).start()\n"
                "    got.wait()"
            ),
        ).replace("def hang():", "held = None\ndef hang():")
    )
    _check_deadline_run(run, "atexit", start_method)


def test_deadline_wins_when_the_parent_armed_faulthandler(
    run_script: RunScript, start_method: str
) -> None:
    """A faulthandler.dump_traceback_later the parent had pending at fork
    does not stop the deadline (its inherited watchdog lock would)."""
    run = run_script(
        SCENARIO.format(
            hang=HANGS["sleep"],
            where="atexit",
            parent_setup="import faulthandler; faulthandler.dump_traceback_later(300)",
        )
    )
    _check_deadline_run(run, "atexit", start_method)


def test_no_deadline_lets_slow_cleanup_finish(run_script: RunScript) -> None:
    """timeout=None: a slow (not hung) atexit handler completes; exit code 0."""
    run = run_script(
        """
        def child():
            atexit.register(mark, "slow-atexit-done")
            atexit.register(time.sleep, 1.5)

        if __name__ == "__main__":
            p = ctx().Process(target=child, cleanup=safe_mp.CleanupPolicy(timeout=None))
            p.start()
            p.join(60)
            mark("exitcode", p.exitcode)
        """
    )
    assert run.marks == ["slow-atexit-done", "exitcode 0"], run.explain()


def test_cleanup_within_the_deadline_is_not_disturbed(run_script: RunScript) -> None:
    """A cleanup that finishes before the deadline exits normally, and the
    timer does not outlive it (no late SIGALRM)."""
    run = run_script(
        """
        def child():
            atexit.register(mark, "atexit-done")
            atexit.register(time.sleep, 0.2)

        if __name__ == "__main__":
            policy = safe_mp.CleanupPolicy(timeout=0.6)
            p = ctx().Process(target=child, cleanup=policy)
            p.start()
            p.join(60)
            mark("exitcode", p.exitcode)
        """
    )
    assert run.marks == ["atexit-done", "exitcode 0"], run.explain()
