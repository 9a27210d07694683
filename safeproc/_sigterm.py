"""``sigterm="cleanup"``: terminate() runs the cleanup, and the child still dies by SIGTERM.

Child side. A Python ``SIGTERM`` handler is installed at child start, made
one-shot (``SA_RESETHAND``, :mod:`safeproc._kernel`): the kernel restores
the default action as it delivers the signal, no GIL needed. When it runs,
it starts the exit sequence under the deadline and then re-raises
``SIGTERM`` at itself, so the parent sees ``exitcode == -15`` as with the
plain library. Where the exit sequence is already running, it lets it
finish and re-raises at its end; where it is over, it re-raises at once.
Nothing it does can raise into the code it interrupted.

A handler the user installed before the child started wins (so does an
ignored ``SIGTERM``): safeproc installs nothing then, as the plain library.

Python handlers run only in the main thread, between bytecodes: a main
thread stuck in a C call never runs it. Only the parent can end such a
child, so it escalates (:func:`escalate_later`): a second ``SIGTERM`` after
the deadline plus a margin (the default action now: ``-15``, cleanup
skipped) and ``SIGKILL`` (``-9``) one second later as the last resort. With
no deadline (``timeout=None``) the handler ignores that second ``SIGTERM``
once it runs: only a child that never ran it dies by it, and no SIGKILL
follows.

Lost wakeups. A signal that lands after the interpreter's last check and
just before a blocking call (a pool worker's semaphore wait) leaves the
handler pending while the call sleeps on. The parent therefore also nudges
the child with ``SIGURG`` (ignored by default; the child installs a no-op
handler for it) a few times after ``terminate()``: each nudge interrupts the
blocking call, and the interpreter then runs the pending SIGTERM handler.

The parent's escalation thread exists only while a terminated child may
still need it: it ends once its queue is empty, so no thread of safeproc's
stays in the parent (3.12+ warns about forking with threads). It signals
through a pidfd where the platform has one, so a reused process id is
never signalled.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import select
import signal
import threading
import time

from safeproc import _forks, _kernel

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    from safeproc._state import ChildExit

__all__ = [
    "ESCALATION_MARGIN",
    "KILL_MARGIN",
    "NO_DEADLINE_ESCALATION",
    "NUDGES",
    "NUDGE_SIGNAL",
    "die_by_sigterm",
    "drop_inherited_sigterm_cleanup",
    "escalate_later",
    "has_ended",
    "install_sigterm_cleanup",
    "restore_default_sigterm",
]

#: Seconds after the deadline before the parent sends the second SIGTERM.
ESCALATION_MARGIN = 0.1
#: Seconds after the second SIGTERM before the parent sends SIGKILL.
KILL_MARGIN = 1.0
#: With no deadline: seconds after terminate() before the second SIGTERM,
#: which only a child that never ran its handler dies by.
NO_DEADLINE_ESCALATION = 2.0
#: Wakes a child whose SIGTERM handler is pending behind a blocking call.
NUDGE_SIGNAL = signal.SIGURG
#: When the parent nudges, in seconds after terminate().
NUDGES = (0.02, 0.05, 0.1, 0.2, 0.4)

#: Whether this process (or the one it was forked from) ever installed the
#: cleanup handler: if not, a forked child has no inherited handler to drop.
_handler_installed = False


# -- child side -----------------------------------------------------------------


def install_sigterm_cleanup(state: ChildExit, on_sigterm: Callable[[ChildExit], object]) -> bool:
    """Make SIGTERM run *on_sigterm(state)* (the exit sequence), then die by SIGTERM.

    Returns False, installing nothing, when the child inherited a SIGTERM
    handler of the user's or an ignored SIGTERM: theirs wins, as plain.
    """
    current = signal.getsignal(signal.SIGTERM)
    if current is not signal.SIG_DFL and not getattr(current, "safeproc_cleanup", False):
        return False
    owner = os.getpid()

    def sigterm_handler(signum: int, frame: object) -> None:  # noqa: ARG001 - signal API
        try:
            if os.getpid() != owner:
                # Inherited by a process this child forked: its state is not
                # that process's to finalize. Plain behaviour.
                die_by_sigterm()
            if state.phase == "finished":
                die_by_sigterm()
            if state.phase == "exiting":
                # The exit sequence is running (the handler interrupted it):
                # it finishes under its deadline, then dies by SIGTERM.
                state.sigterm_pending = True
                if state.policy.timeout is None:
                    signal.signal(signal.SIGTERM, signal.SIG_IGN)
                else:
                    signal.signal(signal.SIGTERM, signal.SIG_DFL)
                return
            if state.policy.timeout is None:
                # No deadline: the parent's second SIGTERM is for a child
                # that could not run this handler.
                signal.signal(signal.SIGTERM, signal.SIG_IGN)
            else:
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
            on_sigterm(state)
        except BaseException:  # noqa: BLE001, S110 - never into the code it interrupted
            pass
        die_by_sigterm()

    sigterm_handler.safeproc_cleanup = True  # type: ignore[attr-defined]
    # ctypes first: a handler that ran while ctypes is half imported (a
    # SIGTERM landing in that import) could not make anything one-shot.
    # Until the handler is installed, SIGTERM still kills at once, as plain.
    _kernel.prepare()
    global _handler_installed  # noqa: PLW0603 - set once, inherited by forks
    _handler_installed = True
    signal.signal(signal.SIGTERM, sigterm_handler)
    _kernel.make_one_shot(signal.SIGTERM)
    signal.signal(NUDGE_SIGNAL, _on_nudge)
    return True


def drop_inherited_sigterm_cleanup() -> None:
    """Restore SIGTERM's default if the handler is a parent's cleanup handler.

    A safe child forked from a safe child with ``sigterm="cleanup"`` inherits
    that handler, bound to the parent's state. A process that never
    installed one (the flag its fork inherited says so) has nothing to drop:
    it reads one global rather than asking the signal module, which in a
    forked child would touch (and copy) more of the inherited heap.
    """
    if not _handler_installed:
        return
    if getattr(signal.getsignal(signal.SIGTERM), "safeproc_cleanup", False):
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(NUDGE_SIGNAL, signal.SIG_DFL)


def restore_default_sigterm() -> None:
    """Give SIGTERM back its default action if safeproc's handler holds it."""
    drop_inherited_sigterm_cleanup()


def _on_nudge(signum: int, frame: object) -> None:
    """Do nothing: being interrupted is the point (see the module docs)."""


def die_by_sigterm() -> None:
    """End this process by SIGTERM at its default action, as plain would."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(1)  # pragma: no cover - the signal is delivered first
    os._exit(128 + signal.SIGTERM)  # pragma: no cover


# -- parent side ----------------------------------------------------------------


def has_ended(popen: Any, pidfd: int | None = None) -> bool:  # noqa: ANN401 - a backend's Popen
    """Tell whether a child ended, without reaping it.

    ``popen.poll()`` (and ``process.exitcode``) here would race the owner's
    ``join()``: both read the forkserver's status pipe (one gets EOF and
    stores 255) or both waitpid.
    """
    if popen.returncode is not None:
        return True
    probe = pidfd if pidfd is not None else popen.sentinel
    try:
        ready, _, _ = select.select([probe], [], [], 0)
    except (OSError, ValueError, TypeError):
        return True  # the sentinel is closed: the owner has reaped it
    return bool(ready)


class _Target:
    """A terminated child the escalator may still signal."""

    __slots__ = ("pidfd", "popen")

    def __init__(self, popen: Any) -> None:  # noqa: ANN401 - a backend's Popen
        self.popen = popen
        self.pidfd: int | None = None
        pidfd_open = getattr(os, "pidfd_open", None)
        if pidfd_open is not None:
            # Opened now, while the child is known not to be reaped yet, so
            # a later signal can never reach a process that reused its id.
            with contextlib.suppress(OSError):
                self.pidfd = pidfd_open(popen.pid)

    def ended(self) -> bool:
        """Tell whether the child ended, without reaping it."""
        return has_ended(self.popen, self.pidfd)

    def send(self, signum: int) -> None:
        """Send *signum* unless the child has ended."""
        if self.ended():
            return
        with contextlib.suppress(ProcessLookupError, PermissionError, OSError):
            if self.pidfd is not None:
                signal.pidfd_send_signal(self.pidfd, signum)
            else:
                os.kill(self.popen.pid, signum)

    def close(self) -> None:
        """Release the pidfd."""
        if self.pidfd is not None:
            with contextlib.suppress(OSError):
                os.close(self.pidfd)
            self.pidfd = None


#: How often the escalator looks whether its children ended meanwhile.
_POLL = 0.05


class _Escalator:
    """Ends terminated children that outlive their deadline; its thread lives only while needed."""

    def __init__(self) -> None:
        self._lock = _forks.reinit_after_fork(threading.Condition())
        self._queue: list[tuple[float, int, int, _Target, bool]] = []
        self._counter = itertools.count()
        self._thread: threading.Thread | None = None
        self._pid = os.getpid()

    def schedule(self, process: Any, delay: float, *, kill: bool) -> None:  # noqa: ANN401
        """Nudge *process*, SIGTERM it again after *delay*, SIGKILL it later if *kill*."""
        popen = getattr(process, "_popen", None)
        if popen is None:
            return
        target = _Target(popen)
        with self._lock:
            if self._pid != os.getpid():
                # A forked child inherits no running thread: start its own.
                self._queue = []
                self._thread = None
                self._pid = os.getpid()
            now = time.monotonic()
            for nudge in NUDGES:
                if nudge < delay:
                    self._push(now + nudge, NUDGE_SIGNAL, target, last=False)
            self._push(now + delay, signal.SIGTERM, target, last=not kill)
            if kill:
                self._push(now + delay + KILL_MARGIN, signal.SIGKILL, target, last=True)
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="safeproc-terminate-escalation", daemon=True
                )
                self._thread.start()
            self._lock.notify()

    def _push(self, when: float, signum: int, target: _Target, *, last: bool) -> None:
        import heapq  # noqa: PLC0415 - parents that terminate() only, not every child

        heapq.heappush(self._queue, (when, next(self._counter), signum, target, last))

    def _run(self) -> None:
        import heapq  # noqa: PLC0415 - loaded by _push already

        while True:
            with self._lock:
                self._drop_ended()
                if not self._queue:
                    # Nothing left that may need a signal: no thread stays
                    # in the parent (a later fork would be multi-threaded).
                    self._thread = None
                    return
                when, _, signum, target, last = self._queue[0]
                now = time.monotonic()
                if when > now:
                    # Woken by schedule(), or to see whether children ended.
                    self._lock.wait(min(when - now, _POLL))
                    continue
                heapq.heappop(self._queue)
            target.send(signum)
            if last:
                target.close()

    def _drop_ended(self) -> None:
        """Forget the signals queued for children that have ended (under the lock)."""
        import heapq  # noqa: PLC0415 - loaded by _push already

        ended: dict[int, _Target] = {}
        for entry in self._queue:
            target = entry[3]
            if id(target) not in ended and target.ended():
                ended[id(target)] = target
        if ended:
            self._queue = [entry for entry in self._queue if id(entry[3]) not in ended]
            heapq.heapify(self._queue)
            for target in ended.values():
                target.close()


_escalator = _Escalator()


def escalate_later(process: Any, timeout: float | None) -> None:  # noqa: ANN401 - BaseProcess
    """Make sure a terminated ``sigterm="cleanup"`` *process* ends.

    Nudges first; a second SIGTERM 0.1 s after the deadline, SIGKILL one
    second later. With no deadline, a second SIGTERM after
    :data:`NO_DEADLINE_ESCALATION` seconds (which a child running its
    cleanup ignores) and no SIGKILL.
    """
    if timeout is None:
        _escalator.schedule(process, NO_DEADLINE_ESCALATION, kill=False)
    else:
        _escalator.schedule(process, timeout + ESCALATION_MARGIN, kill=True)
