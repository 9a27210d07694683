"""Pools whose workers finalize what they created, however the pool ends."""

from __future__ import annotations

import multiprocessing
import multiprocessing.pool as _std_pool
import threading
from typing import TYPE_CHECKING, Any, Callable

import multiprocess
import multiprocess.pool as _dill_pool

from safeproc import _context
from safeproc._policy import CleanupPolicy, check_policy, get_default_cleanup

if TYPE_CHECKING:
    from safeproc._report import CleanupReport

__all__ = ["DillSafePool", "SafePool"]


def _safe_pool_context(backend: Any, context: Any, cleanup: CleanupPolicy | None) -> Any:  # noqa: ANN401
    """Return the safe context a pool should use.

    A plain context of the same backend is replaced by the safe context of
    the same start method, so ``SafePool(context=multiprocessing.get_context(
    "spawn"))`` still has safe workers.
    """
    if context is None:
        method = backend.get_start_method()
        policy = cleanup
    elif isinstance(context, _context._SafeContextMixin):
        method = context._current_method()
        policy = cleanup or context.cleanup
    else:
        method = context.get_start_method()
        policy = cleanup
    return _context.safe_context(backend, method, policy)


class _SafePoolMixin:
    """Safe workers, a per-pool policy, and the workers' cleanup reports."""

    _safeproc_backend: Any
    _safeproc_workers: list[Any]
    _safeproc_workers_lock: threading.Lock

    def __new__(cls, *args: Any, cleanup: CleanupPolicy | None = None, **kwargs: Any) -> Any:  # noqa: ARG004, ANN401
        # Checked before the object exists: a half-built Pool warns in __del__.
        check_policy(cleanup, f"{cls.__name__}()")
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
        self._safeproc_workers = []
        self._safeproc_workers_lock = threading.Lock()
        # Pool hands self.Process to its worker-handler thread at __init__:
        # an instance attribute set first lets the pool see every worker.
        self.Process = self._make_worker
        super().__init__(processes, initializer, initargs, maxtasksperchild, ctx)  # type: ignore[call-arg]

    @property
    def cleanup(self) -> CleanupPolicy:
        """The policy this pool's workers follow."""
        policy: CleanupPolicy | None = self._ctx.cleanup  # type: ignore[attr-defined]
        return policy or get_default_cleanup()

    def _make_worker(self, ctx: Any, *args: Any, **kwds: Any) -> Any:  # noqa: ANN401
        worker = ctx.Process(*args, **kwds)
        with self._safeproc_workers_lock:
            self._safeproc_workers.append(worker)
        return worker

    def cleanup_reports(self) -> list[CleanupReport]:
        """Return the cleanup reports of every worker that has ended so far.

        Workers report only when the pool's policy has ``report=True``.
        """
        with self._safeproc_workers_lock:
            workers = list(self._safeproc_workers)
        reports = []
        for worker in workers:
            report = worker.cleanup_report
            if report is not None:
                reports.append(report)
        return reports


class SafePool(_SafePoolMixin, _std_pool.Pool):
    """:class:`multiprocessing.pool.Pool` whose workers finalize what they created.

    Takes the plain arguments plus the keyword-only *cleanup* policy, which
    overrides the context's.

    .. versionadded:: 0.1
    """

    _safeproc_backend = multiprocessing


class DillSafePool(_SafePoolMixin, _dill_pool.Pool):  # type: ignore[misc]
    """:class:`multiprocess.pool.Pool` whose workers finalize what they created.

    .. versionadded:: 0.1
    """

    _safeproc_backend = multiprocess
