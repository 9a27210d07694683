"""The cleanup deadline bounds what safeproc adds, and only that.

When it expires, cleanup stops and the child ends the way the plain library
would have ended it (the plain exit code), with the report and stderr saying
where it was. Only a child that cannot run Python any more (a C call that
holds the GIL) is ended by ``SIGALRM``. The plain library's own exit work
(joining non-daemon threads, multiprocessing's finalizers, and from 3.13 the
atexit handlers its launchers run) is never bounded: it runs as plain.
"""

from __future__ import annotations

import signal
import sys
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

#: From 3.13 the plain launcher runs the child's atexit handlers itself:
#: they are the plain library's work there, and unbounded, as plain.
ATEXIT_IS_SAFEPROCS = sys.version_info < (3, 13)
#: Where a hang sits in a step safeproc adds, on this version.
BOUNDED_PLACES = ["del"] + (["atexit"] if ATEXIT_IS_SAFEPROCS else [])

SCENARIO = """
import threading

def hang():
    {hang}

class Cycle:
    def __init__(self):
        self.me = self
    def __del__(self):
        hang()

def child():
    # Garbage is collected by cleanup, never by an allocation count that
    # happens to be reached earlier (a normal program could, too).
    gc.set_threshold(2**31 - 1)
    where = {where!r}
    if where == "atexit":
        atexit.register(hang)
    elif where == "del":
        Cycle()
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

STEPS = {
    "atexit": ("run_child_atexit", "atexit"),
    "del": ("collect_child_garbage", "gc"),
}


def _check_deadline_run(run: Run, where: str, hang: str) -> None:
    marks = run.marks
    explain = run.explain()
    assert marks[0] == "target-done", explain
    function, step = STEPS[where]
    if hang == "c-call":
        # Python cannot run: the deadline's last tick ends the child.
        assert marks[1] == f"exitcode {-signal.SIGALRM}", explain
    else:
        # The plain library's exit code; the stderr says why cleanup stopped.
        assert marks[1] == "exitcode 0", explain
        stderr = run.stderr
        assert "safeproc: the cleanup deadline of 0.5 s expired" in stderr, explain
        assert f"during step {step!r}; cleanup stopped, exiting with code 0" in stderr, explain
        assert "most recent call first" in stderr, explain
        assert f"in {function}" in stderr, explain
        assert "in hang" in stderr, explain
    # The deadline is 0.5 s (and 1 s of grace); anything near the 60 s join
    # timeout is a hang.
    assert float(marks[2].split()[1]) < 10, explain
    assert marks[3] == f"report True {step}", explain


@pytest.mark.parametrize("hang", list(HANGS))
@pytest.mark.parametrize("where", BOUNDED_PLACES)
@pytest.mark.parametrize("start_method", ["fork", "forkserver"])
def test_hung_cleanup_step_is_ended_by_the_deadline(
    run_script: RunScript, hang: str, where: str
) -> None:
    """A hung step safeproc adds (atexit handlers up to 3.12, garbage)
    stops at the deadline: plain exit code, or SIGALRM if Python cannot run.

    (A spawned child's own interpreter exit runs these, as plain: unbounded.)
    """
    run = run_script(SCENARIO.format(hang=HANGS[hang], where=where, parent_setup="pass"))
    _check_deadline_run(run, where, hang)


@pytest.mark.parametrize("start_method", ["fork"])
def test_lock_held_by_a_thread_that_did_not_survive_fork(run_script: RunScript) -> None:
    """A __del__ waiting on a lock a parent thread held at fork is ended by the deadline."""
    run = run_script(
        SCENARIO.format(
            hang="held.acquire()",
            where="del",
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
    _check_deadline_run(run, "del", "lock")


@pytest.mark.parametrize("start_method", ["fork", "forkserver"])
def test_deadline_wins_when_the_parent_armed_faulthandler(run_script: RunScript) -> None:
    """A faulthandler.dump_traceback_later the parent had pending at fork
    does not stop the deadline (its inherited watchdog lock would)."""
    run = run_script(
        SCENARIO.format(
            hang=HANGS["sleep"],
            where="del",
            parent_setup="import faulthandler; faulthandler.dump_traceback_later(300)",
        )
    )
    _check_deadline_run(run, "del", "sleep")


#: Starts ``child`` plain, or safe under a 0.3 s deadline, and marks its exit code.
LAUNCH_UNDER_SHORT_DEADLINE = """
if __name__ == "__main__":
    kwargs = {} if mp is plain_mp else {"cleanup": safe_mp.CleanupPolicy(timeout=0.3)}
    p = ctx().Process(target=child, **kwargs)
    p.start()
    p.join(60)
    mark("exitcode", p.exitcode)
"""

PLAIN_EXIT_WORK = (
    """
import threading

def worker():
    time.sleep(1.5)
    mark("thread-done")

def child():
    atexit.register(mark, "atexit-done")
    threading.Thread(target=worker).start()  # non-daemon: joined at exit
"""
    + LAUNCH_UNDER_SHORT_DEADLINE
)


def test_plain_exit_work_is_never_bounded(run_script: RunScript) -> None:
    """A non-daemon thread that outlives the deadline is joined as plain:
    same exit code, its work done; then the child's atexit handler runs."""
    plain = run_script(PLAIN_EXIT_WORK, plain=True)
    safe = run_script(PLAIN_EXIT_WORK)
    assert plain.marks[0] == "thread-done", plain.explain()
    assert plain.marks[-1] == "exitcode 0", plain.explain()
    # Cleanup adds only the atexit handler, after the thread (as a normal exit).
    expected = [m for m in plain.marks if m != "atexit-done"]
    assert [m for m in safe.marks if m != "atexit-done"] == expected, safe.explain()
    assert safe.marks.index("atexit-done") > safe.marks.index("thread-done"), safe.explain()
    assert "deadline" not in safe.stderr, safe.explain()


def test_slow_atexit_handler_ends_as_plain(run_script: RunScript, start_method: str) -> None:
    """A slow atexit handler: a spawned child, and from 3.13 every plain
    child, runs it, and so does safeproc, unbounded; before 3.13 a forked
    plain child never runs it and safeproc's deadline stops it. Either way
    the safe child ends exactly as the plain one."""
    body = (
        """
def child():
    atexit.register(mark, "slow-atexit-done")
    atexit.register(time.sleep, 1.0)
"""
        + LAUNCH_UNDER_SHORT_DEADLINE
    )
    plain = run_script(body, plain=True)
    safe = run_script(body)
    ran = ["slow-atexit-done"] if start_method == "spawn" or not ATEXIT_IS_SAFEPROCS else []
    assert plain.marks == [*ran, "exitcode 0"], plain.explain()
    assert safe.marks == plain.marks, safe.explain()


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


#: The child replaces sys.stderr with an object that has no file, as a
#: logging proxy does (celery's redirected stdouts), then hangs in __del__.
STDERR_REPLACED = """
import io

class Cycle:
    def __init__(self):
        self.me = self
    def __del__(self):
        while True:
            pass

def child():
    gc.set_threshold(2**31 - 1)
    mark("child", os.getpid(), mp.current_process().name)
    sys.stderr = io.StringIO()
    Cycle()

if __name__ == "__main__":
    p = ctx().Process(target=child, cleanup=safe_mp.CleanupPolicy(timeout=0.5))
    p.start()
    p.join(60)
    mark("exitcode", p.exitcode)
"""


@pytest.mark.parametrize("start_method", ["fork", "forkserver", "spawn"])
def test_deadline_expiry_starts_with_a_header_line(run_script: RunScript) -> None:
    """An expired deadline prints, first, one line saying so (child pid and name,
    step, deadline), then the traceback, on the process's stderr, even where the
    program replaced sys.stderr with an object that has no file."""
    run = run_script(STDERR_REPLACED)
    _, pid, name = next(m for m in run.marks if m.startswith("child ")).split()
    assert run.marks[-1] == "exitcode 0", run.explain()
    lines = run.stderr.splitlines()
    header = (
        f"safeproc: the cleanup deadline of 0.5 s expired in child {pid} ({name}) "
        "during step 'gc'; cleanup stopped, exiting with code 0. Where it was:"
    )
    assert header in lines, run.explain()
    at = lines.index(header)
    # Nothing of the dump comes before it; the dump follows it.
    assert not any("most recent call first" in line for line in lines[:at]), run.explain()
    assert "most recent call first" in lines[at + 1], run.explain()
    assert any("in __del__" in line for line in lines[at:]), run.explain()
