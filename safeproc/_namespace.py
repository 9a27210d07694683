"""The names of safeproc's two namespaces, listed once.

``safeproc`` (over ``multiprocess``) and ``safeproc.stdlib`` (over
``multiprocessing``) offer the same names: the plain library's, whose values
come from the namespace's safe default context (as the plain module takes
them from its own), and safeproc's own. Both build their ``__all__`` and
their context-made names from the lists here.
"""

from __future__ import annotations

import importlib

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


__all__ = [
    "DILL_NAMES",
    "FROM_DEFAULT_CONTEXT",
    "SAFEPROC_NAMES",
    "STDLIB_NAMES",
    "load_lazily",
    "take_from_context",
]

#: The plain library's names that are bound methods or attributes of its
#: default context (``multiprocessing.Queue`` is ``_default_context.Queue``);
#: each namespace takes them from its *safe* default context, so that
#: ``Manager()``, ``Queue()`` ... build on safe contexts too.
FROM_DEFAULT_CONTEXT = (
    "Array",
    "AuthenticationError",
    "Barrier",
    "BoundedSemaphore",
    "BufferTooShort",
    "Condition",
    "Event",
    "JoinableQueue",
    "Lock",
    "Manager",
    "Pipe",
    "ProcessError",
    "Queue",
    "RLock",
    "RawArray",
    "RawValue",
    "Semaphore",
    "SimpleQueue",
    "TimeoutError",
    "Value",
    "active_children",
    "allow_connection_pickling",
    "cpu_count",
    "current_process",
    "freeze_support",
    "get_all_start_methods",
    "get_context",
    "get_logger",
    "get_start_method",
    "log_to_stderr",
    "parent_process",
    "reducer",
    "set_executable",
    "set_forkserver_preload",
    "set_start_method",
)

#: safeproc's own names, and the safe classes under the plain names
#: (``Process``, ``Pool``) and their own (``SafeProcess``, ``SafePool``).
SAFEPROC_NAMES = (
    "CleanupPolicy",
    "CleanupReport",
    "Pool",
    "Process",
    "SafePool",
    "SafeProcess",
    "StepReport",
    "get_default_cleanup",
    "install",
    "set_default_cleanup",
    "uninstall",
)


#: ``safeproc.stdlib.__all__``: what ``multiprocessing`` offers, and safeproc's own.
STDLIB_NAMES = tuple(sorted({*FROM_DEFAULT_CONTEXT, *SAFEPROC_NAMES}))
#: ``safeproc.__all__``: the same over ``multiprocess``, and the error dill can raise.
DILL_NAMES = tuple(sorted({*STDLIB_NAMES, "DillUnsupportedError"}))


def take_from_context(namespace: dict[str, Any], context: Any) -> None:  # noqa: ANN401 - either backend's
    """Bind every name of :data:`FROM_DEFAULT_CONTEXT` in *namespace* to *context*'s."""
    for name in FROM_DEFAULT_CONTEXT:
        namespace[name] = getattr(context, name)


#: safeproc's own names that a namespace loads on first use, and where from:
#: a spawned child imports the namespace its main module imports, and pays
#: for none of these unless it uses them.
LAZY_NAMES: dict[str, tuple[str, str]] = {
    "install": ("safeproc._install", "install"),
    "uninstall": ("safeproc._install", "uninstall"),
    "CleanupReport": ("safeproc._report", "CleanupReport"),
    "StepReport": ("safeproc._report", "StepReport"),
}


def load_lazily(namespace: dict[str, Any], name: str, table: dict[str, tuple[str, str]]) -> Any:  # noqa: ANN401
    """Import *name*'s module from *table*, bind the value in *namespace*, return it.

    :raises AttributeError: *name* is not in *table* (as a module's
        ``__getattr__`` must).
    """
    if name not in table:
        msg = f"module {namespace['__name__']!r} has no attribute {name!r}"
        raise AttributeError(msg)
    module_name, attribute = table[name]
    value = getattr(importlib.import_module(module_name), attribute)
    namespace[name] = value
    return value
