"""Contexts whose ``Process`` and ``Pool`` are safe, for both backends.

Each backend gets one subclass of each of its concrete contexts (fork,
spawn, forkserver) and of its ``DefaultContext``. A context may carry a
:class:`~safeproc.CleanupPolicy`; its ``Process`` is then a subclass bound
to that policy (see :func:`~safeproc._process.bind_process_class`), so code
that only sees the context (``ProcessPoolExecutor(mp_context=ctx)``) still
gets the policy. The safe default context keeps no start method of its own:
it reads and sets the backend's, so ``safeproc.stdlib.set_start_method`` and
``multiprocessing.set_start_method`` are the same switch.

The standard library's contexts are here; the ``multiprocess`` ones live in
:mod:`safeproc._dill`, which registers them with :func:`register_backend`
when it is first imported.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.context as _std_context
import threading
from typing import TYPE_CHECKING, Any, ClassVar

from safeproc import _forks, _process
from safeproc._policy import CleanupPolicy, check_policy

if TYPE_CHECKING:
    from safeproc._dill import DillSafePool
    from safeproc._pool import SafePool

__all__ = [
    "SafeDefaultContext",
    "register_backend",
    "safe_context",
]


class _SafeContextMixin:
    """Adds the ``cleanup`` policy to a backend context."""

    _safeproc_backend: Any
    _name: str
    _cleanup: CleanupPolicy | None = None
    #: A default context follows the backend's start method: get_context()
    #: with no argument returns the concrete context of that method.
    _safeproc_follows_default: ClassVar[bool] = False

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
        policy = check_policy(cleanup, "get_context") or self._cleanup
        if method is None:
            method = self._current_method()
            if policy == self._cleanup and not self._safeproc_follows_default:
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
        pool_class: type[SafePool | DillSafePool]
        if self._safeproc_backend is multiprocessing:
            from safeproc._pool import SafePool  # noqa: PLC0415 - _pool imports this module

            pool_class = SafePool
        else:
            from safeproc._dill import DillSafePool  # noqa: PLC0415 - the dill backend, lazily

            pool_class = DillSafePool
        ctx = self.get_context()
        return pool_class(processes, initializer, initargs, maxtasksperchild, ctx, cleanup=cleanup)

    def __repr__(self) -> str:
        extra = "" if self._cleanup is None else f" cleanup={self._cleanup!r}"
        return f"<{type(self).__name__} {self._current_method()!r}{extra}>"


def _concrete_init(self: Any, cleanup: CleanupPolicy | None = None) -> None:  # noqa: ANN401
    self._cleanup = check_policy(cleanup, "get_context")
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
    _safeproc_follows_default = True
    Process = _process.SafeProcess

    def __init__(self, cleanup: CleanupPolicy | None = None) -> None:
        self._cleanup = check_policy(cleanup, "get_context")
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


_CONCRETE: dict[Any, dict[str, type[Any]]] = {
    multiprocessing: {
        "fork": SafeForkContext,
        "spawn": SafeSpawnContext,
        "forkserver": SafeForkServerContext,
    },
}
_contexts: dict[tuple[Any, str, CleanupPolicy | None], Any] = {}
_contexts_lock = _forks.reinit_after_fork(threading.Lock())


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


def register_backend(backend: Any, contexts: dict[str, type[Any]]) -> None:  # noqa: ANN401
    """Make :func:`safe_context` serve *backend* with these context classes."""
    _CONCRETE[backend] = contexts
