"""Pools whose workers finalize what they created, however the pool ends.

Workers are safe processes from a safe context, so ``close()``/``join()``,
``maxtasksperchild`` recycling and (with ``sigterm="cleanup"``)
``terminate()`` all end in the child's exit sequence.

``terminate()`` is also bounded in the parent: the stock
``Pool._terminate_pool`` can block on a lock a worker holds, and
:meth:`SafePool.terminate` runs it under
:func:`safeproc._terminate.bounded_terminate`.
"""

from __future__ import annotations

import functools
import multiprocessing
import multiprocessing.connection
import multiprocessing.pool as _std_pool
import threading

from safeproc._backends import SafeContext, safe_context
from safeproc._policy import CleanupPolicy, check_policy, get_default_cleanup
from safeproc._terminate import bounded_terminate

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

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

    #: terminate() is bounded here: install()'s bounded Pool.terminate passes through.
    _safeproc_bounded_terminate = True

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
        bounded_terminate(
            self,
            super().terminate,  # type: ignore[misc]
            self.cleanup.timeout,
            self._safeproc_backend.connection,
        )

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


class SafePool(_SafePoolMixin, _std_pool.Pool):
    """:class:`multiprocessing.pool.Pool` whose workers finalize what they created.

    Takes the plain arguments plus the keyword-only *cleanup* policy, which
    overrides the context's.

    .. versionadded:: 0.1
    """

    _safeproc_backend = multiprocessing
