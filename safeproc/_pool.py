"""Pools whose workers finalize what they created, however the pool ends.

Workers are safe processes from a safe context, so ``close()``/``join()``,
``maxtasksperchild`` recycling and (with ``sigterm="cleanup"``)
``terminate()`` all end in the child's exit sequence.

``terminate()`` is also bounded in the parent. The stock
``Pool._terminate_pool`` can block before it signals any worker, on a lock
a worker holds (``inqueue._rlock`` in ``_help_stuff_finish``,
``outqueue._wlock`` in ``outqueue.put``); design.md measured 2 hangs in 100
rounds on 3.9. :meth:`SafePool.terminate` runs the stock terminate in a
helper thread; if it has not signalled the workers after a second, it
signals them itself, waits for them to die (their deadline bounds that),
and then releases those two locks, whose holders are dead by then.
"""

from __future__ import annotations

import contextlib
import functools
import multiprocessing
import multiprocessing.connection
import multiprocessing.pool as _std_pool
import threading
import time
import warnings
from typing import TYPE_CHECKING, Any

from safeproc._backends import SafeContext, safe_context
from safeproc._policy import DEFAULT_TIMEOUT, CleanupPolicy, check_policy, get_default_cleanup
from safeproc._sigterm import ESCALATION_MARGIN, KILL_MARGIN, has_ended

if TYPE_CHECKING:
    from collections.abc import Callable

    from safeproc._report import CleanupReport

__all__ = ["SafePool"]


def _safe_pool_context(backend: Any, context: Any, cleanup: CleanupPolicy | None) -> Any:  # noqa: ANN401
    """Return the safe context a pool should use.

    A plain context of the same backend is replaced by the safe context of
    the same start method, so ``SafePool(context=multiprocessing.get_context(
    "spawn"))`` still has safe workers.
    """
    if context is None:
        method = backend.get_start_method()
        policy = cleanup
    elif isinstance(context, SafeContext):
        method = context._current_method()
        policy = cleanup or context.cleanup
    else:
        method = context.get_start_method()
        policy = cleanup
    return safe_context(backend, method, policy)


class _PoolReports:
    """A pool's collected worker reports. Holds no worker: nothing of a worker outlives it."""

    __slots__ = ("lock", "reports")

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.reports: list[CleanupReport] = []

    def add(self, report: CleanupReport) -> None:
        """Keep the report of a worker the pool has reaped."""
        with self.lock:
            self.reports.append(report)


def _make_worker(reports: _PoolReports, ctx: Any, *args: Any, **kwds: Any) -> Any:  # noqa: ANN401
    """``Pool.Process``: a safe worker that hands its report to the pool when reaped."""
    worker = ctx.Process(*args, **kwds)
    if worker.cleanup.report:
        worker._safeproc_report_sink = reports.add
    return worker


class _SafePoolMixin:
    """Safe workers, a per-pool policy, and the workers' cleanup reports."""

    _safeproc_backend: Any
    _safeproc_reports: _PoolReports

    def __new__(cls, *args: Any, cleanup: CleanupPolicy | None = None, **kwargs: Any) -> Any:  # noqa: ARG004, ANN401
        # Checked before the object exists: a half-built Pool warns in __del__.
        check_policy(cleanup, "Pool")
        return super().__new__(cls)

    def __init__(  # noqa: PLR0913 - the plain signature plus one keyword
        self,
        processes: int | None = None,
        initializer: Callable[..., object] | None = None,
        initargs: Any = (),  # noqa: ANN401 - as the plain API
        maxtasksperchild: int | None = None,
        context: Any = None,  # noqa: ANN401 - either backend's context
        *,
        cleanup: CleanupPolicy | None = None,
    ) -> None:
        ctx = _safe_pool_context(self._safeproc_backend, context, cleanup)
        self._safeproc_reports = _PoolReports()
        # Pool hands self.Process to its worker-handler thread: a partial of
        # the report list, not a bound method, so that thread never keeps
        # the pool alive (a dropped pool is collected and ends, as plain).
        self.Process = functools.partial(_make_worker, self._safeproc_reports)
        super().__init__(processes, initializer, initargs, maxtasksperchild, ctx)  # type: ignore[call-arg]

    @property
    def cleanup(self) -> CleanupPolicy:
        """The policy this pool's workers follow."""
        policy: CleanupPolicy | None = self._ctx.cleanup  # type: ignore[attr-defined]
        return policy or get_default_cleanup()

    def terminate(self) -> None:
        """Stop the workers now, as :meth:`multiprocessing.pool.Pool.terminate`.

        Never hangs in the parent: see the module documentation. With
        ``sigterm="cleanup"`` each worker runs its cleanup before it dies.
        """
        runner = threading.Thread(
            target=super().terminate,  # type: ignore[misc]
            name="safeproc-pool-terminate",
            daemon=True,
        )
        runner.start()
        runner.join(_STUCK_AFTER)
        if not runner.is_alive():
            return
        workers = self._live_workers()
        if any(not w._safeproc_terminate_sent for w in workers):
            # Stuck before signalling any worker: do it here.
            for worker in workers:
                if not worker._safeproc_terminate_sent:
                    worker.terminate()
        timeout = self.cleanup.timeout
        deadline = (DEFAULT_TIMEOUT if timeout is None else timeout) + _WORKERS_DEAD_AFTER
        sentinels = [w.sentinel for w in workers]
        end = time.monotonic() + deadline
        while sentinels and runner.is_alive() and time.monotonic() < end:
            done = self._safeproc_backend.connection.wait(sentinels, timeout=0.1)
            sentinels = [s for s in sentinels if s not in done]
        runner.join(_SETTLE)
        if runner.is_alive():
            # Every worker is dead: a lock the stock code waits for is held
            # by one of them and will never be released otherwise.
            for lock in (
                getattr(self._inqueue, "_rlock", None),  # type: ignore[attr-defined]
                getattr(self._outqueue, "_wlock", None),  # type: ignore[attr-defined]
            ):
                _release_if_held(lock)
            runner.join(_STUCK_AFTER)
        if runner.is_alive():
            warnings.warn(
                "Pool.terminate(): the pool's internal threads are still blocked; "
                "its worker processes have ended",
                RuntimeWarning,
                stacklevel=2,
            )

    def _live_workers(self) -> list[Any]:
        """Return the workers that have not ended; never reap one (the pool's threads do)."""
        workers = list(self._pool)  # type: ignore[attr-defined]
        return [w for w in workers if w._popen is not None and not has_ended(w._popen)]

    def cleanup_reports(self, *, clear: bool = False) -> list[CleanupReport]:
        """Return the cleanup reports of the workers the pool has reaped so far.

        Workers report only when the pool's policy has ``report=True``. Every
        worker is reaped by ``close()`` and ``join()``, by ``terminate()``,
        and, while the pool runs, soon after it exits.

        :param clear: also forget the reports returned, so that a long-lived
            pool that recycles workers (``maxtasksperchild``) keeps only the
            reports not yet collected; the next call returns only newer ones.
        """
        with self._safeproc_reports.lock:
            reports = list(self._safeproc_reports.reports)
            if clear:
                self._safeproc_reports.reports.clear()
            return reports


#: Seconds the stock terminate may take before safeproc signals workers itself.
_STUCK_AFTER = 1.0
#: Beyond the deadline: the parent's escalation margins, then some slack.
_WORKERS_DEAD_AFTER = ESCALATION_MARGIN + KILL_MARGIN + 1.0
#: Once every worker is dead, how long the stock terminate gets to finish.
_SETTLE = 0.2


def _release_if_held(lock: Any) -> None:  # noqa: ANN401 - a SemLock or None
    """Release a multiprocessing Lock if it is held (any holder may release)."""
    if lock is None:
        return
    if lock.acquire(block=False):
        lock.release()
        return
    with contextlib.suppress(ValueError, OSError):
        lock.release()


class SafePool(_SafePoolMixin, _std_pool.Pool):
    """:class:`multiprocessing.pool.Pool` whose workers finalize what they created.

    Takes the plain arguments plus the keyword-only *cleanup* policy, which
    overrides the context's.

    .. versionadded:: 0.1
    """

    _safeproc_backend = multiprocessing
