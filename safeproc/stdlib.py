"""safeproc over the standard library's :mod:`multiprocessing` (plain pickle).

``import safeproc.stdlib as multiprocessing`` and every process, pool and
context the program makes exits as if it were its own Python program. This
module offers every name :mod:`multiprocessing` offers, plus safeproc's own.

.. versionadded:: 0.1
"""

from __future__ import annotations

from safeproc._context import SafeDefaultContext
from safeproc._install import install, uninstall
from safeproc._policy import CleanupPolicy, get_default_cleanup, set_default_cleanup
from safeproc._pool import SafePool
from safeproc._process import SafeProcess
from safeproc._report import CleanupReport, StepReport

__all__ = [
    "Array",
    "AuthenticationError",
    "Barrier",
    "BoundedSemaphore",
    "BufferTooShort",
    "CleanupPolicy",
    "CleanupReport",
    "Condition",
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

_default_context = SafeDefaultContext()

# The names multiprocessing copies from its default context, taken from the
# safe one (so Manager(), Queue() ... use safe contexts too).
Process = SafeProcess
Pool = SafePool
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
