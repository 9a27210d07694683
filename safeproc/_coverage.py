"""coverage.py in ``multiprocess`` children, as it is in the stdlib's.

With ``concurrency = multiprocessing``, coverage.py replaces the standard
library's ``multiprocessing.process.BaseProcess._bootstrap`` with one that
starts a ``Coverage`` in the child and saves its data at the end, and adds a
"stowaway" to ``multiprocessing.spawn``'s preparation data that re-applies
the patch in spawned children. ``multiprocess`` is a copy of the standard
library with its own ``BaseProcess`` and ``spawn``: coverage.py never sees its
children. When coverage.py has patched the standard library (its marker
attribute on :mod:`multiprocessing`), this module applies the same to
``multiprocess``::

    parent (coverage measuring)                    multiprocess child
    multiprocess BaseProcess._bootstrap = measured  --fork-->  Coverage(...).start()
    multiprocess spawn preparation data             --spawn/forkserver-->
      + "safeproc_coverage": MeasureInChild(rcfile)   unpickling patches both backends
                                                     plain _bootstrap, then save()

It runs when safeproc is imported, from :func:`safeproc.install`, before
every fork and whenever ``multiprocess`` prepares a spawn or forkserver
child (coverage.py may start after safeproc was imported), and in the
children themselves. Importing safeproc wraps ``multiprocess``'s
``spawn.get_preparation_data`` once for that; the wrapper adds nothing
while coverage.py is not measuring children. The stdlib's children need nothing: safeproc's
bootstraps call the (patched) base method, never around it.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
import threading

import multiprocess.process
import multiprocess.spawn

from safeproc import _forks

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

__all__ = ["measure_multiprocess_children"]

#: The attribute coverage.py sets on :mod:`multiprocessing` once it patched it.
COVERAGE_MARKER = "_coverage$patched"
#: The key added to ``multiprocess``'s spawn preparation data.
PREPARATION_KEY = "safeproc_coverage"

_lock = _forks.reinit_after_fork(threading.Lock())
_applied = False


def coverage_measures_children() -> bool:
    """Tell whether coverage.py patched the standard library in this process."""
    return bool(getattr(multiprocessing, COVERAGE_MARKER, False))


def measure_multiprocess_children() -> bool:
    """Measure ``multiprocess`` children if coverage.py measures the stdlib's.

    Returns whether the patch is in place. Idempotent and thread-safe.
    """
    global _applied  # noqa: PLW0603 - applied once per process
    if _applied:
        return True
    if not coverage_measures_children():
        return False
    with _lock:
        if not _applied:
            base: Any = multiprocess.process.BaseProcess
            base._bootstrap = _make_measured_bootstrap(base._bootstrap)
            _applied = True
    return True


def _make_measured_bootstrap(original: Callable[..., int]) -> Callable[..., int]:
    # What coverage.multiproc.ProcessWithCoverage._bootstrap does for the
    # standard library, around multiprocess's own bootstrap.
    def _bootstrap(self: Any, *args: Any, **kwargs: Any) -> int:  # noqa: ANN401
        from coverage import Coverage  # noqa: PLC0415 - only under coverage

        cov = Coverage(data_suffix=True, auto_data=True)
        cov._warn_preimported_source = False
        cov.start()
        try:
            return original(self, *args, **kwargs)
        finally:
            cov.stop()
            cov.save()

    _bootstrap.__wrapped__ = original  # type: ignore[attr-defined]
    return _bootstrap


def _make_preparation_data(original: Callable[[str], dict[str, Any]]) -> Callable[..., Any]:
    def get_preparation_data(name: str) -> dict[str, Any]:
        data = original(name)
        # Spawn and forkserver start no fork in this process: this is where
        # a coverage.py started after safeproc's import is noticed.
        if measure_multiprocess_children():
            data[PREPARATION_KEY] = MeasureInChild(os.environ.get("COVERAGE_RCFILE", ""))
        return data

    get_preparation_data.__wrapped__ = original  # type: ignore[attr-defined]
    return get_preparation_data


class MeasureInChild:
    """Travels in the spawn preparation data; unpickling it starts measuring."""

    def __init__(self, rcfile: str) -> None:
        self.rcfile = rcfile

    def __reduce__(self) -> tuple[Callable[[str], None], tuple[str]]:
        return (measure_in_child, (self.rcfile,))


def measure_in_child(rcfile: str) -> None:
    """Patch both backends for coverage.py in a spawned or forkserver child."""
    try:
        from coverage.multiproc import patch_multiprocessing  # noqa: PLC0415

        patch_multiprocessing(rcfile or os.environ.get("COVERAGE_RCFILE", ".coveragerc"))
        measure_multiprocess_children()
    except Exception:  # noqa: BLE001 - the child runs unmeasured rather than not at all
        from safeproc._errors import report_unraisable  # noqa: PLC0415 - the rare path

        report_unraisable("Exception ignored while starting coverage in the child", rcfile)
        sys.stderr.flush()


def _before_fork() -> None:
    if not _applied and coverage_measures_children():
        measure_multiprocess_children()


os.register_at_fork(before=_before_fork)
multiprocess.spawn.get_preparation_data = _make_preparation_data(
    multiprocess.spawn.get_preparation_data
)
measure_multiprocess_children()
