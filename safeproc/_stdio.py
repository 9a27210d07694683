"""``sys.stdout``/``sys.stderr`` in the child: the ``stdio`` policy.

A forked child's streams are copies of the parent's objects: with the
parent's pending bytes in their buffers and, if a parent thread was writing
at the moment of fork, a buffer lock that no thread will ever release (the
child's next write or flush then waits forever; the plain library's own
exit flush does).

*Re-arming* a stream fixes both without replacing it: the buffered object
and the text wrapper over it are initialised again, in place, on the same
raw file. Their constructors give the buffered object a fresh lock and an
empty buffer and clear the wrapper's pending text, and flush nothing. The
objects keep their identity, so every reference saved before the fork
(a logging handler, structlog's or loguru's sink, a progress bar) keeps
writing, in order, through them; no file descriptor is closed or opened.
The dropped state is the parent's: it flushes its own copy.

The text wrapper is re-initialised only for the interpreter's own streams,
whose construction arguments are known; a stream the user installed keeps
its wrapper (pending text there is flushed by the child, as plain).
See ``docs/stdio.rst``.
"""

from __future__ import annotations

import contextlib
import io
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from safeproc._policy import StdioMode

__all__ = ["flush_stdio", "prepare_stdio", "rearm_stream", "resolve_stdio_mode"]

#: The names the interpreter gives the streams it creates.
_INTERPRETER_STREAMS = frozenset({"<stdout>", "<stderr>"})


def resolve_stdio_mode(mode: StdioMode, *, forked: bool) -> StdioMode:
    """Turn ``"auto"`` into the mode this child uses.

    Every forked child re-arms its streams (``"reopen"``), whatever threads
    its parent happens to run, so the same program is handled the same way
    in every child (a pool's first and replacement workers alike); where no
    parent thread wrote at the fork, re-arming drops nothing (the launcher
    flushed right before it). A spawned child flushes them at exit.
    """
    if mode != "auto":
        return mode
    return "reopen" if forked else "flush"


def prepare_stdio(mode: StdioMode, *, forked: bool) -> None:
    """Apply *mode* at child start (a resolved mode, never ``"auto"``)."""
    if mode in ("reopen", "line") and forked:
        for stream in _std_streams():
            rearm_stream(stream)
    if mode == "line":
        for stream in (sys.stdout, sys.stderr):
            reconfigure = getattr(stream, "reconfigure", None)
            if reconfigure is not None:
                # Closed or not a real stream: nothing to line-buffer.
                with contextlib.suppress(ValueError, OSError, AttributeError):
                    reconfigure(line_buffering=True)


def _std_streams() -> list[Any]:
    streams: list[Any] = []
    for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
        if stream is not None and all(stream is not s for s in streams):
            streams.append(stream)
    return streams


def rearm_stream(stream: Any) -> bool:  # noqa: ANN401 - any object sys.stdout may be
    """Re-initialise *stream*'s buffer (and wrapper) in place; return whether it did.

    Only exact :class:`io.TextIOWrapper` over :class:`io.BufferedWriter` or
    :class:`io.BufferedRandom` objects: anything else is left alone.
    """
    if type(stream) is not io.TextIOWrapper:
        return False
    try:
        buffer: Any = stream.buffer
        raw = getattr(buffer, "raw", None)
        if type(buffer) not in (io.BufferedWriter, io.BufferedRandom) or raw is None:
            return False  # python -u (no buffer, so no lock), or a custom layer
        # The constructor takes the buffer size it had: sizeof counts it.
        size = buffer.__sizeof__() - type(buffer).__basicsize__
        type(buffer).__init__(buffer, raw, size if size > 0 else io.DEFAULT_BUFFER_SIZE)
        if stream.name in _INTERPRETER_STREAMS:
            io.TextIOWrapper.__init__(
                stream,
                buffer,
                encoding=stream.encoding,
                errors=stream.errors,
                newline="\n",  # what the interpreter gives its streams on POSIX
                line_buffering=stream.line_buffering,
                write_through=stream.write_through,
            )
    except (AttributeError, ValueError, OSError, TypeError):
        return False  # closed or detached: there is nothing to re-arm
    return True


def flush_stdio(mode: StdioMode) -> None:
    """Flush both standard streams unless *mode* is ``"none"``."""
    if mode == "none":
        return
    for stream in (sys.stdout, sys.stderr):
        try:
            if stream is not None:
                stream.flush()
        except (AttributeError, ValueError, OSError, RuntimeError):
            # Same tolerance as multiprocessing.util._flush_std_streams (and
            # "reentrant call": a signal handler interrupted a write to it).
            pass
