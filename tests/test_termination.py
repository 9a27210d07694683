"""terminate() with sigterm="cleanup": the same cleanup, bounded, and the
child still dies by SIGTERM; sigterm="default" keeps plain behaviour."""

from __future__ import annotations

import signal
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from conftest import RunScript

BUSY = {
    "sleep": "time.sleep(600)",
    "python-loop": "while True: pass",
    "c-call": "sum(range(10**13))",
}

SCENARIO = """
class Cycle:
    def __init__(self):
        self.me = self
    def __del__(self):
        mark("del", os.getpid())

def child():
    # Garbage is collected by cleanup, never by an allocation count that
    # happens to be reached earlier (a normal program could, too).
    gc.set_threshold(2**31 - 1)
    atexit.register(mark, "atexit", os.getpid())
    Cycle()
    mark("ready", os.getpid())
    {busy}

if __name__ == "__main__":
    policy = safe_mp.CleanupPolicy(sigterm={sigterm!r}, timeout=0.5, report=True)
    p = ctx().Process(target=child, cleanup=policy)
    p.start()
    wait_for_mark("ready")
    time.sleep(0.2)  # let the child get into its busy call
    started = time.monotonic()
    p.terminate()
    p.join(60)
    mark("exitcode", p.exitcode)
    mark("elapsed", round(time.monotonic() - started, 3))
    report = p.cleanup_report
    mark("trigger", report and report.trigger)
    mark("steps", report and ",".join(s.name for s in report.steps))
"""


@pytest.mark.parametrize("busy", list(BUSY))
def test_terminate_runs_cleanup_and_dies_by_sigterm(run_script: RunScript, busy: str) -> None:
    """terminate() of a child sleeping, looping in Python or stuck in a C call
    ends it with exitcode -15; cleanup runs wherever Python code can run."""
    run = run_script(SCENARIO.format(busy=BUSY[busy], sigterm="cleanup"))
    assert run.returncode == 0, run.explain()
    marks = dict(m.split(" ", 1) for m in run.marks)
    assert marks["exitcode"] == str(-signal.SIGTERM), run.explain()
    # Deadline 0.5 s plus the parent's margins; a hang would hit join(60).
    assert float(marks["elapsed"]) < 5, run.explain()
    child_pid = marks["ready"]
    if busy == "c-call" and "atexit" not in marks:
        # The main thread never returns to Python: only the parent's second
        # SIGTERM ends it, and nothing could run in the child: its report
        # holds only what child start did.
        assert marks["trigger"] == "exit", run.explain()
        assert marks["steps"] == "start", run.explain()
        assert "del" not in marks, run.explain()
    elif busy == "c-call":
        # A loaded machine can deliver SIGTERM before the call starts; then
        # the handler runs and everything must be there.
        assert marks["atexit"] == child_pid == marks["del"], run.explain()
        assert marks["trigger"] == "sigterm", run.explain()
    else:
        assert marks["atexit"] == child_pid, run.explain()
        assert marks["del"] == child_pid, run.explain()
        assert marks["trigger"] == "sigterm", run.explain()


#: As on a platform where safeproc knows no ``struct sigaction`` layout:
#: handlers cannot be made one-shot (module level, so that spawned and
#: forkserver children, which import the main module, are alike).
NO_ONE_SHOT = """
from safeproc import _kernel
_kernel._calls, _kernel._failed = None, True
"""


@pytest.mark.parametrize("busy", ["sleep", "python-loop"])
def test_sigterm_cleanup_without_one_shot_handlers(run_script: RunScript, busy: str) -> None:
    """Where handlers cannot be made one-shot, sigterm="cleanup" falls back to
    plain signal handlers: cleanup runs, the child dies by SIGTERM, and
    nothing raises into the child's code."""
    run = run_script(NO_ONE_SHOT + SCENARIO.format(busy=BUSY[busy], sigterm="cleanup"))
    assert run.returncode == 0, run.explain()
    marks = dict(m.split(" ", 1) for m in run.marks)
    assert marks["exitcode"] == str(-signal.SIGTERM), run.explain()
    assert marks["atexit"] == marks["ready"] == marks["del"], run.explain()
    assert marks["trigger"] == "sigterm", run.explain()
    assert "Traceback" not in run.stderr, run.explain()


def test_sigterm_while_the_plain_bootstrap_joins_threads(run_script: RunScript) -> None:
    """terminate() while the plain bootstrap joins the child's non-daemon
    thread (its target returned): the child dies by SIGTERM (-15) after
    its cleanup, never by the deadline's SIGALRM (-14), and soon."""
    run = run_script(
        """
        import threading

        def child():
            atexit.register(mark, "atexit", os.getpid())
            threading.Thread(target=time.sleep, args=(3,)).start()
            mark("target-done", os.getpid())

        if __name__ == "__main__":
            policy = safe_mp.CleanupPolicy(sigterm="cleanup", timeout=0.5)
            p = ctx().Process(target=child, cleanup=policy)
            p.start()
            wait_for_mark("target-done")
            time.sleep(0.3)  # the bootstrap is joining the thread now
            started = time.monotonic()
            p.terminate()
            p.join(60)
            mark("exitcode", p.exitcode, time.monotonic() - started < 2.5)
        """
    )
    assert run.returncode == 0, run.explain()
    marks = dict(m.split(" ", 1) for m in run.marks)
    assert marks["exitcode"] == f"{-signal.SIGTERM} True", run.explain()
    assert marks["atexit"] == marks["target-done"], run.explain()


def test_default_sigterm_policy_keeps_plain_behaviour(run_script: RunScript) -> None:
    """sigterm="default": terminate() kills at once, no cleanup, -15."""
    run = run_script(SCENARIO.format(busy=BUSY["sleep"], sigterm="default"))
    marks = dict(m.split(" ", 1) for m in run.marks)
    assert marks["exitcode"] == str(-signal.SIGTERM), run.explain()
    assert "atexit" not in marks, run.explain()
    assert "del" not in marks, run.explain()


def test_hung_cleanup_after_sigterm_still_dies_by_sigterm(run_script: RunScript) -> None:
    """A cleanup that hangs after terminate() is ended at the deadline, by SIGTERM."""
    run = run_script(
        """
        def child():
            atexit.register(time.sleep, 600)
            mark("ready", os.getpid())
            time.sleep(600)

        if __name__ == "__main__":
            policy = safe_mp.CleanupPolicy(sigterm="cleanup", timeout=0.5)
            p = ctx().Process(target=child, cleanup=policy)
            p.start()
            wait_for_mark("ready")
            started = time.monotonic()
            p.terminate()
            p.join(60)
            mark("exitcode", p.exitcode)
            mark("elapsed", round(time.monotonic() - started, 3))
        """
    )
    marks = dict(m.split(" ", 1) for m in run.marks)
    assert marks["exitcode"] == str(-signal.SIGTERM), run.explain()
    assert float(marks["elapsed"]) < 5, run.explain()


def test_sigterm_during_the_exit_sequence_dies_by_sigterm(run_script: RunScript) -> None:
    """terminate() while the child's own atexit handler runs (after its
    target returned): the handler finishes, the rest of the sequence runs,
    and the child dies by SIGTERM (-15), as terminate() promises, never by
    the deadline's SIGALRM (-14)."""
    run = run_script(
        """
        def slow_handler():
            mark("in-atexit", os.getpid())
            time.sleep(1.0)
            mark("atexit-done")

        def child():
            atexit.register(slow_handler)

        if __name__ == "__main__":
            policy = safe_mp.CleanupPolicy(sigterm="cleanup", timeout=10)
            p = ctx().Process(target=child, cleanup=policy)
            p.start()
            wait_for_mark("in-atexit")
            p.terminate()
            p.join(60)
            mark("exitcode", p.exitcode)
        """
    )
    assert run.returncode == 0, run.explain()
    assert run.marks[1:] == ["atexit-done", f"exitcode {-signal.SIGTERM}"], run.explain()
