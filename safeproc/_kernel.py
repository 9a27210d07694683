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
installs them and :func:`available` is false. The ``_ctypes`` extension is
loaded once per process by :func:`prepare`: a parent calls it before it
forks a child that may need it, so the child inherits it rather than
loading it.
"""

from __future__ import annotations

import os
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = ["available", "make_one_shot", "prepare"]

_SA_RESETHAND = 0x80000000
_SIGACTION_SIZE = 152  # struct sigaction on 64-bit Linux (glibc)
_SA_FLAGS_OFFSET = 136  # after the handler (8) and sa_mask (128)
_KNOWN_LAYOUT = sys.platform.startswith("linux") and os.uname().machine in ("x86_64", "aarch64")


class _Calls:
    """libc's ``sigaction`` and one ``struct sigaction`` buffer, made once.

    Built on the ``_ctypes`` extension directly, as :mod:`ctypes` builds its
    own types: importing the :mod:`ctypes` package as well (and, from 3.14,
    :mod:`sysconfig` with it) costs every spawned child about 2 ms more.
    Where that fails, the package is used.

    The buffer and the view of its ``sa_flags`` are made here, in the
    process that loads this (a parent, before it forks): a forked child that
    makes a handler one-shot then writes one page it inherited rather than
    building ctypes objects, which copies about fifteen pages more. One
    buffer is not reentrant, and need not be: a signal handler that calls
    :func:`make_one_shot` (the SIGTERM one, through the exit sequence) never
    returns to the code it interrupted.
    """

    def __init__(self) -> None:
        try:
            self.sigaction, action_type, flags_type = _from_ctypes_extension()
        except (ImportError, OSError, AttributeError, TypeError):
            import ctypes  # noqa: PLC0415 - only processes that need one-shot handlers

            self.sigaction = ctypes.CDLL(None).sigaction
            action_type, flags_type = ctypes.c_char * _SIGACTION_SIZE, ctypes.c_uint32
        self.action = action_type()
        self.flags = flags_type.from_buffer(self.action, _SA_FLAGS_OFFSET)


def _from_ctypes_extension() -> tuple[Any, Any, Any]:
    # Typed as Any: typeshed describes the public ctypes API, not this use.
    _ctypes: Any = __import__("_ctypes")

    # type() picks each base's ctypes metaclass, as a class statement would.
    char = type("c_char", (_ctypes._SimpleCData,), {"_type_": "c"})
    action = type(
        "sigaction_buffer", (_ctypes.Array,), {"_type_": char, "_length_": _SIGACTION_SIZE}
    )
    flags = type("c_uint32", (_ctypes._SimpleCData,), {"_type_": "I"})
    # errno is never read: without FUNCFLAG_USE_ERRNO a call does not swap it.
    function = type(
        "CFunction",
        (_ctypes.CFuncPtr,),
        {
            "_flags_": _ctypes.FUNCFLAG_CDECL,
            "_restype_": type("c_int", (_ctypes._SimpleCData,), {"_type_": "i"}),
        },
    )
    # CFuncPtr reads the library's handle from the second item.
    process = type("Process", (), {"_handle": _ctypes.dlopen(None, os.RTLD_NOW)})
    return function(("sigaction", process)), action, flags


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
        if calls.sigaction(signum, None, calls.action) != 0:
            return False
        calls.flags.value |= _SA_RESETHAND
        return bool(calls.sigaction(signum, calls.action, None) == 0)
    except (OSError, ValueError, TypeError, AttributeError):
        return False
