"""Developer and CI sessions: ``nox -s tests lint mypy docs bench``.

Python 3.9 to 3.13 live under pyenv on the project's machines, with only one
of them on PATH: every pyenv interpreter's ``bin`` is put on PATH here so nox
finds ``python3.X`` for each version present. A version that is missing is
reported and skipped (CI machines have all of them).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import nox

PYTHONS = ["3.9", "3.10", "3.11", "3.12", "3.13"]
ROOT = Path(__file__).parent

nox.options.sessions = ["tests", "lint", "mypy", "docs"]
nox.options.error_on_missing_interpreters = False
nox.options.reuse_existing_virtualenvs = True


def _pyenv_bins() -> list[str]:
    root = os.environ.get("PYENV_ROOT")
    if not root and shutil.which("pyenv"):
        root = subprocess.run(
            ["pyenv", "root"], capture_output=True, text=True, check=False
        ).stdout.strip()
    versions = Path(root or Path.home() / ".pyenv") / "versions"
    if not versions.is_dir():
        return []
    return [str(p / "bin") for p in sorted(versions.iterdir()) if (p / "bin").is_dir()]


os.environ["PATH"] = os.pathsep.join([os.environ.get("PATH", ""), *_pyenv_bins()])


@nox.session(python=PYTHONS)
def tests(session: nox.Session) -> None:
    """Run the test suite on one Python version."""
    session.install(".[tests]")
    session.run(
        "python",
        "-m",
        "pytest",
        "-p",
        "no:cacheprovider",
        *session.posargs,
        env={"PYTHONFAULTHANDLER": "1"},
    )


@nox.session(python="3.11")
def lint(session: nox.Session) -> None:
    """Ruff check and ruff format --check."""
    session.install("ruff")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session(python="3.11")
def mypy(session: nox.Session) -> None:
    """Mypy --strict over the package, the tests, the benchmarks and this file."""
    session.install(".[lint]")
    session.run("mypy")


@nox.session(python="3.11")
def docs(session: nox.Session) -> None:
    """Build the Sphinx site (nitpicky, warnings as errors) and run its doctests."""
    session.install(".[docs]")
    build = ROOT / "docs" / "_build"
    session.run(
        "sphinx-build", "-n", "-W", "--keep-going", "-b", "html", "docs", str(build / "html")
    )
    session.run(
        "sphinx-build", "-n", "-W", "--keep-going", "-b", "doctest", "docs", str(build / "doctest")
    )
