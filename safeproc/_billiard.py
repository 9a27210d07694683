"""billiard (Celery's prefork pool): where its workers end, and how safeproc finishes them there.

:func:`safeproc.install` patches billiard's ``BaseProcess`` as it patches
the other backends (see :mod:`safeproc._install`): a plain
``billiard.Process`` child returns from ``_bootstrap`` and runs the exit
sequence there. A pool worker never returns: its target ends in
``Worker._do_exit``, which calls ``os._exit``::

    Worker.__call__ (the worker's target)
      workloop()            tasks; returns 155 when recycled (max tasks or
                            memory), raises SystemExit(0) on the pool's
                            shutdown sentinel, SystemExit(-241) from
                            billiard's SIGTERM handler
      _do_exit(pid, code)
        on_exit(pid, code)  Celery: the worker_process_shutdown signal
        >> finish_worker    safeproc's exit sequence, here       <<
                            (a worker SIGTERM ended dies by SIGTERM next)
        outq.put(DEATH)     the parent answers with SIGTERM at once
        time.sleep(1)       ... which billiard's handler turns into SystemExit
        os._exit(code)      0.01-0.2 s after the last task

so the sequence runs right after ``on_exit`` and before the death report:
nothing signals the worker while it runs. A SIGTERM that arrives
meanwhile anyway (a cold shutdown terminating the pool) waits for the
sequence, which the deadline bounds, and is then delivered to billiard's
own handler as it would have been.

Billiard handles SIGTERM in its workers itself: its handler raises
``SystemExit``, and the worker unwinds to ``_do_exit`` as above, running
``finally`` blocks and ``on_exit`` (Celery's ``worker_process_shutdown``).
That is how the pool shrinks (``shrink()``, Celery's autoscaler: SIGTERM to
an idle worker), and how ``terminate()``, a hard time limit and a revoke
with ``terminate=True`` end a busy one. A program that turns SIGTERM into
``SystemExit`` runs its exit handlers, so the sequence runs on that path
too, under every policy (the report says ``trigger="sigterm"``).

A worker past its hard time limit gets SIGTERM, then SIGKILL 0.1 s later
if it is still there. A safe worker is given the deadline instead, as it
needs it for the steps safeproc adds: SIGTERM, 0.1 s as plain, then a
second SIGTERM 0.1 s after the deadline and SIGKILL a second later
(:func:`safeproc._sigterm.escalate_later`). A worker SIGTERM ended dies by
SIGTERM once its sequence is over (``-15``, the pool's usual answer to its
death report, which it then never sends). ``sigterm="cleanup"``
gives every ``terminate()`` of a worker that escalation. A worker that
leads its own process group is left to billiard's group kill.
"""

from __future__ import annotations

import importlib
import os
import signal

from safeproc._cleanup import finish_child, running_child
from safeproc._sigterm import die_by_sigterm, escalate_later

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    from safeproc._state import ChildExit

__all__ = ["finish_worker", "patch_pool"]


def patch_pool(patch: Callable[[Any, str, Callable[..., Any]], None]) -> None:
    """Patch billiard's pool worker exit and hard-time-limit kill with *patch*.

    *patch(owner, name, wrapper)* records the original for ``uninstall()``.
    """
    pool = importlib.import_module("billiard.pool")
    patch(pool.Worker, "_do_exit", _make_do_exit(pool.Worker._do_exit))
    handler = pool.TimeoutHandler
    patch(handler, "_trywaitkill", _make_trywaitkill(handler._trywaitkill))


def _make_do_exit(original: Callable[..., Any]) -> Callable[..., Any]:
    def _do_exit(
        self: Any,  # noqa: ANN401 - billiard's Worker
        pid: int,
        exitcode: int | None,
        exc: BaseException | None = None,
    ) -> Any:  # noqa: ANN401 - whatever billiard's returns (it never does)
        state = running_child()
        if state is not None:
            on_exit = self.on_exit

            def on_exit_then_finish(pid: int, code: int) -> None:
                try:
                    if on_exit is not None:
                        on_exit(pid, code)
                finally:
                    finish_worker(state, code)

            self.on_exit = on_exit_then_finish
        return original(self, pid, exitcode, exc)

    _do_exit.__wrapped__ = original  # type: ignore[attr-defined]
    return _do_exit


def finish_worker(state: ChildExit, exitcode: int) -> None:
    """Run the exit sequence of a billiard pool worker about to report its death.

    A SIGTERM arriving while the sequence runs is held back and
    re-delivered after it. A worker that SIGTERM ended dies by SIGTERM once
    the sequence is over: the pool would answer its death report with
    exactly that, but only while its result handler still runs.
    """
    common = importlib.import_module("billiard.common")
    terminated = bool(common.terminate_handler_fired())
    if terminated:
        state.set_trigger("sigterm")
    held: list[int] = []
    previous = signal.getsignal(signal.SIGTERM)
    signal.signal(signal.SIGTERM, lambda signum, _frame: held.append(signum))
    try:
        finish_child(state, exitcode)
    finally:
        signal.signal(signal.SIGTERM, previous)
    if terminated:
        die_by_sigterm()
    if held:
        # Billiard's handler (SystemExit): as if it had come a moment later.
        signal.raise_signal(signal.SIGTERM)


def _make_trywaitkill(original: Callable[..., Any]) -> Callable[..., Any]:
    def _trywaitkill(self: Any, worker: Any) -> Any:  # noqa: ANN401 - billiard's
        policy = getattr(worker, "_safeproc_install_policy", None)
        if policy is None or _leads_its_group(worker.pid):
            return original(self, worker)
        try:
            worker.terminate()  # safeproc's: escalates with sigterm="cleanup"
        except OSError:
            return None
        if worker._popen.wait(timeout=0.1) is None and policy.sigterm != "cleanup":
            escalate_later(worker, policy.timeout)
        return None

    _trywaitkill.__wrapped__ = original  # type: ignore[attr-defined]
    return _trywaitkill


def _leads_its_group(pid: int) -> bool:
    try:
        return os.getpgid(pid) == pid
    except OSError:
        return False
