"""Guards inside the machinery that scenario programs reach only by chance:
locks after fork, the exit sequence's run-once guard, flush errors, and
signals that must never reach a process that reused a child's id."""

from __future__ import annotations

import importlib
import io
import os
import pkgutil
import signal
import subprocess
import sys
import threading
import time
from typing import TYPE_CHECKING, Any

import pytest

import safeproc
from safeproc import _cleanup, _forks, _objects, _sigterm, _stdio
from safeproc._policy import CleanupPolicy
from safeproc._state import EXITING, FINISHED, RUNNING, ChildExit

if TYPE_CHECKING:
    from collections.abc import Iterator

    from conftest import RunScript

_LOCK_TYPES = (type(threading.Lock()), type(threading.RLock()), threading.Condition)


#: Importing these calls safeproc.install() (that is what they are for).
_INSTALLING_MODULES = ("safeproc.celery", "safeproc.dask")


def _safeproc_modules() -> Iterator[Any]:
    for info in pkgutil.walk_packages(safeproc.__path__, "safeproc."):
        if info.name.endswith("__main__") or info.name in _INSTALLING_MODULES:
            continue
        yield importlib.import_module(info.name)


def test_every_module_lock_is_reset_after_fork() -> None:
    """Each lock a safeproc module holds at module level is one the fork hook
    resets: another parent thread may hold it at the fork, and the child would
    wait for it forever."""
    modules = list(_safeproc_modules())  # importing registers their locks
    registered = {id(lock) for lock in _forks._locks}
    module_locks = {
        f"{module.__name__}.{name}": value
        for module in modules
        for name, value in vars(module).items()
        if isinstance(value, _LOCK_TYPES)
    }
    assert module_locks, "no module locks found: the scan is broken"
    missing = sorted(name for name, lock in module_locks.items() if id(lock) not in registered)
    assert not missing, f"not reset after fork: {missing}"


@pytest.mark.timeout(60)
def test_locks_held_by_another_thread_are_free_in_a_forked_child() -> None:
    """Hold every registered lock in a parent thread, fork: the child
    acquires each of them at once."""
    locks = list(_forks._locks)
    held, release = threading.Event(), threading.Event()

    def hold() -> None:
        for lock in locks:
            lock.acquire()
        held.set()
        release.wait(30)
        for lock in reversed(locks):
            lock.release()

    thread = threading.Thread(target=hold)
    thread.start()
    try:
        assert held.wait(30)
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child reports by exit code
            free = all(lock.acquire(timeout=2) for lock in locks)
            os._exit(0 if free else 1)
        _, status = os.waitpid(pid, 0)
    finally:
        release.set()
        thread.join(30)
    assert os.waitstatus_to_exitcode(status) == 0


def _state() -> ChildExit:
    return ChildExit(CleanupPolicy(), forked=True, stdio="flush", name="test")


def test_finish_child_runs_the_sequence_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """The exit sequence runs once per child: a second finish (the plain
    bootstrap returning after SIGTERM's cleanup, say) does nothing."""
    runs: list[int] = []
    monkeypatch.setattr(_cleanup, "_run_sequence", lambda *_: runs.append(1))
    monkeypatch.setattr(_cleanup, "_exit_steps", lambda _: None)
    state = _state()
    _cleanup.finish_child(state, 3)
    assert (runs, state.phase, state.exitcode) == ([1], FINISHED, 3)
    _cleanup.finish_child(state, 5)
    assert (runs, state.exitcode) == ([1], 3)


def test_finish_child_does_nothing_while_sigterm_cleanup_runs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Once SIGTERM started the sequence, the bootstrap's own finish leaves it alone."""
    runs: list[int] = []
    monkeypatch.setattr(_cleanup, "_run_sequence", lambda *_: runs.append(1))
    monkeypatch.setattr(_cleanup, "_exit_steps", lambda _: None)
    state = _state()
    state.phase = EXITING
    _cleanup.finish_child(state, 0)
    assert (runs, state.phase) == ([], EXITING)


def test_finish_child_reports_and_never_raises(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An error escaping the sequence is reported as an unraisable error, as
    CPython reports atexit and ``__del__`` errors, and never propagates."""

    def broken(*_: object) -> None:
        raise ZeroDivisionError

    seen: list[Any] = []
    monkeypatch.setattr(_cleanup, "_run_sequence", broken)
    monkeypatch.setattr(_cleanup, "_exit_steps", lambda _: None)
    monkeypatch.setattr(sys, "unraisablehook", seen.append)
    state = _state()
    assert state.phase == RUNNING
    _cleanup.finish_child(state, 0)
    assert state.phase == FINISHED
    assert [type(args.exc_value) for args in seen] == [ZeroDivisionError]
    assert "safeproc's exit sequence" in seen[0].err_msg


class _Stream(io.StringIO):
    def __init__(self, error: BaseException | None) -> None:
        super().__init__()
        self.error = error
        self.flushes = 0

    def flush(self) -> None:
        self.flushes += 1
        if self.error is not None:
            raise self.error


@pytest.mark.parametrize(
    "error",
    [
        RuntimeError("reentrant call inside <_io.BufferedWriter>"),
        OSError(5, "EIO"),
        ValueError("closed"),
    ],
)
def test_flush_stdio_tolerates_what_multiprocessing_tolerates(
    monkeypatch: pytest.MonkeyPatch, error: BaseException
) -> None:
    """A signal that interrupted a write to stdout ("reentrant call"), a
    closed or broken stream: ``flush_stdio`` still flushes the other stream
    and raises nothing, as ``multiprocessing.util._flush_std_streams``."""
    out, err = _Stream(error), _Stream(None)
    monkeypatch.setattr(sys, "stdout", out)
    monkeypatch.setattr(sys, "stderr", err)
    _stdio.flush_stdio("flush")
    assert (out.flushes, err.flushes) == (1, 1)


def test_flush_stdio_none_touches_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    """``stdio="none"`` leaves the streams alone."""
    out = _Stream(None)
    monkeypatch.setattr(sys, "stdout", out)
    _stdio.flush_stdio("none")
    assert out.flushes == 0


FULL_DEVICE_CHILD = """
def child():
    global unclosed
    unclosed = open("/dev/full", "w")  # every flush fails: ENOSPC
    unclosed.write("x" * 10)

if __name__ == "__main__":
    own_program_or_child(child)
"""


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full (Linux)")
@pytest.mark.parametrize("dev_mode", [False, True], ids=["normal", "dev-mode"])
def test_failed_flush_of_a_child_file_reports_as_its_own_program(
    run_script: RunScript, dev_mode: bool
) -> None:
    """A file the child left open whose flush fails at exit: silent in a
    normal run up to 3.12, reported in dev mode (``-X dev``) and from 3.13,
    exactly as when the same code runs as its own program; the exit code is
    untouched."""
    args = ("-X", "dev") if dev_mode else ()
    own = run_script(FULL_DEVICE_CHILD, args=args, args_after=("own",))
    safe = run_script(FULL_DEVICE_CHILD, args=args)
    assert own.returncode == 0, own.explain()
    assert safe.returncode == 0, safe.explain()
    assert safe.marks == ["exitcode 0"], safe.explain()
    own_reported = "No space left on device" in own.stderr
    # 3.13 and later report it outside dev mode too.
    assert own_reported == (dev_mode or sys.version_info >= (3, 13)), own.explain()
    assert ("No space left on device" in safe.stderr) == own_reported, safe.explain()


def test_flush_one_counts_only_what_it_flushed() -> None:
    """Closed, read-only and failing files are skipped without error."""
    r, w = os.pipe()
    with open(r, "rb") as reader, open(w, "wb") as writer:
        writer.write(b"x")
        assert _objects._flush_one(writer) == 1
        assert _objects._flush_one(reader) == 0
    assert _objects._flush_one(writer) == 0  # closed now
    assert _objects._flush_one(_Stream(RuntimeError("reentrant call"))) == 0


@pytest.mark.skipif(not hasattr(os, "pidfd_open"), reason="needs os.pidfd_open (Linux 5.3+)")
@pytest.mark.timeout(60)
def test_escalator_signals_through_the_pidfd(monkeypatch: pytest.MonkeyPatch) -> None:
    """The escalator signals through a pidfd opened while the child was known
    to be alive, never by process id: once the child ended and was reaped,
    its id may belong to another process, which must never be signalled."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    target = _sigterm._Target(proc)
    try:
        assert target.pidfd is not None

        def no_kill(pid: int, signum: int) -> None:
            msg = f"os.kill({pid}, {signum}): a reused id could be hit"
            raise AssertionError(msg)

        monkeypatch.setattr(os, "kill", no_kill)
        assert not target.ended()
        target.send(signal.SIGTERM)  # through the pidfd
        assert proc.wait(30) == -signal.SIGTERM
        deadline = time.monotonic() + 10
        while not target.ended() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert target.ended()
        target.send(signal.SIGKILL)  # reaped: a no-op, whoever has the id now
    finally:
        monkeypatch.undo()
        if proc.poll() is None:
            proc.kill()
            proc.wait(30)
        target.close()
    assert target.pidfd is None


def _python(script: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run *script* in a fresh interpreter (signals and handlers are its own)."""
    return subprocess.run(
        [sys.executable, "-c", script, *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


ONE_SHOT_SCRIPT = """
import os, signal, sys, time
from safeproc import _kernel
if sys.argv[1] == "package":
    def unavailable():
        raise ImportError("no _ctypes here")
    _kernel._from_ctypes_extension = unavailable
calls = []
signal.signal(signal.SIGUSR1, lambda *args: calls.append(args[0]))
assert _kernel.make_one_shot(signal.SIGUSR1)
os.kill(os.getpid(), signal.SIGUSR1)
time.sleep(0.05)
print(calls == [signal.SIGUSR1], "ctypes" in sys.modules, flush=True)
os.kill(os.getpid(), signal.SIGUSR1)  # the kernel restored the default: fatal
time.sleep(10)
sys.exit(3)
"""


@pytest.mark.parametrize(("way", "loads_package"), [("extension", False), ("package", True)])
def test_one_shot_handlers_run_once_then_the_default_acts(way: str, loads_package: bool) -> None:
    """make_one_shot sets SA_RESETHAND through _ctypes alone, or the ctypes package if it must."""
    run = _python(ONE_SHOT_SCRIPT, way)
    assert run.returncode == -signal.SIGUSR1, run.stderr
    assert run.stdout.split() == ["True", str(loads_package)], run.stderr


SIGTERM_AROUND_FINISH = """
import os, signal, sys, time
from safeproc import _cleanup, _sigterm
from safeproc._policy import CleanupPolicy
from safeproc._state import ChildExit

state = ChildExit(CleanupPolicy(sigterm="cleanup"), forked=True, stdio="none", name="t")
assert _sigterm.install_sigterm_cleanup(state, lambda s: sys.exit(5))
when = sys.argv[1]

def steps(state, plan):
    if when == "during the sequence":
        os.kill(os.getpid(), signal.SIGTERM)  # the handler only notes it
        time.sleep(0.05)

_cleanup._run_sequence = steps
_cleanup._exit_steps = lambda state: []
_cleanup.finish_child(state, 0)
if when == "after the sequence":
    os.kill(os.getpid(), signal.SIGTERM)  # finished: dies at once
    time.sleep(5)
sys.exit(3)
"""


@pytest.mark.parametrize("when", ["during the sequence", "after the sequence"])
def test_sigterm_around_the_end_of_finish_child_dies_by_sigterm(when: str) -> None:
    """SIGTERM during the exit sequence is noted and acted on once it ends;
    SIGTERM after it (the phase says finished) ends the child at once: both
    -15, never the exit code the bootstrap returned."""
    run = _python(SIGTERM_AROUND_FINISH, when)
    assert run.returncode == -signal.SIGTERM, run.stderr
