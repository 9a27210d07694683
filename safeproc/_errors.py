"""Errors inside cleanup, reported the way CPython reports ``__del__`` errors.

A forked child ends with :func:`os._exit`, which would hide any traceback:
every error a cleanup step catches goes through :data:`sys.unraisablehook`
instead, so it prints as CPython prints errors in ``__del__`` methods and
atexit handlers (and a custom hook sees it too), and it never changes the
child's exit code.
"""

from __future__ import annotations

import contextlib
import sys

from safeproc import _compat

__all__ = ["DillUnsupportedError", "ErrorRecorder", "report_unraisable"]


class DillUnsupportedError(AttributeError):
    """The installed ``dill`` cannot pickle code on this Python version.

    Raised where the :mod:`multiprocess` backend pickles a function by value
    (starting a spawn or forkserver child, sending a task to a pool), in the
    parent, in place of the :exc:`AttributeError` that ``dill`` raises
    from deep inside the pickler (dill 0.4.1 on Python 3.15: ``'code' object
    has no attribute 'co_lnotab'``); that error is its ``__cause__``. It is an
    :exc:`AttributeError`, so code that caught the plain error still does.
    :mod:`safeproc.stdlib` pickles with the standard library and is not
    affected; neither are fork children started with ``Process``, which
    pickle nothing.

    .. versionadded:: 0.1
    """


def report_unraisable(err_msg: str, obj: object) -> None:
    """Print the exception being handled as CPython prints ``__del__`` errors.

    Never raises: a broken hook falls back to the default one.
    """
    try:
        args = _compat.unraisable_hook_args(err_msg, obj)
    except BaseException:  # noqa: BLE001 - nothing else to report it with
        return
    try:
        sys.unraisablehook(args)
    except BaseException:  # noqa: BLE001 - a broken hook: last resort
        with contextlib.suppress(BaseException):  # stderr itself is gone
            sys.__unraisablehook__(args)


class ErrorRecorder:
    """Records unraisable errors (one line each) while active, then prints them as usual."""

    def __init__(self, sink: list[str]) -> None:
        """Append to *sink* while the ``with`` block runs."""
        self.sink = sink
        self.previous = sys.unraisablehook

    def __call__(self, args: object) -> None:
        """Record *args* (:class:`sys.UnraisableHookArgs`), then pass it on."""
        exc_type = getattr(args, "exc_type", None)
        name = getattr(exc_type, "__name__", "Exception")
        err_msg = getattr(args, "err_msg", None) or "Exception ignored in"
        self.sink.append(f"{err_msg}: {name}: {getattr(args, 'exc_value', '')}")
        self.previous(args)  # type: ignore[arg-type]

    def __enter__(self) -> None:
        self.previous = sys.unraisablehook
        sys.unraisablehook = self

    def __exit__(self, *exc: object) -> None:
        if sys.unraisablehook is self:
            sys.unraisablehook = self.previous
