"""safeproc: multiprocessing children that exit as if they were their own program.

``import safeproc as multiprocessing`` (the dill-based :mod:`multiprocess`
backend) or ``import safeproc.stdlib as multiprocessing`` (the standard
library) and every child, started by fork, forkserver or spawn, finalizes
everything it created, as a normal interpreter exit would, and nothing it
inherited. This module offers every name :mod:`multiprocess` offers, plus
safeproc's own.

.. versionadded:: 0.1
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

from safeproc._errors import DillUnsupportedError
from safeproc._install import install, uninstall
from safeproc._policy import CleanupPolicy, get_default_cleanup, set_default_cleanup
from safeproc._report import CleanupReport, StepReport

if TYPE_CHECKING:
    from safeproc._dill import (
        Array,
        AuthenticationError,
        Barrier,
        BoundedSemaphore,
        BufferTooShort,
        Condition,
        Event,
        JoinableQueue,
        Lock,
        Manager,
        Pipe,
        Pool,
        Process,
        ProcessError,
        Queue,
        RawArray,
        RawValue,
        RLock,
        Semaphore,
        SimpleQueue,
        TimeoutError,  # noqa: A004 - multiprocessing's name
        Value,
        active_children,
        allow_connection_pickling,
        cpu_count,
        current_process,
        freeze_support,
        get_all_start_methods,
        get_context,
        get_logger,
        get_start_method,
        log_to_stderr,
        parent_process,
        reducer,
        set_executable,
        set_forkserver_preload,
        set_start_method,
    )
    from safeproc._dill import DillSafePool as SafePool
    from safeproc._dill import DillSafeProcess as SafeProcess

__version__ = "0.1.0"

__all__ = [
    "Array",
    "AuthenticationError",
    "Barrier",
    "BoundedSemaphore",
    "BufferTooShort",
    "CleanupPolicy",
    "CleanupReport",
    "Condition",
    "DillUnsupportedError",
    "Event",
    "JoinableQueue",
    "Lock",
    "Manager",
    "Pipe",
    "Pool",
    "Process",
    "ProcessError",
    "Queue",
    "RLock",
    "RawArray",
    "RawValue",
    "SafePool",
    "SafeProcess",
    "Semaphore",
    "SimpleQueue",
    "StepReport",
    "TimeoutError",
    "Value",
    "active_children",
    "allow_connection_pickling",
    "cpu_count",
    "current_process",
    "freeze_support",
    "get_all_start_methods",
    "get_context",
    "get_default_cleanup",
    "get_logger",
    "get_start_method",
    "install",
    "log_to_stderr",
    "parent_process",
    "reducer",
    "set_default_cleanup",
    "set_executable",
    "set_forkserver_preload",
    "set_start_method",
    "uninstall",
]

#: The names whose values come from the multiprocess backend, imported on
#: first use: ``import safeproc.stdlib`` runs this module, and a program (or
#: a spawned child) on the standard library should not import multiprocess
#: and dill.
_FROM_DILL_BACKEND = frozenset(__all__) - {
    "CleanupPolicy",
    "CleanupReport",
    "DillUnsupportedError",
    "StepReport",
    "get_default_cleanup",
    "install",
    "set_default_cleanup",
    "uninstall",
}
_RENAMED = {"SafeProcess": "DillSafeProcess", "SafePool": "DillSafePool"}


def __getattr__(name: str) -> Any:  # noqa: ANN401 - whatever the backend name is
    if name not in _FROM_DILL_BACKEND:
        msg = f"module {__name__!r} has no attribute {name!r}"
        raise AttributeError(msg)
    from safeproc import _dill  # noqa: PLC0415 - the backend, on first use

    value = getattr(_dill, _RENAMED.get(name, name))
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


if "multiprocess" in sys.modules:
    # Its cost is paid already: load the backend now, so that a forkserver
    # of multiprocess told to preload "safeproc" has it all.
    from safeproc import _dill  # noqa: F401
