"""The ``multiprocess`` (dill) backend: its safe classes and the ``safeproc`` namespace.

Imported only when a program asks for it: by the first access to a
multiprocess name of the :mod:`safeproc` package (``safeproc.Process``,
``safeproc.get_context`` ...), by unpickling one of these classes in a
spawned or forkserver child, or by importing :mod:`safeproc` once
``multiprocess`` is imported (its cost is paid then). A program, or a spawned child, that uses
only :mod:`safeproc.stdlib` never imports ``multiprocess`` and ``dill``.

Process, context and pool classes keep stable module-level names: spawn and
forkserver pickle process objects by class name.
"""

from __future__ import annotations

import sys
import types

import dill
import multiprocess
import multiprocess.context as _dill_context
import multiprocess.pool as _dill_pool
import multiprocess.spawn

from safeproc import (
    _coverage,  # noqa: F401 - coverage.py for multiprocess children
    _forks,
    _namespace,
)
from safeproc._backends import register_backend
from safeproc._context import _concrete_init, _SafeContextMixin, _SafeDefaultContextMixin
from safeproc._errors import DillUnsupportedError
from safeproc._pool import _SafePoolMixin
from safeproc._process import SafeProcessMixin

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = [
    "DillSafeDefaultContext",
    "DillSafeForkContext",
    "DillSafeForkProcess",
    "DillSafeForkServerContext",
    "DillSafeForkServerProcess",
    "DillSafePool",
    "DillSafeProcess",
    "DillSafeSpawnContext",
    "DillSafeSpawnProcess",
]

# -- dill on a Python it does not support yet ----------------------------------


def _guard_code_pickling() -> None:
    """Make dill's failure to pickle code, if it fails here, say what it is.

    dill 0.4.1 cannot pickle a code object on Python 3.15 (it reads
    ``co_lnotab``, removed there): every function pickled by value fails
    with an AttributeError from deep inside the pickler. Probed once, at
    this backend's import; where it fails, dill's code saver is wrapped so
    that the same failure, at the same point, is a
    :exc:`~safeproc.DillUnsupportedError` naming dill, its version and
    Python's. A dill that works is left untouched.
    """
    try:
        dill.dumps((lambda: None).__code__)
    except AttributeError:
        pass
    else:
        return
    dispatch = dill.Pickler.dispatch
    save_code = dispatch[types.CodeType]

    def save_code_or_explain(pickler: Any, obj: types.CodeType) -> None:  # noqa: ANN401 - dill's
        try:
            save_code(pickler, obj)
        except AttributeError as exc:
            version = ".".join(map(str, sys.version_info[:2]))
            msg = (
                f"dill {dill.__version__} cannot pickle code objects on Python "
                f"{version} ({exc}), so the multiprocess backend (import safeproc) "
                "cannot send this function to a child by value: use "
                "safeproc.stdlib (standard pickling), a function importable by "
                "name, or a dill release that supports Python "
                f"{version}"
            )
            raise DillUnsupportedError(msg) from exc

    dispatch[types.CodeType] = save_code_or_explain


_guard_code_pickling()

# -- processes ------------------------------------------------------------------


class DillSafeProcess(SafeProcessMixin, _dill_context.Process):  # type: ignore[misc]
    """:class:`multiprocess.Process` whose child finalizes what it created.

    Takes every argument ``multiprocess.Process`` takes, plus the
    keyword-only *cleanup*: a :class:`~safeproc.CleanupPolicy`, or ``None``
    for the context's policy or else the process-wide default.

    .. versionadded:: 0.1
    """

    _safeproc_backend = multiprocess
    _safeproc_plain_name = "Process"


class DillSafeForkProcess(SafeProcessMixin, _dill_context.ForkProcess):  # type: ignore[misc]
    """The ``multiprocess`` ``fork`` context's process class, made safe."""

    _safeproc_backend = multiprocess
    _safeproc_plain_name = "ForkProcess"


class DillSafeSpawnProcess(SafeProcessMixin, _dill_context.SpawnProcess):  # type: ignore[misc]
    """The ``multiprocess`` ``spawn`` context's process class, made safe."""

    _safeproc_backend = multiprocess
    _safeproc_plain_name = "SpawnProcess"


class DillSafeForkServerProcess(SafeProcessMixin, _dill_context.ForkServerProcess):  # type: ignore[misc]
    """The ``multiprocess`` ``forkserver`` context's process class, made safe."""

    _safeproc_backend = multiprocess
    _safeproc_plain_name = "ForkServerProcess"


# -- pools ---------------------------------------------------------------------


class DillSafePool(_SafePoolMixin, _dill_pool.Pool):  # type: ignore[misc]
    """``multiprocess.pool.Pool`` whose workers finalize what they created.

    Takes the plain arguments plus the keyword-only *cleanup* policy, which
    overrides the context's.

    .. versionadded:: 0.1
    """

    _safeproc_backend = multiprocess


# -- contexts ------------------------------------------------------------------


class _RefuseStdlibQueuesMixin:
    """Refuse, at construction, a stdlib queue built on this context.

    ``concurrent.futures.ProcessPoolExecutor`` builds a
    ``multiprocessing.queues.Queue`` on its ``mp_context``. With a
    ``multiprocess`` spawn or forkserver context that queue reaches the
    child through multiprocess's launcher, which the stdlib queue's pickling
    check does not recognise: the executor then fails deep inside the
    standard library on its first task. Failing here says what to use.
    """

    _name: str

    def Lock(self) -> Any:  # noqa: N802, ANN401 - the multiprocessing API name
        """Return a lock, as the plain context does (see the class docs)."""
        if sys._getframe(1).f_globals.get("__name__") == "multiprocessing.queues":
            msg = (
                "a standard-library multiprocessing queue (used by "
                "concurrent.futures.ProcessPoolExecutor) cannot be sent to children "
                f"of the multiprocess (dill) {self._name!r} context. Use "
                f"safeproc.stdlib.get_context({self._name!r}) for the executor, the "
                "dill 'fork' context, or safeproc.Pool (dill pickling) instead."
            )
            raise TypeError(msg)
        return super().Lock()  # type: ignore[misc]


class DillSafeForkContext(_SafeContextMixin, _dill_context.ForkContext):  # type: ignore[misc]
    """``multiprocess``'s ``fork`` context with safe processes."""

    _safeproc_backend = multiprocess
    _safeproc_pool_class = DillSafePool
    Process = DillSafeForkProcess
    __init__ = _concrete_init


class DillSafeSpawnContext(
    _RefuseStdlibQueuesMixin,
    _SafeContextMixin,
    _dill_context.SpawnContext,  # type: ignore[misc]
):
    """``multiprocess``'s ``spawn`` context with safe processes."""

    _safeproc_backend = multiprocess
    _safeproc_pool_class = DillSafePool
    Process = DillSafeSpawnProcess
    __init__ = _concrete_init


class DillSafeForkServerContext(
    _RefuseStdlibQueuesMixin,
    _SafeContextMixin,
    _dill_context.ForkServerContext,  # type: ignore[misc]
):
    """``multiprocess``'s ``forkserver`` context with safe processes."""

    _safeproc_backend = multiprocess
    _safeproc_pool_class = DillSafePool
    Process = DillSafeForkServerProcess
    __init__ = _concrete_init


class DillSafeDefaultContext(
    _SafeDefaultContextMixin,
    _SafeContextMixin,
    _dill_context.DefaultContext,  # type: ignore[misc]
):
    """``multiprocess``'s default context with safe processes."""

    _safeproc_backend = multiprocess
    _safeproc_pool_class = DillSafePool
    _safeproc_follows_default = True
    Process = DillSafeProcess


_forks.mark_forkserver_children(multiprocess.spawn)

register_backend(
    multiprocess,
    {
        "fork": DillSafeForkContext,
        "spawn": DillSafeSpawnContext,
        "forkserver": DillSafeForkServerContext,
    },
)


# -- the names ``safeproc`` re-exports (see safeproc/__init__.py) ---------------

_default_context = DillSafeDefaultContext()

# The names multiprocess copies from its default context, taken from the
# safe one (so Manager(), Queue() ... use safe contexts too).
Process = DillSafeProcess
Pool = DillSafePool
_namespace.take_from_context(globals(), _default_context)
