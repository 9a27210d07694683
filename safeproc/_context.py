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
:mod:`safeproc._dill`. Each module registers its contexts with
:func:`safeproc._backends.register_backend` when it is imported, so that
pools (which import neither) find them through
:func:`safeproc._backends.safe_context`.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.context as _std_context

from safeproc import _process
from safeproc._backends import SafeContext, register_backend, safe_context
from safeproc._policy import CleanupPolicy, check_policy

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, ClassVar

    from safeproc._dill import DillSafePool
    from safeproc._pool import SafePool

__all__ = ["SafeDefaultContext"]


class _SafeContextMixin(SafeContext):
    """Adds the ``cleanup`` policy to a backend context."""

    _safeproc_backend: Any
    #: The pool class ``Pool()`` makes: the backend's safe pool (None: the
    #: standard library's, imported on first use, as multiprocessing does).
    _safeproc_pool_class: ClassVar[type[Any] | None] = None
    #: A default context follows the backend's start method: get_context()
    #: with no argument returns the concrete context of that method.
    _safeproc_follows_default: ClassVar[bool] = False

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
        ctx = self.get_context()
        pool_class = self._safeproc_pool_class
        if pool_class is None:
            from safeproc._pool import SafePool  # noqa: PLC0415 - on first use

            pool_class = SafePool
        pool: SafePool | DillSafePool = pool_class(
            processes, initializer, initargs, maxtasksperchild, ctx, cleanup=cleanup
        )
        return pool

    def __repr__(self) -> str:
        extra = "" if self._cleanup is None else f" cleanup={self._cleanup!r}"
        return f"<{type(self).__name__} {self._current_method()!r}{extra}>"


def _concrete_init(self: Any, cleanup: CleanupPolicy | None = None) -> None:  # noqa: ANN401
    self._cleanup = check_policy(cleanup, "get_context")
    self.Process = _process.bind_process_class(type(self).Process, self._cleanup)


class _SafeDefaultContextMixin:
    """A backend's default context, made safe: the start method is the backend's own setting.

    Shared by both backends' default contexts; each binds its own class's
    ``Process`` (the backend's safe process).
    """

    _safeproc_backend: Any
    _cleanup: CleanupPolicy | None
    Process: ClassVar[type[Any]]

    def __init__(self, cleanup: CleanupPolicy | None = None) -> None:
        self._cleanup = check_policy(cleanup, "get_context")
        # typeshed calls Process a ClassVar; an instance attribute is what binds it.
        self.Process = _process.bind_process_class(type(self).Process, self._cleanup)  # type: ignore[misc]

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


class SafeDefaultContext(_SafeDefaultContextMixin, _SafeContextMixin, _std_context.DefaultContext):
    """``multiprocessing``'s default context with safe processes.

    The start method is the standard library's own global setting.
    """

    _safeproc_backend = multiprocessing
    _safeproc_follows_default = True
    Process = _process.SafeProcess


register_backend(
    multiprocessing,
    {
        "fork": SafeForkContext,
        "spawn": SafeSpawnContext,
        "forkserver": SafeForkServerContext,
    },
)
