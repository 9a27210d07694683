"""The support table, generated from the test suite's own results.

``nox -s tests`` makes pytest write one JUnit XML file per Python version to
``build/test-results/py<version>.xml``. The ``.. support-table::`` directive
reads those files (or, where a version has none, the ones committed in
``docs/_data/test-results/``: see ``support_results.py``) and renders, per
Python version, one row per promise and one column per backend and start
method; a cell says how many of the tests that check that promise in that
combination passed.

How a test lands in a cell:

* its row is the first entry of :data:`PROMISES` one of whose patterns
  matches its module or function name (see there). A test no pattern
  matches goes to the "Other tests" row: new tests are never dropped;
* its columns come from its pytest id: ``[stdlib-fork]`` puts it in the
  stdlib/fork column. A test without a backend (or start method) in its id
  does not depend on it and counts in every backend (or start method)
  column of its Python version.

Nothing in the table is written by hand. Above it, one line per Python
version says where its numbers come from and when they were measured; a
version without results says "not measured here", and the build goes on.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from docutils import nodes
from sphinx.util.docutils import SphinxDirective
from support_results import (
    BACKENDS,
    COMMITTED,
    METHODS,
    NOT_MEASURED,
    OTHER,
    PROMISES,
    PYTHONS,
    Case,
    Results,
    describe,
    gather,
    local_results_directory,
    promise_of,
)

if TYPE_CHECKING:
    from sphinx.application import Sphinx
    from sphinx.environment import BuildEnvironment

__all__ = ["setup"]

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
        local = Path(self.config.support_table_results)
        committed = Path(self.config.support_table_committed)
        by_python = gather(local, committed)
        for directory in (local, committed):
            self.env.note_dependency(str(directory))
        for results in by_python.values():
            self.env.note_dependency(str(results.path))
        docs = getattr(self.env, "support_table_docs", set())
        docs.add(self.env.docname)
        self.env.support_table_docs = docs  # type: ignore[attr-defined]
        pythons = sorted(
            set(PYTHONS) | set(by_python),
            key=lambda v: tuple(int(x) for x in v.split(".") if x.isdigit()),
        )
        out: list[nodes.Node] = []
        out.append(self._sources(pythons, by_python, local, committed))
        out.append(self._summary(pythons, by_python))
        for python in pythons:
            results = by_python.get(python)
            section = nodes.section(ids=[f"support-python-{python.replace('.', '-')}"])
            section += nodes.title(text=f"Python {python}")
            if results is None:
                section += nodes.paragraph(
                    "",
                    f"{NOT_MEASURED.capitalize()}: no test results for Python {python} "
                    "were found; ",
                    nodes.literal(text=f"nox -s tests-{python}"),
                    nodes.Text(" measures it."),
                )
            else:
                section += self._promise_table(results)
            out.append(section)
        out.append(self._mapping(list(by_python.values())))
        return out

    def _sources(
        self, pythons: list[str], by_python: dict[str, Results], local: Path, committed: Path
    ) -> nodes.Node:
        items = nodes.bullet_list()
        for python in pythons:
            text = describe(python, by_python.get(python), local, committed)
            items += nodes.list_item("", nodes.paragraph(text=text))
        return items

    def _summary(self, pythons: list[str], by_python: dict[str, Results]) -> nodes.Node:
        headers = ["Python", *(f"{b} {m}" for b, m in _columns())]
        rows: list[list[nodes.Node | str]] = []
        for python in pythons:
            results = by_python.get(python)
            row: list[nodes.Node | str] = [python]
            for backend, method in _columns():
                if results is None:
                    row.append(nodes.paragraph(text=NOT_MEASURED, classes=["support-none"]))
                    continue
                cases = results.cases
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
        if not all_results:
            section += nodes.paragraph(text=f"No results: {NOT_MEASURED}.")
            return section
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
        "support_table_results", str(local_results_directory()), "env", types=[str]
    )
    app.add_config_value("support_table_committed", str(COMMITTED), "env", types=[str])
    app.add_directive("support-table", SupportTable)
    app.connect("env-get-outdated", _always_reread)
    app.connect("env-purge-doc", _purge)
    app.add_css_file("support.css")
    return {"version": "1", "parallel_read_safe": False, "parallel_write_safe": True}
