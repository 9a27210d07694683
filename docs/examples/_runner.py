"""Run the example programs for the doctests (not an example itself).

Each example under ``docs/examples/`` is a complete program that the pages
show with ``literalinclude``. The doctests run it in a fresh interpreter,
exactly as a reader would, and compare what it prints.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent

# Runs a program as __main__ after choosing the start method of both
# backends, so one unchanged file can be shown under every start method.
_WITH_METHOD = """\
import runpy, sys
import multiprocess, multiprocessing
path, method = sys.argv[1], sys.argv[2]
sys.argv = [path, *sys.argv[3:]]
multiprocessing.set_start_method(method)
multiprocess.set_start_method(method)
runpy.run_path(path, run_name="__main__")
"""


def example_result(
    name: str, *args: str, method: str | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run ``docs/examples/<name>`` with *args*; return the finished process."""
    path = HERE / name
    if method is None:
        command = [sys.executable, str(path), *args]
    else:
        command = [sys.executable, "-c", _WITH_METHOD, str(path), method, *args]
    env = dict(os.environ)
    env.pop("PYTHONUNBUFFERED", None)
    with tempfile.TemporaryDirectory() as cwd:
        return subprocess.run(
            command,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )


def run_example(name: str, *args: str, method: str | None = None) -> None:
    """Run an example and print its stdout, then any stderr and a non-zero exit code."""
    result = example_result(name, *args, method=method)
    sys.stdout.write(result.stdout)
    if result.stderr:
        sys.stdout.write("--- stderr\n" + result.stderr)
    if result.returncode:
        sys.stdout.write(f"exit code {result.returncode}\n")


def run_cli(*args: str) -> None:
    """Run ``python -m safeproc ARGS`` as a reader would; print what it prints.

    It runs in this directory (``run`` finds the example programs here) at
    a terminal width of 80 columns, as help is shown on most terminals.
    Prints stdout, then any stderr under ``--- stderr``, then a non-zero
    exit status.
    """
    env = dict(os.environ, COLUMNS="80")
    env.pop("PYTHONUNBUFFERED", None)
    result = subprocess.run(
        [sys.executable, "-m", "safeproc", *args],
        cwd=HERE,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    sys.stdout.write(result.stdout)
    if result.stderr:
        sys.stdout.write("--- stderr\n" + result.stderr)
    if result.returncode:
        sys.stdout.write(f"exit code {result.returncode}\n")
