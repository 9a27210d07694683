"""Fixtures shared by the whole suite.

Behaviour tests run each scenario as a fresh Python program (a script in
``tmp_path``) so that the parent's state is exactly what the test built,
and observe the child from outside: the marker file its code appends to,
its stdout/stderr, its exit code. Every run has a kill timer, and every
process it started, down to grandchildren that outlived it, must be gone
afterwards (found through an environment token, checked with psutil).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import psutil
import pytest
from safeproc_testing import TEST_TOKEN_VARIABLE, describe, token_processes
from safeproc_testing import assert_no_leftovers as _assert_no_leftovers

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

START_METHODS = ("fork", "forkserver", "spawn")
BACKENDS = ("stdlib", "multiprocess")


def _dill_pickles_code() -> bool:
    import dill  # noqa: PLC0415 - only this probe needs it

    try:
        dill.dumps((lambda: None).__code__)
    except AttributeError:
        return False
    return True


#: False where the installed dill cannot pickle code on this Python (dill
#: 0.4.1 on 3.15): the multiprocess backend then fails wherever it pickles a
#: function by value, plain as well as safe. Scenarios that fail for that
#: reason are expected failures; test_api's strict canary fails the day dill
#: works here, so that this is removed.
DILL_PICKLES_CODE = _dill_pickles_code()


@pytest.fixture(scope="session")
def dill_pickles_code() -> bool:
    """Whether the installed dill can pickle code on this Python."""
    return DILL_PICKLES_CODE


#: What a scenario prints where dill fails to pickle code (its header
#: notes every failure, caught or not, of a program on the multiprocess
#: backend; the errors' own texts show the uncaught ones of the others).
DILL_NOTE = "dill cannot pickle code on this Python"

SCRIPT_HEADER = """\
import atexit, gc, os, signal, sys, time, weakref
BACKEND = {backend!r}
METHOD = {method!r}
MARK = {mark!r}
if BACKEND == "multiprocess":
    import safeproc as safe_mp
    import multiprocess as plain_mp
else:
    import safeproc.stdlib as safe_mp
    import multiprocessing as plain_mp
# How the program is made safe (tests/test_never_worse.py runs every way):
# "swap" imports safeproc in place of the library, "install" calls
# safeproc.install() and uses the plain library, "run" is started as
# ``python -m safeproc run scenario.py``; "plain" is the plain library alone.
MODE = os.environ.get("SAFEPROC_TEST_MODE", "swap")
SAFE = MODE != "plain"
mp = safe_mp if MODE == "swap" else plain_mp
if MODE == "install":
    safe_mp.install()
if BACKEND == "multiprocess" or "multiprocess" in sys.modules:
    import dill as _dill, types as _types
    try:
        _dill.dumps((lambda: None).__code__)
    except AttributeError:  # dill 0.4.1 on 3.15: say so wherever it fails
        _save_code = _dill.Pickler.dispatch[_types.CodeType]
        def _save_code_noted(pickler, obj):
            try:
                _save_code(pickler, obj)
            except AttributeError:
                if not obj.co_filename.endswith("_dill.py"):  # not safeproc's probe
                    os.write(2, " {dill_note} ".encode())
                raise
        _dill.Pickler.dispatch[_types.CodeType] = _save_code_noted


def mark(*words):
    with open(MARK, "a") as f:
        f.write(" ".join(map(str, words)) + "\\n")


def ctx():
    return mp.get_context(METHOD)


def wait_for_mark(text, timeout=60):
    deadline = time.monotonic() + timeout
    while not (os.path.exists(MARK) and text in open(MARK).read()):
        if time.monotonic() > deadline:
            raise TimeoutError(f"no mark {{text!r}} after {{timeout}} s")
        time.sleep(0.01)


def own_program_or_child(target):
    # "own" as the last argument: target runs as this program itself;
    # otherwise in one child, whose exit code is marked.
    if sys.argv[-1] == "own":
        target()
        return
    p = ctx().Process(target=target)
    p.start()
    p.join(30)
    mark("exitcode", p.exitcode)
"""


@pytest.fixture(params=START_METHODS)
def start_method(request: pytest.FixtureRequest) -> str:
    """Each start method: fork, forkserver, spawn."""
    method: str = request.param
    return method


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """Each backend: the standard library, and multiprocess (dill)."""
    name: str = request.param
    return name


@dataclass
class Run:
    """The outcome of one scenario program."""

    returncode: int
    stdout: str
    stderr: str
    marks: list[str]
    #: How it was run: "plain", "swap", "install" or "run" (see SCRIPT_HEADER).
    mode: str = "swap"
    #: It hung and was killed (only where the test allowed it: ``hang_ok``).
    hung: bool = False

    def explain(self) -> str:
        """Everything the program left, for assertion messages."""
        return (
            f"mode={self.mode} returncode={self.returncode}\n--- stdout\n{self.stdout}"
            f"--- stderr\n{self.stderr}--- marks\n" + "\n".join(self.marks)
        )


RunScript = Callable[..., Run]

#: Every way to run a scenario program (see SCRIPT_HEADER).
MODES = ("plain", "swap", "install", "run")
#: What comes between the interpreter's options and the script, per mode.
RUNNER: dict[str, tuple[str, ...]] = {"run": ("-m", "safeproc", "run")}
RUNNER.update(dict.fromkeys(("plain", "swap", "install"), ()))


def _where_it_hung(token: str, mark_path: Path) -> str:
    """Describe a hung scenario: its marks and processes; make each dump its threads.

    Scenarios run with faulthandler on (``PYTHONFAULTHANDLER``), so SIGABRT
    makes a Python process print its threads' tracebacks on the stderr the
    test collects, and then ends it: one process at a time, each dump
    finished before the next starts, as they share that stderr.
    """
    marks = mark_path.read_text() if mark_path.exists() else ""
    lines = [f"--- marks\n{marks}--- processes"]
    processes = token_processes(TEST_TOKEN_VARIABLE, token)
    for proc in processes:
        with contextlib.suppress(psutil.Error):
            state = f"parent {proc.ppid()}, {proc.status()}, {proc.num_threads()} threads"
            lines.append(f"{describe(proc)} [{state}]")
    for proc in processes:
        with contextlib.suppress(psutil.Error):
            proc.send_signal(signal.SIGABRT)
        end = time.monotonic() + 2.0
        # Until it has ended (never reaped here: Popen reaps its own child).
        with contextlib.suppress(psutil.Error):
            while proc.status() != psutil.STATUS_ZOMBIE and time.monotonic() < end:
                time.sleep(0.02)
    return "\n".join(lines) + "\n"


@pytest.fixture
def run_script(tmp_path: Path, backend: str, start_method: str) -> RunScript:
    """Return a function that runs a scenario program and collects its traces."""

    def run(  # noqa: PLR0913 - keyword options of one scenario run
        body: str,
        *,
        plain: bool = False,
        mode: str = "swap",
        timeout: float = 60.0,
        args: tuple[str, ...] = (),
        args_after: tuple[str, ...] = (),
        env: dict[str, str] | None = None,
        stdout_to_file: bool = False,
        preamble: str = "",
        dill_xfail: bool = True,
        hang_ok: bool = False,
    ) -> Run:
        mark_path = tmp_path / f"marks-{uuid.uuid4().hex}"
        script = tmp_path / "scenario.py"
        script.write_text(
            # The preamble runs before the header imports anything.
            textwrap.dedent(preamble)
            + SCRIPT_HEADER.format(
                backend=backend, method=start_method, mark=str(mark_path), dill_note=DILL_NOTE
            )
            + textwrap.dedent(body)
        )
        token = uuid.uuid4().hex
        child_env = dict(os.environ)
        child_env.update(env or {})
        child_env[TEST_TOKEN_VARIABLE] = token
        child_env.pop("SAFEPROC_TEST_PLAIN", None)
        if plain:
            mode = "plain"
        if mode not in MODES:
            msg = f"mode must be one of {MODES}, got {mode!r}"
            raise ValueError(msg)
        child_env["SAFEPROC_TEST_MODE"] = mode
        # Tracebacks of every process if the scenario hangs (_where_it_hung).
        child_env["PYTHONFAULTHANDLER"] = "1"
        # Buffering is part of what the tests observe: -u asks for it.
        child_env.pop("PYTHONUNBUFFERED", None)
        if plain:
            child_env["SAFEPROC_TEST_PLAIN"] = "1"
        out_path = tmp_path / "stdout.txt"
        with open(out_path, "w+b") as out_file:
            proc = subprocess.Popen(
                [sys.executable, *args, *RUNNER[mode], str(script), *args_after],
                cwd=tmp_path,
                env=child_env,
                stdin=subprocess.DEVNULL,
                stdout=out_file if stdout_to_file else subprocess.PIPE,
                stderr=subprocess.PIPE,
                start_new_session=True,
            )
            hung = False
            try:
                stdout, stderr = proc.communicate(timeout=timeout)
            except subprocess.TimeoutExpired:
                where = "" if hang_ok else _where_it_hung(token, mark_path)
                with contextlib.suppress(ProcessLookupError):  # all ended there
                    os.killpg(proc.pid, signal.SIGKILL)
                stdout, stderr = proc.communicate()
                _assert_no_leftovers(token)
                if not hang_ok:
                    pytest.fail(
                        f"scenario hung for {timeout}s\n{where}--- stdout\n{stdout!r}\n"
                        "--- stderr (ends with every process's threads)\n"
                        + stderr.decode(errors="replace")
                    )
                hung = True
            if stdout_to_file:
                out_file.seek(0)
                stdout = out_file.read()
        _assert_no_leftovers(token)
        marks = mark_path.read_text().splitlines() if mark_path.exists() else []
        run = Run(
            returncode=proc.returncode,
            stdout=stdout.decode(errors="replace"),
            stderr=stderr.decode(errors="replace"),
            marks=marks,
            mode=mode,
            hung=hung,
        )
        if dill_xfail:
            _xfail_where_dill_failed(run)
        return run

    return run


def _xfail_where_dill_failed(run: Run) -> None:
    """Make the test an expected failure where dill failed to pickle code in *run*."""
    if DILL_PICKLES_CODE:
        return
    for failure in (DILL_NOTE, "DillUnsupportedError", "no attribute 'co_lnotab'"):
        if failure in run.stdout or failure in run.stderr:
            pytest.xfail(f"{DILL_NOTE} ({failure})")


def _helper_process(proc: psutil.Process) -> bool:
    """Tell the forkserver and resource tracker apart: they outlive tests by design."""
    try:
        cmdline = " ".join(proc.cmdline())
    except psutil.Error:
        return True
    return "forkserver" in cmdline or "resource_tracker" in cmdline


@pytest.fixture(autouse=True)
def _no_children_left() -> Iterator[None]:
    """Fail a test that leaves a child process of the test runner behind."""
    yield
    deadline = time.monotonic() + 5.0
    me = psutil.Process()
    while True:
        left = [p for p in me.children(recursive=True) if not _helper_process(p)]
        if not left:
            return
        if time.monotonic() > deadline:
            for proc in left:
                with contextlib.suppress(psutil.Error):
                    proc.kill()
            pytest.fail(f"child processes left behind: {[p.pid for p in left]}")
        time.sleep(0.05)
