"""``sys.stdout``/``sys.stderr`` in the child: the ``stdio`` policy.

A forked child's streams are copies of the parent's objects, with the
parent's pending bytes in their buffers and, if a parent thread was writing
at the moment of fork, a buffer lock that no thread will ever release. The
``"reopen"`` mode drops those objects without flushing them: it closes their
raw file objects (``closefd=False`` keeps fd 1 and 2 open) and puts fresh
streams on the same descriptors. See ``docs/stdio.rst``.
"""

from __future__ import annotations

import io
import sys
from typing import IO, TYPE_CHECKING, Any

if TYPE_CHECKING:
    from safeproc._policy import StdioMode

__all__ = ["flush_stdio", "prepare_stdio", "resolve_stdio_mode"]

# The dropped streams stay referenced so that they are never deallocated (a
# deallocation could try to flush).
_dropped_streams: list[IO[str]] = []


def resolve_stdio_mode(mode: StdioMode, *, forked: bool, parent_threads: int) -> StdioMode:
    """Turn ``"auto"`` into the mode this child uses."""
    if mode != "auto":
        return mode
    return "reopen" if forked and parent_threads > 1 else "flush"


def prepare_stdio(mode: StdioMode) -> None:
    """Apply *mode* at child start (a resolved mode, never ``"auto"``)."""
    if mode == "line":
        for stream in (sys.stdout, sys.stderr):
            reconfigure = getattr(stream, "reconfigure", None)
            if reconfigure is not None:
                reconfigure(line_buffering=True)
    elif mode == "reopen":
        _reopen("stdout")
        _reopen("stderr")


def flush_stdio(mode: StdioMode) -> None:
    """Flush both standard streams unless *mode* is ``"none"``."""
    if mode == "none":
        return
    for stream in (sys.stdout, sys.stderr):
        try:
            if stream is not None:
                stream.flush()
        except (AttributeError, ValueError, OSError):
            # Same tolerance as multiprocessing.util._flush_std_streams: a
            # closed or replaced stream has nothing of ours to flush.
            pass


def _reopen(name: str) -> None:
    old: Any = getattr(sys, name)
    if not isinstance(old, io.TextIOWrapper):
        return  # replaced by the user (a StringIO, a capture): leave it be
    try:
        fd = old.fileno()
    except (OSError, ValueError):
        return
    binary: Any = old.buffer
    unbuffered = isinstance(binary, io.RawIOBase)  # python -u
    raw: Any = binary if unbuffered else binary.raw
    new_binary: Any = (
        io.FileIO(fd, "w", closefd=False)
        if unbuffered
        else io.BufferedWriter(io.FileIO(fd, "w", closefd=False))
    )
    new = io.TextIOWrapper(
        new_binary,
        encoding=old.encoding,
        errors=old.errors,
        line_buffering=old.line_buffering,
        write_through=old.write_through,
    )
    # Closing only the raw layer neither flushes nor takes the buffer lock.
    raw.close()
    _dropped_streams.append(old)
    setattr(sys, name, new)
    if getattr(sys, f"__{name}__") is old:
        setattr(sys, f"__{name}__", new)
    _repoint_logging_handlers(old, new)


def _repoint_logging_handlers(old: object, new: object) -> None:
    logging = sys.modules.get("logging")
    if logging is None:
        return
    with logging._lock:  # guards _handlerList on 3.9 to 3.13
        refs = list(logging._handlerList)
    for ref in refs:
        handler = ref()
        if handler is not None and getattr(handler, "stream", None) is old:
            # Plain assignment: setStream() would flush the old stream.
            handler.stream = new
