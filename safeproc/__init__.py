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

from safeproc import _namespace
from safeproc._errors import DillUnsupportedError as DillUnsupportedError
from safeproc._policy import CleanupPolicy as CleanupPolicy
from safeproc._policy import get_default_cleanup as get_default_cleanup
from safeproc._policy import set_default_cleanup as set_default_cleanup

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    # The classes, for annotations; every other backend name comes through
    # __getattr__ (typed Any, as multiprocess is untyped).
    from safeproc import _dill
    from safeproc._install import install as install
    from safeproc._install import uninstall as uninstall
    from safeproc._report import CleanupReport as CleanupReport
    from safeproc._report import StepReport as StepReport

    Process = _dill.DillSafeProcess
    SafeProcess = _dill.DillSafeProcess
    Pool = _dill.DillSafePool
    SafePool = _dill.DillSafePool

__version__ = "0.1.0"

__all__ = list(_namespace.DILL_NAMES)

#: The public names this module does not define: their values come from the
#: multiprocess backend, imported on first use. ``import safeproc.stdlib``
#: runs this module, and a program (or a spawned child) on the standard
#: library should not import multiprocess and dill.
#: safeproc's own names that load on first use (pools, install(), reports).
_FROM_DILL_BACKEND = frozenset(__all__) - set(globals()) - set(_namespace.LAZY_NAMES)
_RENAMED = {"SafeProcess": "DillSafeProcess", "SafePool": "DillSafePool"}


def __getattr__(name: str) -> Any:  # noqa: ANN401 - whatever the backend name is
    if name not in _FROM_DILL_BACKEND:
        return _namespace.load_lazily(globals(), name, _namespace.LAZY_NAMES)
    from safeproc import _dill  # noqa: PLC0415 - the backend, on first use

    value = getattr(_dill, _RENAMED.get(name, name))
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


if "multiprocess" in sys.modules:
    # Its cost is paid already: load the backend now, so that a forkserver
    # of multiprocess told to preload "safeproc" has it all.
    from safeproc import _dill
