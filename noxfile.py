"""Developer and CI sessions: ``nox -s tests lint mypy docs bench``.

Python 3.10 to 3.13 live under pyenv on the project's machines, with only one
of them on PATH: every pyenv interpreter's ``bin`` is put on PATH here so nox
finds ``python3.X`` for each version present. 3.14 and 3.15 are not in
pyenv: when either is missing from PATH and nox runs as root, this file
provisions both with ``tools/debian-python`` (Debian unstable's builds, with
their test package, into ``/opt/debian-python``; about 30 seconds once, a
no-op afterwards; ``SAFEPROC_PROVISION=0`` turns it off). A version still
missing is reported and its sessions skipped.
"""

from __future__ import annotations

import os
import random
import shutil
import subprocess
from pathlib import Path

import nox

PYTHONS = ["3.10", "3.11", "3.12", "3.13", "3.14", "3.15"]
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


#: Where tools/debian-python puts the Pythons pyenv does not have.
DEBIAN_PYTHONS = Path("/opt/debian-python/bin")
#: The versions tools/debian-python provides.
PROVISIONED = ["3.14", "3.15"]


def _provision() -> None:
    """Fetch 3.14 and 3.15 if missing and allowed (root, apt, not turned off)."""
    if all(shutil.which(f"python{v}") for v in PROVISIONED):
        return
    if os.environ.get("SAFEPROC_PROVISION") == "0":
        return
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        print(  # noqa: T201 - nox's own output
            f"noxfile: python{' and python'.join(PROVISIONED)} not on PATH and not "
            "root with apt-get: their sessions are skipped (put them on PATH, or "
            "run as root to have tools/debian-python fetch them)"
        )
        return
    subprocess.run(
        ["bash", str(ROOT / "tools" / "debian-python"), "--testsuite", *PROVISIONED],
        check=True,
    )


os.environ["PATH"] = os.pathsep.join(
    [os.environ.get("PATH", ""), *_pyenv_bins(), str(DEBIAN_PYTHONS)]
)
_provision()


#: The never-worse corpus (tests/test_never_worse.py) compares each program's
#: plain run with each way to turn safeproc on: the import swap, install()
#: and ``python -m safeproc run``, all three on every Python (about 30 s a
#: version more than the swap alone). The dedicated never-worse tests and
#: the corpus under ``-W error`` run all three on 3.11 and the newest Python
#: and the import swap alone on the others, which halves their cost there
#: (install() and run patch the plain library the same way on every version;
#: the versions' differences show in the swap's runs).
FULL_CORPUS_PYTHONS = ("3.11", PYTHONS[-1])


def _safe_modes(python: object) -> str:
    return "swap,install,run" if python in FULL_CORPUS_PYTHONS else "swap"


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
        # Read by the docs' support table (docs/_ext/support_table.py).
        f"--junitxml={ROOT / 'build' / 'test-results' / f'py{session.python}.xml'}",
        # Most tests wait on children (deadlines, sleeps): four workers
        # overlap the waiting on two cores.
        "-n",
        "4",
        "-m",
        "not clients",
        *session.posargs,
        env={"PYTHONFAULTHANDLER": "1", "SAFEPROC_SAFE_MODES": _safe_modes(session.python)},
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
def build(session: nox.Session) -> None:
    """Build the sdist and the wheel into ``dist/``, check both, test the sdist.

    ``twine check --strict``: the metadata PyPI would get, the README as it
    renders there. ``check-wheel-contents --package safeproc``: the wheel
    holds the package and nothing else. Then the sdist is unpacked, installed
    with its ``tests`` extra and a few of its tests run from it, against the
    installed copy: it must carry what its tests need.
    """
    session.install("build", "twine", "check-wheel-contents")
    dist = ROOT / "dist"
    shutil.rmtree(dist, ignore_errors=True)
    session.run("python", "-m", "build", "--outdir", str(dist), str(ROOT))
    (sdist,) = dist.glob("*.tar.gz")
    (wheel,) = dist.glob("*.whl")
    session.run("twine", "check", "--strict", str(sdist), str(wheel))
    session.run("check-wheel-contents", "--package", str(ROOT / "safeproc"), str(wheel))
    unpacked = Path(session.create_tmp()) / "sdist"
    shutil.rmtree(unpacked, ignore_errors=True)
    unpacked.mkdir()
    session.run("tar", "-xzf", str(sdist), "-C", str(unpacked), external=True)
    (source,) = unpacked.iterdir()
    session.install(f"{sdist}[tests]")
    # The session is reused: make sure this sdist, not an earlier one, is in.
    session.install("--no-deps", "--force-reinstall", str(sdist))
    session.chdir(source)
    # -P: the unpacked safeproc/ must not shadow the installed one.
    session.run(
        "python",
        *("-P", "-m", "pytest", "-p", "no:cacheprovider", "-q"),
        *("tests/test_api.py", "tests/test_policy.py", "tests/test_support_table.py"),
    )


@nox.session(python="3.11")
def docs(session: nox.Session) -> None:
    """Build the Sphinx site (nitpicky, warnings as errors) and run its doctests.

    The support table shows the results of ``nox -s tests`` where there are
    some, else those committed in docs/_data/test-results/, else says "not
    measured here" (docs/_ext/support_results.py): a clean clone builds.
    """
    # tests: the support table's own tests need Sphinx, so they run here.
    session.install(".[docs,tests]")
    session.run(
        "python", "-m", "pytest", "-p", "no:cacheprovider", "-q", "tests/test_support_table.py"
    )
    build = ROOT / "docs" / "_build"
    # -E: the API pages and the support table are generated from the package
    # and the test results, which Sphinx does not track as sources.
    session.run(
        "sphinx-build", "-E", "-n", "-W", "--keep-going", "-b", "html", "docs", str(build / "html")
    )
    session.run(
        "sphinx-build",
        *("-E", "-n", "-W", "--keep-going", "-b", "doctest", "docs", str(build / "doctest")),
    )
    session.run("python", "docs/run_readme_examples.py")


@nox.session(python=PYTHONS)
def conformance(session: nox.Session) -> None:
    """Run the backends' own test suites, plain and under ``safeproc.install()``.

    Runs CPython's ``test._test_multiprocessing`` and ``multiprocess.tests``
    ("processes" variants) and fails if a test passes plain but not
    installed. ``nox -s conformance -- --methods fork`` picks start methods.
    Skipped where the interpreter has no ``test`` package.
    """
    has_suite = session.run(
        "python",
        "-c",
        "import importlib.util as u; print(u.find_spec('test._test_multiprocessing') is not None)",
        silent=True,
    )
    if not isinstance(has_suite, str) or has_suite.strip() != "True":
        session.skip("this Python has no test package (test._test_multiprocessing)")
    session.install(".")
    out = ROOT / "build" / "conformance" / str(session.python)
    session.run("python", "conformance/run.py", "all", "--out", str(out), *session.posargs)


@nox.session(python=PYTHONS)
def bench(session: nox.Session) -> None:
    """Benchmarks: ``python -m safeproc bench`` (verdicts), then the pyperf suite.

    Results go to ``bench-results/``: ``bench-<python>.json`` from the
    interleaved run, ``pyperf-<python>-heap<N>.json`` to compare over time
    with ``python -m pyperf compare_to``. Arguments after ``--`` go to
    ``python -m safeproc bench`` (``nox -s bench -- --full``).
    """
    session.install(".[bench]")
    out = ROOT / "bench-results"
    out.mkdir(exist_ok=True)
    session.run(
        "python",
        "-m",
        "safeproc",
        "bench",
        "--json",
        str(out / f"bench-{session.python}.json"),
        *session.posargs,
    )
    for heap in (0, 1_000_000):
        result = out / f"pyperf-{session.python}-heap{heap}.json"
        result.unlink(missing_ok=True)  # pyperf refuses to overwrite
        # 4 worker processes of 3 values each: about 10 minutes a Python on 2 cores.
        session.run(
            "python",
            "benchmarks/bench_exit.py",
            *("--processes", "4", "--values", "3", "--heap", str(heap), "-o", str(result)),
        )


@nox.session(python="3.11")
def clients(session: nox.Session) -> None:
    """Run the real-client tests: torch DataLoader and dask.distributed workers."""
    # torch==2.13.0 is the CPU-only wheel here; an unpinned torch would pull
    # the multi-gigabyte CUDA build.
    # numpy too: torch warns at import without it, and warnings are errors.
    session.install(".[tests]", "torch==2.13.0", "numpy", "distributed")
    session.run(
        "python",
        "-m",
        "pytest",
        "-p",
        "no:cacheprovider",
        "-m",
        "clients",
        "tests/test_clients.py",
        *session.posargs,
    )


@nox.session(python="3.11")
def engines(session: nox.Session) -> None:
    """Run the engine tests: Celery prefork workers on Redis, dask nanny clusters.

    Needs Debian's ``redis-server`` on PATH (``.ci/run`` installs it); the
    tests start and stop their own on a free localhost port.
    """
    session.install(".[tests]", "celery", "redis", "dask[distributed]", "opentelemetry-sdk")
    session.run(
        "python",
        *("-m", "pytest", "-p", "no:cacheprovider", "-m", "engines"),
        "tests/test_engines.py",
        *session.posargs,
        env={"PYTHONFAULTHANDLER": "1"},
    )


@nox.session(python="3.11")
def faults(session: nox.Session) -> None:
    """Seeded fault injection, then the never-worse corpus under faults.

    1,000 random child runs, checked from outside; then 60 programs of the
    never-worse corpus under drawn policies and cleanup faults, each run
    plain and safe and compared.

    The seed (one for both) is printed first; ``SAFEPROC_FAULTS_SEED=N``
    reproduces a run. Options after ``--`` go to ``faults/run_faults.py``
    (``-- --seed N --only I`` one case, ``-- --runs 5000`` more); a corpus
    case reruns alone with ``python faults/corpus_faults.py --seed N --only I``.
    Another Python: ``nox -s faults --force-python 3.13``.
    """
    session.install(".[tests]")  # the corpus runner reads tests/conftest.py
    seed = os.environ.get("SAFEPROC_FAULTS_SEED") or str(random.SystemRandom().randrange(2**32))
    env = {"SAFEPROC_FAULTS_SEED": seed}
    session.run("python", "faults/run_faults.py", *session.posargs, env=env)
    session.run("python", "faults/corpus_faults.py", env=env)


@nox.session(python="3.11")
def stress(session: nox.Session) -> None:
    """Pool terminate() stress: 200 rounds per backend and start method.

    ``SAFEPROC_STRESS_ROUNDS`` changes the number of rounds; another Python:
    ``nox -s stress --force-python 3.13``.
    """
    session.install(".[tests]")
    session.run(
        "python",
        *("-m", "pytest", "-p", "no:cacheprovider", "-o", "faulthandler_timeout=0"),
        "faults/test_pool_stress.py",
        *session.posargs,
    )
