"""The cleanup deadline: it bounds what safeproc adds, never the plain library's own work.

The clock runs only while safeproc's own steps run: it starts with the
first of them and is paused while the plain library's exit work runs (3.13's
launchers run the child's atexit handlers and multiprocessing's finalizers
themselves, without a bound: so does safeproc). When it expires, cleanup
stops, and the child ends the way the plain library would have ended it
(the expiry handler decides: the plain exit code, or death by SIGTERM).

Two stages, one kernel interval timer (``setitimer``, ``SIGALRM``):

1. At the deadline a Python ``SIGALRM`` handler runs in the main thread
   between two bytecodes. It interrupts Python loops, sleeps, lock waits
   and regular expressions, and calls the expiry handler, which never
   returns.
2. A main thread stuck in a C call that never returns cannot run Python
   code at all. The handler is made one-shot (``SA_RESETHAND``, see
   :mod:`safeproc._kernel`): the kernel restores ``SIGALRM``'s default
   action as it delivers the first signal, and the timer ticks once more
   :data:`GRACE` seconds later, which ends such a child by ``SIGALRM``
   (``exitcode == -14``). The same tick bounds the expiry handler's own
   work (its final flush).

``faulthandler.dump_traceback_later`` is not used: a watchdog a parent had
pending at fork (pytest's ``faulthandler_timeout`` arms one) leaves its
lock held in the child, and arming one there hangs.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys

from safeproc import _kernel

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from types import FrameType
    from typing import Any

__all__ = ["DEADLINE_SIGNAL", "GRACE", "Deadline", "announce_expiry"]

#: The signal of the deadline's timer.
DEADLINE_SIGNAL = signal.SIGALRM
#: Seconds after the deadline before a child that cannot run Python is ended.
GRACE = 1.0

_UNSET: Any = object()
#: The C module under :mod:`signal`. Its ``signal()`` and ``getsignal()``
#: take and return plain ints where :mod:`signal`'s wrappers convert to and
#: from enums: in a forked child each wrapped call copies a dozen inherited
#: pages (about 50 µs), and the deadline makes three.
_signal: Any = __import__("_signal")
_SIGNUM = int(DEADLINE_SIGNAL)


class Deadline:
    """A budget of seconds for safeproc's steps: started, paused, resumed, stopped."""

    __slots__ = ("expired", "on_expiry", "previous", "remaining", "running", "seconds")

    def __init__(self, seconds: float | None, on_expiry: Callable[[FrameType | None], Any]) -> None:
        """*on_expiry* runs in the main thread when the budget is spent; it must not return."""
        self.seconds = seconds
        self.remaining = seconds
        self.on_expiry = on_expiry
        self.running = False
        self.expired = False
        self.previous: Any = _UNSET

    def run(self) -> None:
        """Start the clock, or resume it after :meth:`pause`."""
        if self.running or self.remaining is None or self.expired:
            return
        if self.previous is _UNSET:
            self.previous = _signal.getsignal(_SIGNUM)
            _signal.signal(_SIGNUM, self._on_signal)
            _kernel.make_one_shot(_SIGNUM)
        self.running = True
        signal.setitimer(signal.ITIMER_REAL, max(self.remaining, 1e-6), GRACE)

    def pause(self) -> None:
        """Stop the clock while the plain library's own work runs."""
        if not self.running:
            return
        left, _ = signal.setitimer(signal.ITIMER_REAL, 0)
        self.running = False
        # 0 means it fired and the handler is pending: it runs next anyway.
        self.remaining = left if left > 0 else 1e-6

    def stop(self) -> None:
        """Disarm the timer for good; the previous ``SIGALRM`` handler is back."""
        if self.running:
            signal.setitimer(signal.ITIMER_REAL, 0)
            self.running = False
        if self.previous is not _UNSET and not self.expired:
            try:
                _signal.signal(_SIGNUM, self.previous)
            except (TypeError, ValueError, OSError):
                _signal.signal(_SIGNUM, _signal.SIG_DFL)
            self.previous = _UNSET

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:  # noqa: ARG002 - signal API
        # The kernel already restored the default action (one-shot): make
        # the signal module agree, so nothing re-installs this handler.
        _signal.signal(_SIGNUM, _signal.SIG_DFL)
        if not _kernel.available():
            # No one-shot here: the next tick must find the default action.
            signal.setitimer(signal.ITIMER_REAL, GRACE)
        self.expired = True
        self.running = False
        self.on_expiry(frame)


def announce_expiry(seconds: float | None, name: str, step: str | None, ending: str) -> int:
    """Write the line that says a deadline expired, where, and what happens next.

    Runs in a child about to end, in the deadline's handler, before the
    traceback dump: one small string, one ``os.write`` to the stream's file
    descriptor (fd 2 when ``sys.stderr`` has none). Never ``sys.stderr``
    itself: the code that hung may hold its lock, or the program may have
    replaced it with an object that has no file (a logging proxy), and
    faulthandler needs a file descriptor anyway. Returns that descriptor,
    for the dump.
    """
    fd = 2
    with contextlib.suppress(Exception):  # None, closed, or no file: fd 2
        fd = sys.stderr.fileno()
    deadline = "?" if seconds is None else f"{seconds:g}"
    line = (
        f"safeproc: the cleanup deadline of {deadline} s expired in child "
        f"{os.getpid()} ({name}) during step {step!r}; cleanup stopped, {ending}. "
        "Where it was:\n"
    )
    try:
        os.write(fd, line.encode(errors="backslashreplace"))
    except OSError:
        fd = 2
        os.write(fd, line.encode(errors="backslashreplace"))
    return fd
