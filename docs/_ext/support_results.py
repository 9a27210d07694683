"""The support table's data: which test results it shows, and what they say.

No Sphinx here (``support_table.py`` renders): the tests import this module
without the docs' dependencies.

Where the numbers come from, for each Python version, the first of:

1. a local test run: ``py<version>.xml`` in ``$SAFEPROC_TEST_RESULTS`` if
   set, else in ``build/test-results/`` (``nox -s tests`` writes there; CI
   runs it before the docs, so CI's table is always its own);
2. results committed in ``docs/_data/test-results/``, where a release
   copies its ``build/test-results/py*.xml``, so that a site built
   without a test run (Read the Docs, a clean clone) shows them;
3. none: the table says "not measured here" for that version.

The table says which one each version's numbers come from and when that run
started (the JUnit XML's ``timestamp``).
"""

from __future__ import annotations

import fnmatch
import os
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

__all__ = [
    "BACKENDS",
    "COMMITTED",
    "METHODS",
    "NOT_MEASURED",
    "OTHER",
    "PROMISES",
    "PYTHONS",
    "Case",
    "Results",
    "describe",
    "find_results",
    "gather",
    "local_results_directory",
    "promise_of",
    "read_results",
]

#: The checkout (or unpacked sdist) this file is in.
ROOT = Path(__file__).resolve().parents[2]
#: Results committed with the sources: the fallback where nothing ran here.
COMMITTED = ROOT / "docs" / "_data" / "test-results"
#: What the table says for a Python version without any results.
NOT_MEASURED = "not measured here"

PYTHONS = ("3.10", "3.11", "3.12", "3.13", "3.14", "3.15")
BACKENDS = ("stdlib", "multiprocess")
METHODS = ("fork", "forkserver", "spawn")

#: (row label, patterns). Module patterns of every row are tried before
#: the other patterns; within each pass the first match wins, so the
#: specific rows come before the general ones. This is the only place that maps tests to
#: promises. A pattern is ``module:<glob>`` (the test module, without
#: ``tests.``), ``test:<glob>`` (the test function's name), or a word that
#: must equal one of the ``_``-separated words of the function's name
#: (``word*`` for a prefix).
PROMISES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("Seed program: ``del`` printed once, by the child", ("seed",)),
    ("Baseline: the plain library loses what safeproc keeps", ("test:test_plain_*", "baseline")),
    (
        "``CleanupPolicy``: validation, defaults, precedence, reaches the child",
        ("module:test_policy", "policy", "policies"),
    ),
    (
        "``install()`` and ``python -m safeproc run``",
        ("module:test_install*", "module:test_run*", "module:test_cli", "install*", "uninstall"),
    ),
    ("coverage.py measures children", ("module:test_coverage*", "coverage")),
    (
        "Deadline: a hung cleanup ends the child (``timeout``)",
        ("module:test_deadline*", "deadline", "hang*", "hung", "timeout"),
    ),
    (
        "``sigterm='cleanup'``: terminate() runs cleanup, exit code -15",
        ("module:test_termination*", "module:test_sigterm*", "sigterm", "terminat*", "escalat*"),
    ),
    ("Cleanup report delivered to the parent", ("module:test_report*", "report", "reports")),
    (
        "Real clients (OpenTelemetry, torch, dask)",
        (
            "module:test_integration*",
            "module:test_clients*",
            "otel",
            "opentelemetry",
            "torch",
            "dask",
            "dataloader",
        ),
    ),
    ("``ProcessPoolExecutor`` workers finalize what they created", ("executor*",)),
    (
        "Pool workers finalize what they created",
        ("module:test_pool*", "pool", "pools", "maxtasksperchild", "worker", "workers"),
    ),
    ("Nothing inherited is finalized in the child", ("inherited", "twice")),
    ("Nested children finalize only their own", ("nested",)),
    ("Cleanup errors are printed, never change the exit code", ("error", "errors")),
    ("Exit codes equal the plain library's", ("test:test_exit_code*", "exitcode")),
    (
        "stdout/stderr: cleanup output kept, never doubled, no hang",
        ("module:test_stdio*", "stdio", "stdout", "stderr", "output"),
    ),
    ("Logging handlers flushed and closed", ("module:test_logging*", "logging", "handler*", "log")),
    ("Buffered files flushed", ("file", "files")),
    ("Temporary directories made in the child are removed", ("temporary", "tempdir")),
    ("Threads the child started are joined first", ("thread", "threads")),
    (
        "Child cycles (``__del__``), atexit handlers, finalizers run once",
        ("cycle*", "atexit", "finaliz*", "del"),
    ),
    (
        "Drop-in API: namespaces, contexts, pickling, process names",
        ("module:test_api", "namespace", "pickle", "context", "version"),
    ),
    (
        "This table: its sources, their dates, or 'not measured here'",
        ("module:test_support_table",),
    ),
)
OTHER = "Other tests"

_PARAMS = re.compile(r"^(?P<func>[^\[]+)(?:\[(?P<params>.*)\])?$")


@dataclass
class Case:
    """One test case of one result file."""

    module: str
    function: str
    backend: str | None
    method: str | None
    outcome: str  # passed, failed, xfailed (expected failure), skipped

    @property
    def key(self) -> str:
        """``module::function``, what :func:`promise_of` maps."""
        return f"{self.module}::{self.function}"


@dataclass
class Results:
    """One ``py<version>.xml`` file."""

    python: str
    path: Path
    #: When the run started, as the table shows it ("2026-12-02 16:30 UTC").
    timestamp: str
    cases: list[Case] = field(default_factory=list)
    #: Where the file was found: "local" or "committed" (see :func:`gather`).
    origin: str = "local"


def _matches(pattern: str, module: str, function: str) -> bool:
    if pattern.startswith("module:"):
        return fnmatch.fnmatchcase(module, pattern.removeprefix("module:"))
    if pattern.startswith("test:"):
        return fnmatch.fnmatchcase(function, pattern.removeprefix("test:"))
    return any(fnmatch.fnmatchcase(word, pattern) for word in function.split("_"))


def promise_of(key: str) -> str:
    """Return the row a test called ``module::function`` belongs to."""
    module, _, function = key.lower().partition("::")
    # A module pattern says more than a word in a name: it is tried first.
    for wanted in (True, False):
        for label, patterns in PROMISES:
            mine = [p for p in patterns if p.startswith("module:") == wanted]
            if any(_matches(p, module, function) for p in mine):
                return label
    return OTHER


def _outcome(testcase: ET.Element) -> str:
    tags = {child.tag for child in testcase}
    if tags & {"failure", "error"}:
        return "failed"
    skipped = testcase.find("skipped")
    if skipped is not None:
        return "xfailed" if skipped.get("type") == "pytest.xfail" else "skipped"
    return "passed"


def _when(timestamp: str) -> str:
    """Return a JUnit ``timestamp`` to the minute, in UTC where it has an offset."""
    try:
        when = datetime.fromisoformat(timestamp)
    except ValueError:
        return "at an unknown date"
    if when.tzinfo is None:  # older pytest: the local time of the run's machine
        return when.strftime("%Y-%m-%d %H:%M")
    return when.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def read_results(path: Path) -> Results:
    """Parse one pytest JUnit XML file."""
    python = path.stem.removeprefix("py")
    root = ET.parse(path).getroot()  # noqa: S314 - our own test output
    suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
    timestamp = suites[0].get("timestamp", "") if suites else ""
    results = Results(python=python, path=path, timestamp=_when(timestamp))
    for testcase in root.iter("testcase"):
        classname = testcase.get("classname", "")
        module = classname.removeprefix("tests.")
        match = _PARAMS.match(testcase.get("name", ""))
        if match is None:
            continue
        tokens = set((match.group("params") or "").split("-"))
        backends = [b for b in BACKENDS if b in tokens]
        methods = [m for m in METHODS if m in tokens]
        results.cases.append(
            Case(
                module=module,
                function=match.group("func"),
                backend=backends[0] if backends else None,
                method=methods[0] if methods else None,
                outcome=_outcome(testcase),
            )
        )
    return results


def find_results(directory: Path) -> list[Results]:
    """Read every ``py*.xml`` in *directory*, ordered by Python version."""
    found = [read_results(p) for p in directory.glob("py*.xml")]
    return sorted(found, key=lambda r: _version_key(r.python))


def _version_key(python: str) -> tuple[int, ...]:
    return tuple(int(x) for x in python.split(".") if x.isdigit())


def local_results_directory() -> Path:
    """Return ``$SAFEPROC_TEST_RESULTS``, else ``build/test-results`` of the checkout."""
    return Path(os.environ.get("SAFEPROC_TEST_RESULTS", str(ROOT / "build" / "test-results")))


def gather(local: Path, committed: Path = COMMITTED) -> dict[str, Results]:
    """Return the results to show, by Python version, local before committed.

    A version with a ``py<version>.xml`` in *local* is shown from it; else
    from *committed*; a version in neither is absent (not measured here).
    """
    chosen: dict[str, Results] = {}
    for origin, directory in (("local", local), ("committed", committed)):
        for results in find_results(directory):
            if results.python not in chosen:
                results.origin = origin
                chosen[results.python] = results
    return dict(sorted(chosen.items(), key=lambda item: _version_key(item[0])))


def _shown(path: Path) -> str:
    """Return *path* relative to the checkout where it is inside it."""
    try:
        return str(path.resolve().relative_to(ROOT))
    except ValueError:
        return str(path)


def describe(python: str, results: Results | None, local: Path, committed: Path = COMMITTED) -> str:
    """Say where the numbers for *python* come from, when they were measured, and the totals."""
    if results is None:
        return (
            f"Python {python}: {NOT_MEASURED} (no py{python}.xml in {_shown(local)}/ "
            f"or {_shown(committed)}/)"
        )
    where = "a local test run" if results.origin == "local" else "committed results"
    outcomes = [c.outcome for c in results.cases]
    return (
        f"Python {python}: {where} ({_shown(results.path)}), run {results.timestamp}: "
        f"{len(outcomes)} tests, {outcomes.count('passed')} passed, "
        f"{outcomes.count('failed')} failed, {outcomes.count('xfailed')} expected "
        f"failures, {outcomes.count('skipped')} skipped"
    )
