"""Write a local intersphinx inventory for the Python objects these docs cite.

The docs are built where only package registries are reachable, so
intersphinx cannot download ``objects.inv`` from docs.python.org. This
module writes a small inventory in the same format (version 2, zlib) for
exactly the standard library names the pages and docstrings refer to, with
the URLs docs.python.org uses for them (``<page>#<full.name>``, and
``#module-<name>`` for modules). Links therefore point at the real Python
documentation; only the lookup table is local.

Every Python object listed here is imported and looked up when the
inventory is written, so a misspelt or removed name fails the build rather
than producing a dead link. A name missing from the table shows up as a
nitpicky warning (an error under ``-W``): add it to ``ENTRIES`` below.
"""

from __future__ import annotations

import builtins
import importlib
import zlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pathlib import Path

__all__ = ["ENTRIES", "write_inventory"]

#: Base URL of the inventory's targets (``intersphinx_mapping`` uses it too).
BASE_URL = "https://docs.python.org/3"

#: The page each module is documented on (objects use their module's page).
MODULE_PAGES = {
    "atexit": "library/atexit.html",
    "builtins": "library/functions.html",
    "concurrent.futures": "library/concurrent.futures.html",
    "dataclasses": "library/dataclasses.html",
    "faulthandler": "library/faulthandler.html",
    "gc": "library/gc.html",
    "io": "library/io.html",
    "logging": "library/logging.html",
    "logging.handlers": "library/logging.handlers.html",
    "multiprocessing": "library/multiprocessing.html",
    "multiprocessing.pool": "library/multiprocessing.html",
    "multiprocessing.sharedctypes": "library/multiprocessing.html",
    "os": "library/os.html",
    "pickle": "library/pickle.html",
    "signal": "library/signal.html",
    "subprocess": "library/subprocess.html",
    "sys": "library/sys.html",
    "tempfile": "library/tempfile.html",
    "threading": "library/threading.html",
    "time": "library/time.html",
    "typing": "library/typing.html",
    "collections.abc": "library/collections.abc.html",
    "weakref": "library/weakref.html",
}

#: Builtins live on several pages.
BUILTIN_PAGES = {
    "bool": "library/functions.html",
    "float": "library/functions.html",
    "int": "library/functions.html",
    "object": "library/functions.html",
    "str": "library/stdtypes.html",
    "dict": "library/stdtypes.html",
    "list": "library/stdtypes.html",
    "tuple": "library/stdtypes.html",
}

#: ``role name`` pairs, one per line.
ENTRIES = """
py:module atexit
py:module concurrent.futures
py:module faulthandler
py:module gc
py:module logging
py:module logging.handlers
py:module multiprocessing
py:module multiprocessing.pool
py:module os
py:module signal
py:module sys
py:module tempfile
py:module weakref
py:class bool
py:class float
py:class int
py:class object
py:class str
py:class dict
py:class list
py:class tuple
py:data None
py:exception AttributeError
py:exception KeyError
py:exception TypeError
py:exception ValueError
py:exception SystemExit
py:function atexit.register
py:class concurrent.futures.ProcessPoolExecutor
py:method concurrent.futures.Executor.shutdown
py:function faulthandler.register
py:function faulthandler.dump_traceback_later
py:function gc.collect
py:function gc.freeze
py:function gc.get_objects
py:function gc.get_referrers
py:class io.TextIOWrapper
py:method io.TextIOWrapper.reconfigure
py:function logging.basicConfig
py:function logging.shutdown
py:class logging.StreamHandler
py:class logging.handlers.BufferingHandler
py:class logging.handlers.MemoryHandler
py:class logging.handlers.QueueHandler
py:class logging.handlers.QueueListener
py:class multiprocessing.Process
py:method multiprocessing.Process.start
py:method multiprocessing.Process.is_alive
py:method multiprocessing.Process.join
py:method multiprocessing.Process.terminate
py:method multiprocessing.Process.kill
py:attribute multiprocessing.Process.exitcode
py:exception multiprocessing.ProcessError
py:exception multiprocessing.BufferTooShort
py:exception multiprocessing.AuthenticationError
py:exception multiprocessing.TimeoutError
py:function multiprocessing.Pipe
py:class multiprocessing.Queue
py:class multiprocessing.SimpleQueue
py:class multiprocessing.JoinableQueue
py:function multiprocessing.active_children
py:function multiprocessing.cpu_count
py:function multiprocessing.current_process
py:function multiprocessing.parent_process
py:function multiprocessing.freeze_support
py:function multiprocessing.get_all_start_methods
py:function multiprocessing.get_context
py:function multiprocessing.get_start_method
py:function multiprocessing.set_executable
py:function multiprocessing.set_forkserver_preload
py:function multiprocessing.set_start_method
py:class multiprocessing.Barrier
py:class multiprocessing.BoundedSemaphore
py:class multiprocessing.Condition
py:class multiprocessing.Event
py:class multiprocessing.Lock
py:class multiprocessing.RLock
py:class multiprocessing.Semaphore
py:function multiprocessing.Value
py:function multiprocessing.Array
py:function multiprocessing.sharedctypes.RawArray
py:function multiprocessing.sharedctypes.RawValue
py:function multiprocessing.Manager
py:function multiprocessing.get_logger
py:function multiprocessing.log_to_stderr
py:class multiprocessing.pool.Pool
py:method multiprocessing.pool.Pool.close
py:method multiprocessing.pool.Pool.join
py:method multiprocessing.pool.Pool.terminate
py:function os._exit
py:function os.fork
py:function os.register_at_fork
py:data signal.SIGALRM
py:data signal.SIGKILL
py:data signal.SIGTERM
py:function signal.setitimer
py:function sys.exit
py:data sys.stdout
py:data sys.stderr
py:function sys.unraisablehook
py:class tempfile.TemporaryDirectory
py:class threading.Thread
py:function time.sleep
py:data typing.Any
py:data typing.Literal
py:data typing.Never
py:data typing.Self
py:class collections.abc.Callable
py:class weakref.finalize
"""


def _page(role: str, name: str) -> str:
    if role == "py:module":
        return MODULE_PAGES[name]
    if "." not in name:
        return BUILTIN_PAGES.get(name) or (
            "library/exceptions.html" if role == "py:exception" else "library/constants.html"
        )
    module = max((m for m in MODULE_PAGES if name.startswith(m + ".")), key=len)
    return MODULE_PAGES[module]


def _check_exists(role: str, name: str) -> None:
    """Import the module or object so a wrong name fails the build."""
    if role == "py:module":
        importlib.import_module(name)
        return
    if "." not in name:
        if name != "None":
            getattr(builtins, name)
        return
    parts = name.split(".")
    for split in range(len(parts) - 1, 0, -1):
        try:
            obj: object = importlib.import_module(".".join(parts[:split]))
        except ImportError:
            continue
        for attr in parts[split:]:
            obj = getattr(obj, attr)
        return
    msg = f"cannot import any module of {name!r}"
    raise ImportError(msg)


def _lines() -> list[str]:
    lines = []
    for raw in ENTRIES.strip().splitlines():
        role, name = raw.split()
        _check_exists(role, name)
        anchor = f"module-{name}" if role == "py:module" else name
        lines.append(f"{name} {role} 1 {_page(role, name)}#{anchor} -")
    return sorted(lines)


def write_inventory(path: Path) -> Path:
    """Write the inventory to *path* (only if its content changed); return *path*."""
    header = (
        b"# Sphinx inventory version 2\n"
        b"# Project: Python\n"
        b"# Version: 3\n"
        b"# The remainder of this file is compressed using zlib.\n"
    )
    body = zlib.compress(("\n".join(_lines()) + "\n").encode(), 9)
    data = header + body
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists() or path.read_bytes() != data:
        path.write_bytes(data)
    return path
