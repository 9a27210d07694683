"""Contexts whose ``Process`` and ``Pool`` are safe, for both backends.

Each backend gets one subclass of each of its concrete contexts (fork,
spawn, forkserver) and of its ``DefaultContext``. A context may carry a
:class:`~safeproc.CleanupPolicy`; its ``Process`` is then a subclass bound
to that policy (see :func:`~safeproc._process.bind_process_class`), so code
that only sees the context (``ProcessPoolExecutor(mp_context=ctx)``) still
gets the policy. The safe default context keeps no start method of its own:
it reads and sets the backend's, so ``safeproc.stdlib.set_start_method`` and
``multiprocessing.set_start_method`` are the same switch.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.context as _std_context
import sys
import threading
from typing import TYPE_CHECKING, Any

import multiprocess
import multiprocess.context as _dill_context

from safeproc import _process
from safeproc._policy import CleanupPolicy, check_policy

if TYPE_CHECKING:
    from safeproc._pool import DillSafePool, SafePool

__all__ = [
    "DillSafeDefaultContext",
    "SafeDefaultContext",
    "safe_context",
]


class _SafeContextMixin:
    """Adds the ``cleanup`` policy to a backend context."""

    _safeproc_backend: Any
    _name: str
    _cleanup: CleanupPolicy | None = None

    @property
    def cleanup(self) -> CleanupPolicy | None:
        """The policy this context gives its processes and pools, if any."""
        return self._cleanup

    def get_context(
        self, method: str | None = None, *, cleanup: CleanupPolicy | None = None
    ) -> Any:  # noqa: ANN401 - the backend's context type
        """Return a safe context for *method* (the current start method when ``None``).

        :param cleanup: the policy the returned context gives its processes;
            ``None`` keeps this context's policy.
        :raises ValueError: *method* is not a start method of this platform.
        """
        policy = check_policy(cleanup, "get_context()") or self._cleanup
        if method is None:
            method = self._current_method()
            if policy == self._cleanup and not isinstance(self, _DEFAULT_CONTEXT_TYPES):
                return self
        return safe_context(self._safeproc_backend, method, policy)

    def _current_method(self) -> str:
        return self._name

    def Pool(  # noqa: N802 - the multiprocessing API name
        self,
        processes: int | None = None,
        initializer: Any = None,  # noqa: ANN401 - as the plain API
        initargs: Any = (),  # noqa: ANN401 - as the plain API
        maxtasksperchild: int | None = None,
        *,
        cleanup: CleanupPolicy | None = None,
    ) -> SafePool | DillSafePool:
        """Return a safe pool of this context, as ``multiprocessing.Pool``."""
        from safeproc import _pool  # noqa: PLC0415 - _pool imports this module

        pool_class = (
            _pool.SafePool if self._safeproc_backend is multiprocessing else _pool.DillSafePool
        )
        ctx = self.get_context()
        return pool_class(processes, initializer, initargs, maxtasksperchild, ctx, cleanup=cleanup)

    def __repr__(self) -> str:
        extra = "" if self._cleanup is None else f" cleanup={self._cleanup!r}"
        return f"<{type(self).__name__} {self._current_method()!r}{extra}>"


def _concrete_init(self: Any, cleanup: CleanupPolicy | None = None) -> None:  # noqa: ANN401
    self._cleanup = check_policy(cleanup, type(self).__name__)
    self.Process = _process.bind_process_class(type(self).Process, self._cleanup)


# -- the standard library backend ---------------------------------------------


class SafeForkContext(_SafeContextMixin, _std_context.ForkContext):
    """The ``fork`` context with safe processes."""

    _safeproc_backend = multiprocessing
    Process = _process.SafeForkProcess
    __init__ = _concrete_init


class SafeSpawnContext(_SafeContextMixin, _std_context.SpawnContext):
    """The ``spawn`` context with safe processes."""

    _safeproc_backend = multiprocessing
    Process = _process.SafeSpawnProcess
    __init__ = _concrete_init


class SafeForkServerContext(_SafeContextMixin, _std_context.ForkServerContext):
    """The ``forkserver`` context with safe processes."""

    _safeproc_backend = multiprocessing
    Process = _process.SafeForkServerProcess
    __init__ = _concrete_init


class SafeDefaultContext(_SafeContextMixin, _std_context.DefaultContext):
    """``multiprocessing``'s default context with safe processes.

    The start method is the standard library's own global setting.
    """

    _safeproc_backend = multiprocessing
    Process = _process.SafeProcess

    def __init__(self, cleanup: CleanupPolicy | None = None) -> None:
        self._cleanup = check_policy(cleanup, "SafeDefaultContext")
        # typeshed calls Process a ClassVar; an instance attribute is what binds it.
        self.Process = _process.bind_process_class(_process.SafeProcess, self._cleanup)  # type: ignore[misc]

    def _current_method(self) -> str:
        return self.get_start_method()

    def get_start_method(self, allow_none: bool = False) -> str:  # noqa: FBT001, FBT002
        """Return the backend's start method, as the plain function does."""
        method: str = self._safeproc_backend.get_start_method(allow_none)
        return method

    def set_start_method(self, method: str | None, force: bool = False) -> None:  # noqa: FBT001, FBT002
        """Set the backend's start method, as the plain function does."""
        self._safeproc_backend.set_start_method(method, force)

    def get_all_start_methods(self) -> list[str]:
        """Return the start methods this platform supports."""
        methods: list[str] = self._safeproc_backend.get_all_start_methods()
        return methods


# -- the multiprocess (dill) backend ------------------------------------------


class _RefuseStdlibQueuesMixin:
    """Refuse, at construction, a stdlib queue built on this context.

    ``concurrent.futures.ProcessPoolExecutor`` builds a
    ``multiprocessing.queues.Queue`` on its ``mp_context``. With a
    ``multiprocess`` spawn or forkserver context that queue reaches the
    child through multiprocess's launcher, which the stdlib queue's pickling
    check does not recognise: the executor then fails deep inside the
    standard library on its first task. Failing here says what to use.
    """

    _name: str

    def Lock(self) -> Any:  # noqa: N802, ANN401 - the multiprocessing API name
        """Return a lock, as the plain context does (see the class docs)."""
        if sys._getframe(1).f_globals.get("__name__") == "multiprocessing.queues":
            msg = (
                "a standard-library multiprocessing queue (used by "
                "concurrent.futures.ProcessPoolExecutor) cannot be sent to children "
                f"of the multiprocess (dill) {self._name!r} context. Use "
                f"safeproc.stdlib.get_context({self._name!r}) for the executor, the "
                "dill 'fork' context, or safeproc.Pool (dill pickling) instead."
            )
            raise TypeError(msg)
        return super().Lock()  # type: ignore[misc]


class DillSafeForkContext(_SafeContextMixin, _dill_context.ForkContext):  # type: ignore[misc]
    """``multiprocess``'s ``fork`` context with safe processes."""

    _safeproc_backend = multiprocess
    Process = _process.DillSafeForkProcess
    __init__ = _concrete_init


class DillSafeSpawnContext(
    _RefuseStdlibQueuesMixin,
    _SafeContextMixin,
    _dill_context.SpawnContext,  # type: ignore[misc]
):
    """``multiprocess``'s ``spawn`` context with safe processes."""

    _safeproc_backend = multiprocess
    Process = _process.DillSafeSpawnProcess
    __init__ = _concrete_init


class DillSafeForkServerContext(
    _RefuseStdlibQueuesMixin,
    _SafeContextMixin,
    _dill_context.ForkServerContext,  # type: ignore[misc]
):
    """``multiprocess``'s ``forkserver`` context with safe processes."""

    _safeproc_backend = multiprocess
    Process = _process.DillSafeForkServerProcess
    __init__ = _concrete_init


class DillSafeDefaultContext(_SafeContextMixin, _dill_context.DefaultContext):  # type: ignore[misc]
    """``multiprocess``'s default context with safe processes."""

    _safeproc_backend = multiprocess
    Process = _process.DillSafeProcess

    __init__ = SafeDefaultContext.__init__
    _current_method = SafeDefaultContext._current_method
    get_start_method = SafeDefaultContext.get_start_method
    set_start_method = SafeDefaultContext.set_start_method
    get_all_start_methods = SafeDefaultContext.get_all_start_methods


_DEFAULT_CONTEXT_TYPES = (SafeDefaultContext, DillSafeDefaultContext)

_CONCRETE: dict[Any, dict[str, type[Any]]] = {
    multiprocessing: {
        "fork": SafeForkContext,
        "spawn": SafeSpawnContext,
        "forkserver": SafeForkServerContext,
    },
    multiprocess: {
        "fork": DillSafeForkContext,
        "spawn": DillSafeSpawnContext,
        "forkserver": DillSafeForkServerContext,
    },
}
_contexts: dict[tuple[Any, str, CleanupPolicy | None], Any] = {}
_contexts_lock = threading.Lock()


def safe_context(backend: Any, method: str, cleanup: CleanupPolicy | None = None) -> Any:  # noqa: ANN401
    """Return the (cached) safe context of *backend* for *method*.

    :raises ValueError: *method* is not available on this platform, with the
        same message the backend gives.
    """
    try:
        context_class = _CONCRETE[backend][method]
    except KeyError:
        msg = f"cannot find context for {method!r}"
        raise ValueError(msg) from None
    # The backend's own check (forkserver needs fd passing, for example).
    backend.get_context(method)
    key = (backend, method, cleanup)
    with _contexts_lock:
        ctx = _contexts.get(key)
        if ctx is None:
            ctx = _contexts[key] = context_class(cleanup)
    return ctx
