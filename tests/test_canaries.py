"""Canaries: one test per interpreter private safeproc relies on.

A new Python that changes one of these fails here in one line that names the
private and the version, instead of in hundreds of scenario tests. Checks
that would disturb the test runner (clearing atexit) run in a fresh
interpreter.
"""

from __future__ import annotations

import atexit
import gc
import inspect
import logging
import multiprocessing
import multiprocessing.forkserver
import multiprocessing.popen_fork
import multiprocessing.process
import multiprocessing.spawn
import multiprocessing.util
import subprocess
import sys
import textwrap
import threading
import weakref
from typing import TYPE_CHECKING, Any

import multiprocess
import multiprocess.forkserver
import multiprocess.popen_fork
import multiprocess.process
import multiprocess.spawn
import multiprocess.util
import pytest

if TYPE_CHECKING:
    from types import ModuleType

PYTHON = ".".join(map(str, sys.version_info[:3]))

BACKENDS = pytest.mark.parametrize(
    "backend", [multiprocessing, multiprocess], ids=["stdlib", "multiprocess"]
)


def _changed(private: str, detail: str) -> str:
    return f"{private} changed on Python {PYTHON}: {detail}"


def _in_fresh_python(private: str, code: str) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, _changed(private, proc.stderr.strip()[-500:])


def test_atexit_clear_run_exitfuncs_ncallbacks() -> None:
    """``atexit._ncallbacks``/``_run_exitfuncs``/``_clear``: count, run and drop the handlers."""
    _in_fresh_python(
        "atexit._clear/_run_exitfuncs/_ncallbacks",
        """
        import atexit, os
        ran = []
        atexit._clear()
        assert atexit._ncallbacks() == 0
        atexit.register(ran.append, 1)
        atexit.register(ran.append, 2)
        assert atexit._ncallbacks() == 2, atexit._ncallbacks()
        atexit._run_exitfuncs()
        assert ran == [2, 1], ran  # last registered, first run
        atexit._clear()
        assert atexit._ncallbacks() == 0
        os._exit(0)
        """,
    )


def test_weakref_finalize_internals() -> None:
    """``weakref.finalize._registry``/``_select_for_exit``/``_exitfunc``/
    ``_registered_with_atexit``/``_index_iter``."""
    name = "weakref.finalize internals"
    finalize: Any = weakref.finalize
    for attr in ("_registry", "_select_for_exit", "_exitfunc", "_index_iter"):
        assert hasattr(finalize, attr), _changed(f"weakref.finalize.{attr}", "missing")
    assert isinstance(finalize._registered_with_atexit, bool), _changed(name, "flag")

    class Thing:
        pass

    thing = Thing()
    fin = weakref.finalize(thing, lambda: None)
    try:
        assert fin in finalize._registry, _changed(name, "_registry is not keyed by finalizer")
        info = finalize._registry[fin]
        assert hasattr(info, "index"), _changed(name, "registry entries have no index")
        assert hasattr(info, "atexit"), _changed(name, "registry entries have no atexit flag")
        assert fin in finalize._select_for_exit(), _changed(name, "_select_for_exit")
    finally:
        fin.detach()


def test_logging_handler_list_and_lock() -> None:
    """``logging._handlerList`` holds weak references to every handler; ``logging._lock``."""
    handler = logging.StreamHandler()
    try:
        refs = [ref() for ref in logging._handlerList]  # type: ignore[attr-defined]
        assert handler in refs, _changed("logging._handlerList", "handler not listed")
    finally:
        handler.close()
    lock = logging._lock  # type: ignore[attr-defined]
    assert hasattr(lock, "acquire"), _changed("logging._lock", "not a lock")


@BACKENDS
def test_process_bootstrap_signature(backend: ModuleType) -> None:
    """``BaseProcess._bootstrap(self, parent_sentinel=None)`` returns the exit code."""
    signature = inspect.signature(backend.process.BaseProcess._bootstrap)
    params = list(signature.parameters)
    assert params == ["self", "parent_sentinel"], _changed(
        f"{backend.__name__}.process.BaseProcess._bootstrap", str(signature)
    )
    assert signature.parameters["parent_sentinel"].default is None


@BACKENDS
def test_process_children_and_popen(backend: ModuleType) -> None:
    """``process._children`` (a set of Popen objects), ``Process._popen``,
    ``popen.sentinel``, ``Popen.poll``."""
    assert isinstance(backend.process._children, set), _changed(
        f"{backend.__name__}.process._children", type(backend.process._children).__name__
    )
    popen = backend.popen_fork.Popen
    for attr in ("poll", "wait", "terminate", "kill", "_launch"):
        assert hasattr(popen, attr), _changed(
            f"{backend.__name__}.popen_fork.Popen.{attr}", "missing"
        )
    process = backend.get_context("fork").Process()
    assert process._popen is None, _changed(f"{backend.__name__} Process._popen", "not None")


@BACKENDS
def test_util_exit_machinery(backend: ModuleType) -> None:
    """``util._finalizer_registry``, ``_exit_function``, ``_flush_std_streams``,
    ``_exiting``, ``_run_finalizers``."""
    util = backend.util
    assert isinstance(util._finalizer_registry, dict), _changed(
        f"{backend.__name__}.util._finalizer_registry", "not a dict"
    )
    for attr in ("_exit_function", "_flush_std_streams", "_run_finalizers"):
        assert callable(getattr(util, attr, None)), _changed(
            f"{backend.__name__}.util.{attr}", "missing"
        )
    assert isinstance(util._exiting, bool), _changed(
        f"{backend.__name__}.util._exiting", "not a flag"
    )


@BACKENDS
def test_forkserver_internals(backend: ModuleType) -> None:
    """``forkserver._forkserver`` with ``_forkserver_pid`` and ``_preload_modules``;
    ``spawn.get_preparation_data`` returns a dict."""
    server: Any = backend.forkserver._forkserver
    for attr in ("_forkserver_pid", "_preload_modules"):
        assert hasattr(server, attr), _changed(
            f"{backend.__name__}.forkserver._forkserver.{attr}", "missing"
        )
    data = backend.spawn.get_preparation_data("canary")
    assert isinstance(data, dict), _changed(
        f"{backend.__name__}.spawn.get_preparation_data", "not a dict"
    )


def test_spawn_prepare_ignores_unknown_keys() -> None:
    """``spawn.prepare`` ignores a key it does not know: safeproc marks forkserver
    children with one."""
    _in_fresh_python(
        "multiprocessing.spawn.prepare",
        """
        import multiprocessing.spawn as spawn
        data = spawn.get_preparation_data("canary")
        data.pop("init_main_from_path", None); data.pop("init_main_from_name", None)
        data["safeproc-canary"] = object()
        spawn.prepare(data)
        """,
    )


def test_gc_get_objects_skips_frozen_objects() -> None:
    """After ``gc.freeze()``, ``gc.get_objects()`` lists only what was created
    since: safeproc's "what the child created"."""
    _in_fresh_python(
        "gc.freeze/gc.get_objects",
        """
        import gc
        class Old: pass
        old = [Old() for _ in range(3)]
        gc.freeze()
        class New: pass
        new = New()
        objects = gc.get_objects()
        assert not any(o is old[0] for o in objects), "frozen objects are listed"
        assert any(o is new for o in objects), "new objects are missing"
        assert gc.get_freeze_count() > 0
        gc.unfreeze()
        assert any(o is old[0] for o in gc.get_objects()), "unfreeze does not restore"
        """,
    )


def test_lock_at_fork_reinit() -> None:
    """``_at_fork_reinit`` on locks, re-entrant locks and conditions."""
    for lock in (threading.Lock(), threading.RLock(), threading.Condition()):
        assert callable(getattr(lock, "_at_fork_reinit", None)), _changed(
            f"{type(lock).__name__}._at_fork_reinit", "missing"
        )
    lock = threading.Lock()
    lock.acquire()
    lock._at_fork_reinit()  # type: ignore[attr-defined]
    assert lock.acquire(blocking=False), _changed("Lock._at_fork_reinit", "lock still held")


def test_gc_freeze_is_public_and_counted() -> None:
    """``gc.freeze``/``unfreeze``/``get_freeze_count`` exist (3.7+), as safeproc uses them."""
    for attr in ("freeze", "unfreeze", "get_freeze_count"):
        assert callable(getattr(gc, attr, None)), _changed(f"gc.{attr}", "missing")


def test_atexit_is_the_c_module() -> None:
    """The interpreter's own atexit registry is what safeproc drives, not a Python copy."""
    assert not hasattr(atexit, "__file__"), _changed("atexit", "is a Python module now")
