"""safeproc over the standard library's :mod:`multiprocessing` (plain pickle).

``import safeproc.stdlib as multiprocessing`` and every process, pool and
context the program makes exits as if it were its own Python program. This
module offers every name :mod:`multiprocessing` offers, plus safeproc's own.

.. versionadded:: 0.1
"""

from __future__ import annotations

from safeproc import _namespace
from safeproc._context import SafeDefaultContext
from safeproc._policy import CleanupPolicy as CleanupPolicy
from safeproc._policy import get_default_cleanup as get_default_cleanup
from safeproc._policy import set_default_cleanup as set_default_cleanup
from safeproc._process import SafeProcess as SafeProcess

TYPE_CHECKING = False  # not typing's: spawned children import this module
if TYPE_CHECKING:
    # Loaded on first use (see __getattr__ below), typed here.
    from typing import Any

    from safeproc._install import install as install
    from safeproc._install import uninstall as uninstall
    from safeproc._pool import SafePool as SafePool
    from safeproc._report import CleanupReport as CleanupReport
    from safeproc._report import StepReport as StepReport

    Pool = SafePool

__all__ = list(_namespace.STDLIB_NAMES)

_default_context = SafeDefaultContext()

Process = SafeProcess

#: What this module loads on first use: a spawned child whose main module
#: imports it pays for pools, install() and reports only if it uses them.
_LAZY = {
    **_namespace.LAZY_NAMES,
    "SafePool": ("safeproc._pool", "SafePool"),
    "Pool": ("safeproc._pool", "SafePool"),
}


def __getattr__(name: str) -> Any:  # noqa: ANN401 - whatever the name is
    return _namespace.load_lazily(globals(), name, _LAZY)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


# The names multiprocessing copies from its default context, taken from the
# safe one (so Manager(), Queue() ... use safe contexts too).
if TYPE_CHECKING:
    # The same names as a type checker sees them (take_from_context below
    # binds them; test_structure checks that the two lists agree).
    ProcessError = _default_context.ProcessError
    BufferTooShort = _default_context.BufferTooShort
    TimeoutError = _default_context.TimeoutError  # noqa: A001 - multiprocessing's name
    AuthenticationError = _default_context.AuthenticationError
    Array = _default_context.Array
    Barrier = _default_context.Barrier
    BoundedSemaphore = _default_context.BoundedSemaphore
    Condition = _default_context.Condition
    Event = _default_context.Event
    JoinableQueue = _default_context.JoinableQueue
    Lock = _default_context.Lock
    Manager = _default_context.Manager
    Pipe = _default_context.Pipe
    Queue = _default_context.Queue
    RLock = _default_context.RLock
    RawArray = _default_context.RawArray
    RawValue = _default_context.RawValue
    Semaphore = _default_context.Semaphore
    SimpleQueue = _default_context.SimpleQueue
    Value = _default_context.Value
    active_children = _default_context.active_children
    allow_connection_pickling = _default_context.allow_connection_pickling
    cpu_count = _default_context.cpu_count
    current_process = _default_context.current_process
    freeze_support = _default_context.freeze_support
    get_all_start_methods = _default_context.get_all_start_methods
    get_context = _default_context.get_context
    get_logger = _default_context.get_logger
    get_start_method = _default_context.get_start_method
    log_to_stderr = _default_context.log_to_stderr
    parent_process = _default_context.parent_process
    reducer = _default_context.reducer
    set_executable = _default_context.set_executable
    set_forkserver_preload = _default_context.set_forkserver_preload
    set_start_method = _default_context.set_start_method
else:
    _namespace.take_from_context(globals(), _default_context)
