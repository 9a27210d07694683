"""``sigterm="cleanup"``: terminate() runs the cleanup, the child dies by SIGTERM.

Child side. A Python ``SIGTERM`` handler is installed at child start and
made one-shot with ``SA_RESETHAND`` (the kernel restores the default action
as it delivers the signal, no GIL needed). When it runs it arms a kernel
timer that sends ``SIGTERM`` at the deadline, runs the exit sequence, then
re-raises ``SIGTERM`` at itself, so the parent sees ``exitcode == -15`` as
with the plain library.

Python handlers run only in the main thread, between bytecodes: a main
thread stuck in a C call never runs it. Only the parent can end such a
child, so the parent escalates (:func:`escalate_later`): a second
``SIGTERM`` after the deadline plus a margin (the default action now:
``-15``, cleanup skipped) and ``SIGKILL`` (``-9``) only as the last resort.
A plain handler would swallow the second ``SIGTERM``, leaving only SIGKILL.

Lost wakeups. A signal that lands after the interpreter's last check and
just before a blocking call (a pool worker's semaphore wait) leaves the
handler pending while the call sleeps on. The parent therefore also nudges
the child with ``SIGURG`` (ignored by default; the child installs a no-op
handler for it) a few times after ``terminate()``: each nudge interrupts the
blocking call, and the interpreter then runs the pending SIGTERM handler.

``SA_RESETHAND`` and ``timer_create`` are reached through :mod:`ctypes`
where their layouts are known (Linux on x86_64 and aarch64); elsewhere the
parent's escalation alone bounds the cleanup.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import os
import select
import signal
import sys
import threading
import time
from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:
    from safeproc._cleanup import ChildExit

__all__ = [
    "ESCALATION_MARGIN",
    "KILL_MARGIN",
    "NUDGES",
    "NUDGE_SIGNAL",
    "die_by_sigterm",
    "drop_inherited_sigterm_cleanup",
    "escalate_later",
    "install_sigterm_cleanup",
    "prepare_kernel_calls",
]

#: Seconds after the deadline before the parent sends the second SIGTERM.
ESCALATION_MARGIN = 0.1
#: Seconds after the second SIGTERM before the parent sends SIGKILL.
KILL_MARGIN = 1.0
#: Wakes a child whose SIGTERM handler is pending behind a blocking call.
NUDGE_SIGNAL = signal.SIGURG
#: When the parent nudges, in seconds after terminate().
NUDGES = (0.02, 0.05, 0.1, 0.2, 0.4)

_LINUX_LAYOUTS = sys.platform.startswith("linux") and os.uname().machine in (
    "x86_64",
    "aarch64",
)
_SA_RESETHAND = 0x80000000
_SIGACTION_SIZE = 152  # glibc struct sigaction on 64-bit Linux
_SA_FLAGS_OFFSET = 136  # after the handler (8) and sa_mask (128)
_CLOCK_MONOTONIC = 1
_SIGEV_SIGNAL = 0


# -- child side -----------------------------------------------------------------


def install_sigterm_cleanup(state: ChildExit, finish: Callable[[ChildExit], None]) -> None:
    """Make SIGTERM run *finish* (the exit sequence), then die by SIGTERM."""
    owner = os.getpid()

    def on_sigterm(signum: int, frame: object) -> None:  # noqa: ARG001 - signal API
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        if os.getpid() != owner:
            # Inherited by a process this child forked: its state is not
            # that process's to finalize. Plain behaviour.
            die_by_sigterm()
        if state.finished:
            # The normal exit sequence is running (the handler interrupted
            # it): let it finish under its deadline, then die by SIGTERM.
            state.sigterm_pending = True
            return
        state.trigger = "sigterm"
        _arm_kernel_timer(state.policy.timeout, signal.SIGTERM)
        finish(state)
        die_by_sigterm()

    on_sigterm.safeproc_cleanup = True  # type: ignore[attr-defined]
    # ctypes first: a handler that ran while ctypes is half imported (a
    # SIGTERM landing in that import) could not arm its timer. Until the
    # handler is installed, SIGTERM still kills at once, as plain.
    prepare_kernel_calls()
    signal.signal(signal.SIGTERM, on_sigterm)
    _make_one_shot(signal.SIGTERM)
    signal.signal(NUDGE_SIGNAL, _on_nudge)


def drop_inherited_sigterm_cleanup() -> None:
    """Restore SIGTERM's default if the handler is a parent's cleanup handler.

    A safe child forked from a safe child with ``sigterm="cleanup"`` inherits
    that handler, bound to the parent's state.
    """
    if getattr(signal.getsignal(signal.SIGTERM), "safeproc_cleanup", False):
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(NUDGE_SIGNAL, signal.SIG_DFL)


def _on_nudge(signum: int, frame: object) -> None:
    """Do nothing: being interrupted is the point (see the module docs)."""


def die_by_sigterm() -> None:
    """End this process by SIGTERM at its default action, as plain would."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(1)  # pragma: no cover - the signal is delivered first
    os._exit(128 + signal.SIGTERM)  # pragma: no cover


class _KernelCalls:
    """ctypes, libc and the structures the two kernel calls need, built once."""

    def __init__(self) -> None:
        import ctypes  # noqa: PLC0415 - only processes with sigterm="cleanup" pay for it

        class SigEvent(ctypes.Structure):
            _fields_ = (
                ("sigev_value", ctypes.c_void_p),
                ("sigev_signo", ctypes.c_int),
                ("sigev_notify", ctypes.c_int),
                ("_pad", ctypes.c_int * 12),
            )

        class TimeSpec(ctypes.Structure):
            _fields_ = (("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long))

        class ITimerSpec(ctypes.Structure):
            _fields_ = (("it_interval", TimeSpec), ("it_value", TimeSpec))

        self.ctypes = ctypes
        self.libc = ctypes.CDLL(None, use_errno=True)
        self.SigEvent = SigEvent
        self.TimeSpec = TimeSpec
        self.ITimerSpec = ITimerSpec


_kernel_calls: _KernelCalls | None = None


def prepare_kernel_calls() -> None:
    """Import ctypes and build the kernel call structures, once per process.

    Called by the parent before it starts a ``sigterm="cleanup"`` child (so
    a forked child inherits them) and by the child before it installs its
    handler (a spawned child builds them there).
    """
    global _kernel_calls  # noqa: PLW0603 - built once
    if _kernel_calls is None and _LINUX_LAYOUTS:
        _kernel_calls = _KernelCalls()


def _make_one_shot(signum: int) -> None:
    """Add SA_RESETHAND to the handler the signal module just installed."""
    calls = _kernel_calls
    if calls is None:
        return
    action = calls.ctypes.create_string_buffer(_SIGACTION_SIZE)
    if calls.libc.sigaction(signum, None, action) != 0:
        return
    flags = calls.ctypes.c_uint32.from_buffer(action, _SA_FLAGS_OFFSET)
    flags.value |= _SA_RESETHAND
    calls.libc.sigaction(signum, action, None)


def _arm_kernel_timer(seconds: float | None, signum: int) -> bool:
    """Send *signum* to this process in *seconds* (POSIX timer, monotonic)."""
    calls = _kernel_calls
    if seconds is None or calls is None:
        return False
    ctypes = calls.ctypes
    event = calls.SigEvent(sigev_signo=signum, sigev_notify=_SIGEV_SIGNAL)
    timer_id = ctypes.c_void_p()
    if calls.libc.timer_create(_CLOCK_MONOTONIC, ctypes.byref(event), ctypes.byref(timer_id)) != 0:
        return False
    whole = int(seconds)
    spec = calls.ITimerSpec(it_value=calls.TimeSpec(whole, int((seconds - whole) * 1e9)))
    return bool(calls.libc.timer_settime(timer_id, 0, ctypes.byref(spec), None) == 0)


# -- parent side ----------------------------------------------------------------


class _Escalator:
    """One daemon thread that ends terminated children that outlive their deadline."""

    def __init__(self) -> None:
        self._lock = threading.Condition()
        self._queue: list[tuple[float, int, int, Any, int]] = []
        self._counter = itertools.count()
        self._thread: threading.Thread | None = None
        self._pid = os.getpid()

    def schedule(self, process: Any, delay: float) -> None:  # noqa: ANN401 - BaseProcess
        with self._lock:
            if self._thread is None or self._pid != os.getpid():
                # A forked child inherits no running thread: start its own.
                self._queue = []
                self._pid = os.getpid()
                self._thread = threading.Thread(
                    target=self._run, name="safeproc-terminate-escalation", daemon=True
                )
                self._thread.start()
            now = time.monotonic()
            for nudge in NUDGES:
                if nudge < delay:
                    heapq.heappush(
                        self._queue, (now + nudge, next(self._counter), NUDGE_SIGNAL, process, 0)
                    )
            heapq.heappush(
                self._queue, (now + delay, next(self._counter), signal.SIGTERM, process, 0)
            )
            self._lock.notify()

    def _run(self) -> None:
        while True:
            with self._lock:
                while not self._queue:
                    self._lock.wait()
                when, _, signum, process, _ = self._queue[0]
                now = time.monotonic()
                if when > now:
                    self._lock.wait(when - now)
                    continue
                heapq.heappop(self._queue)
            popen = getattr(process, "_popen", None)
            if popen is None or _has_ended(popen):
                continue
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(popen.pid, signum)
            if signum == signal.SIGTERM:
                with self._lock:
                    heapq.heappush(
                        self._queue,
                        (
                            time.monotonic() + KILL_MARGIN,
                            next(self._counter),
                            signal.SIGKILL,
                            process,
                            0,
                        ),
                    )


def _has_ended(popen: Any) -> bool:  # noqa: ANN401 - a backend's Popen
    """Tell whether the child ended, without reaping it.

    ``popen.poll()`` here would race the owner's ``join()``: both read the
    forkserver's status pipe (one gets EOF and stores 255) or both waitpid.
    """
    if popen.returncode is not None:
        return True
    try:
        ready, _, _ = select.select([popen.sentinel], [], [], 0)
    except (OSError, ValueError, TypeError):
        return True  # the sentinel is closed: the owner has reaped it
    return bool(ready)


_escalator = _Escalator()


def escalate_later(process: Any, timeout: float | None) -> None:  # noqa: ANN401 - BaseProcess
    """After *timeout* + margin, SIGTERM *process* again; SIGKILL it later.

    Nothing is scheduled when *timeout* is None: the policy asked for no
    deadline.
    """
    if timeout is None:
        return
    _escalator.schedule(process, timeout + ESCALATION_MARGIN)
