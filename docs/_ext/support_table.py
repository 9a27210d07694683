"""The support table, generated from the test suite's own results.

``nox -s tests`` makes pytest write one JUnit XML file per Python version to
``build/test-results/py<version>.xml``. The ``.. support-table::`` directive
reads every such file present and renders, per Python version, one row per
promise and one column per backend and start method; a cell says how many of
the tests that check that promise in that combination passed.

How a test lands in a cell:

* its row is the first entry of :data:`PROMISES` one of whose patterns
  matches its module or function name (see there). A test no pattern
  matches goes to the "Other tests" row: new tests are never dropped;
* its columns come from its pytest id: ``[stdlib-fork]`` puts it in the
  stdlib/fork column. A test without a backend (or start method) in its id
  does not depend on it and counts in every backend (or start method)
  column of its Python version.

Nothing in the table is written by hand. Without any result file the build
fails and says to run the tests first.
"""

from __future__ import annotations

import fnmatch
import os
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from docutils import nodes
from sphinx.errors import SphinxError
from sphinx.util.docutils import SphinxDirective

if TYPE_CHECKING:
    from sphinx.application import Sphinx
    from sphinx.environment import BuildEnvironment

__all__ = ["PROMISES", "setup"]

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
        return f"{self.module}::{self.function}"


@dataclass
class Results:
    """One ``py<version>.xml`` file."""

    python: str
    path: Path
    timestamp: str
    cases: list[Case] = field(default_factory=list)


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


def read_results(path: Path) -> Results:
    """Parse one pytest JUnit XML file."""
    python = path.stem.removeprefix("py")
    root = ET.parse(path).getroot()  # noqa: S314 - our own test output
    suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
    timestamp = suites[0].get("timestamp", "") if suites else ""
    results = Results(python=python, path=path, timestamp=timestamp[:16].replace("T", " "))
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

    def version_key(r: Results) -> tuple[int, ...]:
        return tuple(int(x) for x in r.python.split(".") if x.isdigit())

    return sorted(found, key=version_key)


# -- rendering ------------------------------------------------------------------


def _table(
    headers: list[str], rows: list[list[nodes.Node | str]], widths: list[int]
) -> nodes.table:
    table = nodes.table(classes=["support-table"])
    group = nodes.tgroup(cols=len(headers))
    table += group
    for width in widths:
        group += nodes.colspec(colwidth=width)
    head = nodes.thead()
    group += head
    head_row = nodes.row()
    for text in headers:
        head_row += nodes.entry("", nodes.paragraph(text=text))
    head += head_row
    body = nodes.tbody()
    group += body
    for cells in rows:
        row = nodes.row()
        for cell in cells:
            entry = nodes.entry()
            entry += cell if isinstance(cell, nodes.Node) else nodes.paragraph(text=cell)
            row += entry
        body += row
    return table


def _cell(outcomes: list[str]) -> nodes.paragraph:
    if not outcomes:
        return nodes.paragraph(text="—", classes=["support-none"])
    passed = outcomes.count("passed")
    failed = outcomes.count("failed")
    xfailed = outcomes.count("xfailed")
    if failed:
        text, cls = f"✗ {failed} of {len(outcomes)} failed", "support-fail"
    elif passed:
        text, cls = f"✓ {passed}", "support-pass"
        if xfailed:
            text += f", {xfailed} expected failure{'s' if xfailed > 1 else ''}"
    elif xfailed:
        text, cls = f"expected failures ({xfailed})", "support-xfail"
    else:
        text, cls = f"skipped ({len(outcomes)})", "support-skip"
    return nodes.paragraph(text=text, classes=[cls])


def _columns() -> list[tuple[str, str]]:
    return [(b, m) for b in BACKENDS for m in METHODS]


def _label(text: str) -> nodes.paragraph:
    """Return a row label, its ``double backquotes`` made literals."""
    para = nodes.paragraph()
    for i, part in enumerate(text.split("``")):
        if part:
            para += nodes.literal(text=part) if i % 2 else nodes.Text(part)
    return para


def _in_column(case: Case, backend: str, method: str) -> bool:
    return case.backend in (None, backend) and case.method in (None, method)


class SupportTable(SphinxDirective):
    """``.. support-table::``: the promise x Python x backend x method table."""

    has_content = False

    def run(self) -> list[nodes.Node]:
        directory = Path(self.config.support_table_results)
        all_results = find_results(directory)
        self.env.note_dependency(str(directory))
        for results in all_results:
            self.env.note_dependency(str(results.path))
        docs = getattr(self.env, "support_table_docs", set())
        docs.add(self.env.docname)
        self.env.support_table_docs = docs  # type: ignore[attr-defined]
        if not all_results:
            raise self.error(_missing_message(directory))
        by_python = {r.python: r for r in all_results}
        pythons = sorted(
            set(PYTHONS) | set(by_python),
            key=lambda v: tuple(int(x) for x in v.split(".") if x.isdigit()),
        )
        out: list[nodes.Node] = []
        out.append(self._sources(pythons, by_python))
        out.append(self._summary(pythons, by_python))
        for python in pythons:
            results = by_python.get(python)
            section = nodes.section(ids=[f"support-python-{python.replace('.', '-')}"])
            section += nodes.title(text=f"Python {python}")
            if results is None:
                section += nodes.paragraph(
                    text=f"No results: no Python {python} was present at the last test run."
                )
            else:
                section += self._promise_table(results)
            out.append(section)
        out.append(self._mapping(all_results))
        return out

    def _sources(self, pythons: list[str], by_python: dict[str, Results]) -> nodes.Node:
        items = nodes.bullet_list()
        for python in pythons:
            results = by_python.get(python)
            if results is None:
                text = f"Python {python}: not run"
            else:
                counts = [c.outcome for c in results.cases]
                text = (
                    f"Python {python}: {results.path.name}, run {results.timestamp} UTC, "
                    f"{len(counts)} tests: {counts.count('passed')} passed, "
                    f"{counts.count('failed')} failed, {counts.count('xfailed')} expected "
                    f"failures, {counts.count('skipped')} skipped"
                )
            items += nodes.list_item("", nodes.paragraph(text=text))
        return items

    def _summary(self, pythons: list[str], by_python: dict[str, Results]) -> nodes.Node:
        headers = ["Python", *(f"{b} {m}" for b, m in _columns())]
        rows: list[list[nodes.Node | str]] = []
        for python in pythons:
            results = by_python.get(python)
            row: list[nodes.Node | str] = [python]
            for backend, method in _columns():
                cases = results.cases if results else []
                row.append(_cell([c.outcome for c in cases if _in_column(c, backend, method)]))
            rows.append(row)
        return _table(headers, rows, [8] + [10] * len(_columns()))

    def _promise_table(self, results: Results) -> nodes.Node:
        headers = ["Promise", *(f"{b} {m}" for b, m in _columns())]
        labels = [label for label, _ in PROMISES] + [OTHER]
        rows: list[list[nodes.Node | str]] = []
        for label in labels:
            cases = [c for c in results.cases if promise_of(c.key) == label]
            if not cases and label == OTHER:
                continue
            row: list[nodes.Node | str] = [_label(label)]
            for backend, method in _columns():
                row.append(_cell([c.outcome for c in cases if _in_column(c, backend, method)]))
            rows.append(row)
        return _table(headers, rows, [30] + [10] * len(_columns()))

    def _mapping(self, all_results: list[Results]) -> nodes.Node:
        section = nodes.section(ids=["support-mapping"])
        section += nodes.title(text="Which tests check which promise")
        section += nodes.paragraph(
            text=(
                "Every test function found in the results, by row. The mapping is "
                "PROMISES in docs/_ext/support_table.py; tests it does not match are "
                f"listed under {OTHER!r}."
            )
        )
        keys = sorted({c.key for r in all_results for c in r.cases})
        listing = nodes.definition_list()
        for label in [label for label, _ in PROMISES] + [OTHER]:
            mine = [k for k in keys if promise_of(k) == label]
            if not mine:
                continue
            item = nodes.definition_list_item()
            item += nodes.term("", "", *_label(label).children)
            tests = nodes.bullet_list()
            for key in mine:
                tests += nodes.list_item("", nodes.paragraph("", "", nodes.literal(text=key)))
            item += nodes.definition("", tests)
            listing += item
        section += listing
        return section


def default_results_directory() -> Path:
    """Return ``$SAFEPROC_TEST_RESULTS``, else ``build/test-results`` of the checkout."""
    default = Path(__file__).resolve().parents[2] / "build" / "test-results"
    return Path(os.environ.get("SAFEPROC_TEST_RESULTS", str(default)))


def missing_results(directory: Path) -> str | None:
    """Return why the table cannot be built from *directory*, or None if it can."""
    if list(directory.glob("py*.xml")):
        return None
    return _missing_message(directory)


def _missing_message(directory: Path) -> str:
    return (
        f"safeproc docs: no test results in {directory} (py<version>.xml). "
        "The support table is generated from them: run `nox -s tests` first "
        "(CI runs the tests before the docs)."
    )


class MissingTestResultsError(SphinxError):
    """No ``py<version>.xml`` to build the support table from."""

    category = "safeproc docs: no test results"


def _check_results(app: Sphinx) -> None:
    message = missing_results(Path(app.config.support_table_results))
    if message is not None:
        raise MissingTestResultsError(message)


def _always_reread(
    app: Sphinx,  # noqa: ARG001 - event signature
    env: BuildEnvironment,
    added: set[str],  # noqa: ARG001
    changed: set[str],  # noqa: ARG001
    removed: set[str],  # noqa: ARG001
) -> list[str]:
    # New result files do not touch the page's source: re-read it every build.
    return sorted(getattr(env, "support_table_docs", set()))


def _purge(app: Sphinx, env: BuildEnvironment, docname: str) -> None:  # noqa: ARG001
    getattr(env, "support_table_docs", set()).discard(docname)


def setup(app: Sphinx) -> dict[str, Any]:
    """Register the directive and the results location."""
    app.add_config_value(
        "support_table_results", str(default_results_directory()), "env", types=[str]
    )
    app.add_directive("support-table", SupportTable)
    app.connect("builder-inited", _check_results)
    app.connect("env-get-outdated", _always_reread)
    app.connect("env-purge-doc", _purge)
    app.add_css_file("support.css")
    return {"version": "1", "parallel_read_safe": False, "parallel_write_safe": True}
