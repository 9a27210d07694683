"""Where a safe context is found: the registry both backends fill.

A safe context is one of safeproc's subclasses of a backend's context
(:mod:`safeproc._context` defines the standard library's, and registers
them when it is imported; :mod:`safeproc._dill` the ``multiprocess`` ones).
Pools look safe contexts up here, so that ``Pool(context=plain_ctx)`` still
gets safe workers; contexts make pools. Both depend on this module, which
depends on neither.
"""

from __future__ import annotations

import threading

from safeproc import _forks

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from safeproc._policy import CleanupPolicy

__all__ = ["SafeContext", "register_backend", "safe_context"]


class SafeContext:
    """What every safe context has: a policy, and the start method it stands for."""

    _name: str
    _cleanup: CleanupPolicy | None = None

    @property
    def cleanup(self) -> CleanupPolicy | None:
        """The policy this context gives its processes and pools, if any."""
        return self._cleanup

    def _current_method(self) -> str:
        return self._name


_CONCRETE: dict[Any, dict[str, type[Any]]] = {}
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
