"""One-shot signal handlers: ``SA_RESETHAND`` through :mod:`ctypes`.

A Python signal handler runs only in the main thread, between bytecodes: a
main thread stuck in a C call never runs it. Made one-shot, the kernel
restores the signal's default action as it delivers the signal (no GIL
needed), so a second delivery of the same signal ends the process whatever
the main thread is doing. The deadline (``SIGALRM``) and ``sigterm="cleanup"``
(``SIGTERM``) both rely on it: the first signal asks Python to stop, the
second one (a timer's next tick, the parent's escalation) does not ask.

:mod:`signal` offers no way to set ``SA_RESETHAND``; ``sigaction`` is called
through :mod:`ctypes`, where the layout of ``struct sigaction`` is known
(glibc and musl on 64-bit Linux). Elsewhere handlers stay as :mod:`signal`
installs them and :func:`available` is false. ``ctypes`` is imported once
per process by :func:`prepare`: a parent calls it before it forks a child
that may need it, so the child inherits it rather than importing it.
"""

from __future__ import annotations

import os
import sys

__all__ = ["available", "make_one_shot", "prepare"]

_SA_RESETHAND = 0x80000000
_SIGACTION_SIZE = 152  # struct sigaction on 64-bit Linux (glibc)
_SA_FLAGS_OFFSET = 136  # after the handler (8) and sa_mask (128)
_KNOWN_LAYOUT = sys.platform.startswith("linux") and os.uname().machine in ("x86_64", "aarch64")


class _Calls:
    """ctypes and libc's ``sigaction``, loaded once."""

    def __init__(self) -> None:
        import ctypes  # noqa: PLC0415 - only processes that need one-shot handlers load it

        self.ctypes = ctypes
        self.sigaction = ctypes.CDLL(None, use_errno=True).sigaction


_calls: _Calls | None = None
_failed = False


def prepare() -> bool:
    """Load what :func:`make_one_shot` needs; return whether it is available.

    Never raises: where ``ctypes`` or ``sigaction`` cannot be had, handlers
    simply stay as :mod:`signal` installs them.
    """
    global _calls, _failed  # noqa: PLW0603 - loaded once per process
    if _calls is None and not _failed:
        if not _KNOWN_LAYOUT:
            _failed = True
        else:
            try:
                _calls = _Calls()
            except (ImportError, OSError, AttributeError):
                _failed = True
    return _calls is not None


def available() -> bool:
    """Tell whether :func:`make_one_shot` works here (after :func:`prepare`)."""
    return _calls is not None


def make_one_shot(signum: int) -> bool:
    """Add ``SA_RESETHAND`` to the handler :func:`signal.signal` installed for *signum*.

    Returns whether it was set. Never raises.
    """
    calls = _calls
    if calls is None and not prepare():
        return False
    calls = _calls
    if calls is None:  # pragma: no cover - prepare() said it was available
        return False
    try:
        action = calls.ctypes.create_string_buffer(_SIGACTION_SIZE)
        if calls.sigaction(signum, None, action) != 0:
            return False
        flags = calls.ctypes.c_uint32.from_buffer(action, _SA_FLAGS_OFFSET)
        flags.value |= _SA_RESETHAND
        return bool(calls.sigaction(signum, action, None) == 0)
    except (OSError, ValueError, TypeError, AttributeError):
        return False
