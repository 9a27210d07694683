"""Finding what a test's programs left running: shared by tests, faults and stress.

Every program a test starts carries a token in an environment variable
(``SAFEPROC_TEST_TOKEN`` in the suite, others in ``faults/``); its children
and grandchildren inherit it. Once the program has ended, a process that
still carries the token was left behind. Used by ``tests/conftest.py``,
``faults/fault_driver.py``, ``faults/run_faults.py`` and
``faults/test_pool_stress.py``: pytest finds it through ``pythonpath`` in
pyproject.toml, the fault scripts put this directory on ``sys.path``.
Needs only psutil (the ``faults`` session installs no pytest).
"""

from __future__ import annotations

import contextlib
import time
from typing import TYPE_CHECKING

import psutil

if TYPE_CHECKING:
    from collections.abc import Callable, Collection, Iterable

__all__ = [
    "TEST_TOKEN_VARIABLE",
    "assert_no_leftovers",
    "describe",
    "kill_and_describe",
    "leftovers",
    "token_processes",
]

#: The variable the suite's scenario programs carry their token in.
TEST_TOKEN_VARIABLE = "SAFEPROC_TEST_TOKEN"  # noqa: S105 - a variable name


def token_processes(
    variable: str, token: str, exclude: Collection[int] = ()
) -> list[psutil.Process]:
    """Return the live processes whose environment has *variable* set to *token*."""
    found = []
    for proc in psutil.process_iter(["environ"]):
        if proc.pid in exclude:
            continue
        try:
            environ = proc.info["environ"] or {}
        except (psutil.Error, OSError):
            continue
        if environ.get(variable) == token:
            found.append(proc)
    return found


def leftovers(
    variable: str,
    token: str,
    grace: float = 5.0,
    *,
    ignore: Callable[[psutil.Process], bool] = lambda _: False,
) -> list[psutil.Process]:
    """Wait up to *grace* seconds for the token's processes to end; return those still live.

    *ignore* tells processes that may outlive the program by design (a
    driver's own forkserver, say) apart.
    """
    end = time.monotonic() + grace
    while True:
        left = [p for p in token_processes(variable, token) if not ignore(p)]
        if not left or time.monotonic() > end:
            return left
        time.sleep(0.05)


def describe(proc: psutil.Process) -> str:
    """Return ``pid command line`` (the command line cut at 120 characters)."""
    try:
        return f"{proc.pid} {' '.join(proc.cmdline())[:120]}"
    except psutil.Error:
        return str(proc.pid)


def kill_and_describe(procs: Iterable[psutil.Process]) -> list[str]:
    """Kill *procs* (they were left behind); return what each was."""
    described = []
    for proc in procs:
        described.append(describe(proc))
        with contextlib.suppress(psutil.Error):
            proc.kill()
    return described


def assert_no_leftovers(token: str, grace: float = 5.0) -> None:
    """Fail if a process of the suite's program with *token* outlives it by *grace* seconds.

    The processes left are killed first, so that one failure does not
    spread to the tests after it.
    """
    left = kill_and_describe(leftovers(TEST_TOKEN_VARIABLE, token, grace))
    if left:
        msg = f"processes left behind: {left}"
        raise AssertionError(msg)
