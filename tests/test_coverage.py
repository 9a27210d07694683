"""coverage.py measures the code safeproc children run: both namespaces,
every start method, safeproc's own classes and plain ones under install()."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from pathlib import Path

    from conftest import RunScript

pytest.importorskip("coverage")

COVERAGERC = """\
[run]
concurrency = multiprocessing
parallel = true
source = {source}
"""

# The marked line runs in the child only: it is covered only if coverage.py
# measured the child and saved its data.
CHILD = """
def child():
    mark("child", os.getpid())
    x = "only in the child"  # child-only
    return x

def parent():
    if HOW == "installed":
        safe_mp.install()
        proc_ctx = plain_mp.get_context(METHOD)
    else:
        proc_ctx = safe_mp.get_context(METHOD)
    p = proc_ctx.Process(target=child)
    p.start()
    p.join()
    mark("exitcode", p.exitcode)

if __name__ == "__main__":
    parent()
"""


def _child_only_line(source: str) -> int:
    return next(n for n, line in enumerate(source.splitlines(), 1) if "# child-only" in line)


def _covered_lines(tmp_path: Path) -> set[int]:
    for command in (["combine"], ["json", "-o", "coverage.json"]):
        subprocess.run(
            [sys.executable, "-m", "coverage", *command],
            cwd=tmp_path,
            check=True,
            capture_output=True,
            timeout=120,
        )
    report = json.loads((tmp_path / "coverage.json").read_text())
    files = report["files"]
    (name,) = [f for f in files if f.endswith("scenario.py")]
    return set(files[name]["executed_lines"])


@pytest.mark.parametrize("how", ["safe", "installed"])
def test_coverage_run_measures_children(run_script: RunScript, tmp_path: Path, how: str) -> None:
    """``coverage run`` with concurrency=multiprocessing measures the child's
    code for both backends and every start method."""
    (tmp_path / ".coveragerc").write_text(COVERAGERC.format(source=tmp_path))
    body = f"HOW = {how!r}\n" + CHILD
    run = run_script(body, args=("-m", "coverage", "run"))
    assert run.returncode == 0, run.explain()
    assert "exitcode 0" in run.marks, run.explain()
    script = (tmp_path / "scenario.py").read_text()
    assert _child_only_line(script) in _covered_lines(tmp_path), run.explain()


PYTEST_COV_TEST = """
import os, sys
import pytest

def child():
    x = "only in the child"  # child-only
    return x

@pytest.mark.parametrize("method", ["fork", "forkserver", "spawn"])
@pytest.mark.parametrize("backend", ["stdlib", "multiprocess"])
def test_children(backend, method):
    if backend == "stdlib":
        import safeproc.stdlib as mp
    else:
        import safeproc as mp
    p = mp.get_context(method).Process(target=child)
    p.start()
    p.join()
    assert p.exitcode == 0
"""


def test_pytest_cov_measures_children(tmp_path: Path) -> None:
    """``pytest --cov`` measures safeproc children of both backends and every
    start method (the data files are combined by pytest-cov)."""
    pytest.importorskip("pytest_cov")
    (tmp_path / ".coveragerc").write_text(COVERAGERC.format(source=tmp_path))
    (tmp_path / "test_children.py").write_text(PYTEST_COV_TEST)
    (tmp_path / "conftest.py").write_text("import sys, os\nsys.path.insert(0, os.getcwd())\n")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "no:cacheprovider",
            "-p",
            "pytest_cov",
            "--cov",
            "--cov-config=.coveragerc",
            "--cov-report=json:coverage.json",
            "-o",
            "addopts=",
            "--rootdir",
            str(tmp_path),
            "-c",
            "/dev/null",
            "test_children.py",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads((tmp_path / "coverage.json").read_text())
    (name,) = [f for f in report["files"] if f.endswith("test_children.py")]
    source = (tmp_path / "test_children.py").read_text()
    assert _child_only_line(source) in report["files"][name]["executed_lines"], result.stdout


ORDERS = """
import coverage
import multiprocessing.process

RC = {rc!r}

def child():
    atexit.register(mark, "atexit", os.getpid())
    x = "only in the child"  # child-only
    return x

def start_child():
    p = plain_mp.get_context(METHOD).Process(target=child)
    p.start()
    p.join()
    mark("exitcode", p.exitcode)

if __name__ == "__main__":
    if ORDER == "install-first":
        safe_mp.install()
    cov = coverage.Coverage(config_file=RC)
    cov.start()
    if ORDER == "coverage-first":
        safe_mp.install()
    start_child()
    safe_mp.uninstall()
    import coverage.multiproc
    kept = multiprocessing.process.BaseProcess._bootstrap
    mark("coverage-patch-kept", kept is coverage.multiproc.ProcessWithCoverage._bootstrap)
    cov.stop()
    cov.save()
"""


@pytest.mark.parametrize("order", ["install-first", "coverage-first"])
def test_install_and_coverage_patch_in_either_order(
    run_script: RunScript, tmp_path: Path, order: str
) -> None:
    """install() before or after coverage.py patches multiprocessing: children
    are both measured and cleaned up, and uninstall() keeps coverage's patch."""
    rc = tmp_path / ".coveragerc"
    rc.write_text(COVERAGERC.format(source=tmp_path))
    run = run_script(f"ORDER = {order!r}\n" + ORDERS.format(rc=str(rc)))
    assert run.returncode == 0, run.explain()
    assert [m.split()[0] for m in run.marks] == ["atexit", "exitcode", "coverage-patch-kept"]
    assert run.marks[1:] == ["exitcode 0", "coverage-patch-kept True"], run.explain()
    script = (tmp_path / "scenario.py").read_text()
    assert _child_only_line(script) in _covered_lines(tmp_path), run.explain()
