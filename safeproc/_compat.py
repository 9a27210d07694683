"""Every version- and platform-dependent detail safeproc relies on.

A reader looking for an ``if sys.version_info`` finds all of them here.
"""

from __future__ import annotations

import atexit
import sys
import weakref

# Not typing.TYPE_CHECKING: a child imports this module, and typing with it
# would cost every spawned child milliseconds (see docs/benchmarks.rst).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

__all__ = [
    "POPEN_RUNS_ATEXIT",
    "atexit_error_message",
    "atexit_handler_count",
    "clear_atexit",
    "finalize_registry",
    "next_finalize_index",
    "run_atexit_handlers",
    "select_finalizers_from",
    "unraisable_hook_args",
]

#: 3.13's fork and forkserver launchers clear the inherited atexit list in
#: the child, register ``util._exit_function`` and run the list after
#: ``_bootstrap`` returns (cpython#83856).
POPEN_RUNS_ATEXIT = sys.version_info >= (3, 13)


def clear_atexit() -> None:
    """Drop every registered atexit handler (they were inherited)."""
    atexit._clear()


def run_atexit_handlers() -> None:
    """Run and clear the atexit list as interpreter exit would.

    CPython reports each failing handler itself ("Exception ignored in atexit
    callback", through :data:`sys.unraisablehook`).
    """
    atexit._run_exitfuncs()


def atexit_error_message(func: Callable[..., object]) -> tuple[str, object]:
    """Return the ``(err_msg, obj)`` CPython's atexit reports a failing *func* with.

    Given to :data:`sys.unraisablehook`, they print the line a normal exit
    prints: "Exception ignored in atexit callback: <func>" up to 3.12,
    "Exception ignored in atexit callback <func>:" from 3.13.
    """
    if sys.version_info >= (3, 13):
        return f"Exception ignored in atexit callback {func!r}", None
    return "Exception ignored in atexit callback", func


_unraisable_args_type: Any = None


def unraisable_hook_args(err_msg: str, obj: object) -> Any:  # noqa: ANN401 - UnraisableHookArgs
    """Build :data:`sys.unraisablehook`'s argument for the exception being handled.

    The type is not exposed in :mod:`sys`; it is taken once from a real
    unraisable exception, so the default hook (which checks the type) and
    custom hooks both accept it.
    """
    global _unraisable_args_type  # noqa: PLW0603 - found once
    if _unraisable_args_type is None:
        captured: list[Any] = []
        previous = sys.unraisablehook
        sys.unraisablehook = captured.append
        try:
            _RaiseInDel()
        finally:
            sys.unraisablehook = previous
        _unraisable_args_type = type(captured[0])
    exc_type, exc_value, exc_tb = sys.exc_info()
    return _unraisable_args_type((exc_type, exc_value, exc_tb, err_msg, obj))


class _RaiseInDel:
    def __del__(self) -> None:
        raise RuntimeError


def atexit_handler_count() -> int:
    """Return how many atexit handlers are registered."""
    count: Callable[[], int] = atexit._ncallbacks
    return count()


def next_finalize_index() -> int:
    """Return the index the next ``weakref.finalize`` will receive.

    Consuming one value of the counter is harmless: indices only order
    finalizers, they need not be contiguous.
    """
    index_iter: Any = weakref.finalize._index_iter  # type: ignore[attr-defined]
    index: int = next(index_iter)
    return index


def select_finalizers_from(boundary: int) -> None:
    """Make ``weakref.finalize``'s exit hook ignore indices below *boundary*.

    Replaces the private ``_select_for_exit`` classmethod (3.9 to 3.13 share
    its shape) in this process only.
    """

    def select_for_exit(cls: Any) -> list[Any]:  # noqa: ANN401 - weakref.finalize
        live = [(f, i) for f, i in cls._registry.items() if i.atexit and i.index >= boundary]
        live.sort(key=lambda item: item[1].index)
        return [f for f, _ in live]

    weakref.finalize._select_for_exit = classmethod(select_for_exit)  # type: ignore[attr-defined]


def finalize_registry() -> dict[Any, Any]:
    """Return ``weakref.finalize``'s live registry (finalizer -> info)."""
    registry: dict[Any, Any] = weakref.finalize._registry  # type: ignore[attr-defined]
    return registry
