"""The docs' support table: where its numbers come from, their date, or
"not measured here" (docs/_ext/support_results.py and support_table.py).

The result files are real pytest JUnit XML, written by running pytest on a
small sample test module; the Sphinx tests build a one-page site with the
extension (skipped where Sphinx is not installed: ``nox -s docs`` runs them).
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
import textwrap
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

EXT = Path(__file__).resolve().parents[1] / "docs" / "_ext"
PYTHON = f"{sys.version_info.major}.{sys.version_info.minor}"

#: Two pass, one fails, one is an expected failure, one is skipped; the ids
#: put them in backend and start-method columns as the real suite's do.
SAMPLE = """
import pytest

@pytest.mark.parametrize("backend", ["stdlib", "multiprocess"])
def test_sample_passes(backend):
    pass

def test_sample_fails():
    raise AssertionError

@pytest.mark.xfail(strict=True)
def test_sample_expected():
    raise AssertionError

@pytest.mark.skip
def test_sample_skipped():
    pass
"""


@pytest.fixture(scope="module")
def support() -> Any:
    """Import support_results from docs/_ext by path."""
    spec = importlib.util.spec_from_file_location("support_results", EXT / "support_results.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    # dataclasses look their module up in sys.modules.
    sys.modules["support_results"] = module
    spec.loader.exec_module(module)
    return module


@dataclass(frozen=True)
class Measured:
    """A JUnit file of the sample module and the time span of its run."""

    path: Path
    before: datetime
    after: datetime


@pytest.fixture(scope="module")
def measured(tmp_path_factory: pytest.TempPathFactory) -> Measured:
    """Run pytest on the sample module, writing ``py<this python>.xml``."""
    work = tmp_path_factory.mktemp("sample")
    (work / "test_sample.py").write_text(SAMPLE)
    out = work / "results" / f"py{PYTHON}.xml"
    before = datetime.now(timezone.utc)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "no:cacheprovider",
            f"--junitxml={out}",
            "test_sample.py",
        ],
        cwd=work,
        capture_output=True,
        check=False,  # the sample fails on purpose
        timeout=120,
    )
    after = datetime.now(timezone.utc)
    assert out.is_file()
    return Measured(out, before, after)


def _date(text: str) -> datetime:
    found = re.search(r"run (\d{4}-\d\d-\d\d \d\d:\d\d) UTC", text)
    assert found, text
    return datetime.strptime(found.group(1), "%Y-%m-%d %H:%M").replace(tzinfo=timezone.utc)


def _within(when: datetime, measured: Measured) -> bool:
    """Whether *when* (to the minute) is the minute the sample run started in."""
    return measured.before.replace(second=0, microsecond=0) <= when <= measured.after


def test_no_results_anywhere_says_not_measured_here(support: Any, tmp_path: Path) -> None:
    """Without local or committed results no version is shown, and each says so."""
    local, committed = tmp_path / "local", tmp_path / "committed"
    assert support.gather(local, committed) == {}
    text = support.describe(PYTHON, None, local, committed)
    assert f"Python {PYTHON}: not measured here" in text
    assert str(local) in text
    assert str(committed) in text


def test_local_results_give_numbers_source_and_date(
    support: Any, measured: Measured, tmp_path: Path
) -> None:
    """A local result file is shown with its path, the date its run started, its counts."""
    by_python = support.gather(measured.path.parent, tmp_path / "committed")
    assert list(by_python) == [PYTHON]
    text = support.describe(PYTHON, by_python[PYTHON], measured.path.parent, tmp_path)
    assert text.startswith(f"Python {PYTHON}: a local test run ({measured.path}),")
    assert _within(_date(text), measured)
    counts = "5 tests, 2 passed, 1 failed, 1 expected failures, 1 skipped"
    assert text.endswith(counts)


def test_committed_results_fill_in_where_nothing_ran_here(
    support: Any, measured: Measured, tmp_path: Path
) -> None:
    """Committed results stand in for versions without local ones, never over them."""
    local, committed = tmp_path / "local", tmp_path / "committed"
    local.mkdir()
    committed.mkdir()
    xml = measured.path.read_text()
    (committed / f"py{PYTHON}.xml").write_text(xml)
    (committed / "py3.99.xml").write_text(xml)
    (local / "py3.99.xml").write_text(xml)
    by_python = support.gather(local, committed)
    assert sorted(by_python) == sorted([PYTHON, "3.99"])
    assert by_python[PYTHON].origin == "committed"
    assert by_python["3.99"].origin == "local"
    text = support.describe(PYTHON, by_python[PYTHON], local, committed)
    assert f"Python {PYTHON}: committed results (" in text
    assert str(committed / f"py{PYTHON}.xml") in text
    assert _within(_date(text), measured)


def test_a_timestamp_without_offset_is_not_called_utc(
    support: Any, measured: Measured, tmp_path: Path
) -> None:
    """A JUnit timestamp with no UTC offset is shown as written, without a time zone."""
    xml = measured.path.read_text()
    stamp = re.search(r'timestamp="([^"]+)"', xml)
    assert stamp
    naive = datetime.fromisoformat(stamp.group(1)).replace(tzinfo=None)
    (tmp_path / f"py{PYTHON}.xml").write_text(xml.replace(stamp.group(1), naive.isoformat()))
    results = support.read_results(tmp_path / f"py{PYTHON}.xml")
    assert results.timestamp == naive.strftime("%Y-%m-%d %H:%M")


def test_local_directory_is_the_environment_variable_else_build(
    support: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """SAFEPROC_TEST_RESULTS names the local results; unset, build/test-results does."""
    monkeypatch.setenv("SAFEPROC_TEST_RESULTS", str(tmp_path))
    assert support.local_results_directory() == tmp_path
    monkeypatch.delenv("SAFEPROC_TEST_RESULTS")
    assert support.local_results_directory() == EXT.parents[1] / "build" / "test-results"


def _build_page(tmp_path: Path, local: Path, committed: Path) -> str:
    """Build a one-page site holding the support table; return its text, on one line."""
    pytest.importorskip("sphinx")
    src, out = tmp_path / "src", tmp_path / "out"
    src.mkdir()
    (src / "conf.py").write_text(
        textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(EXT)!r})
        extensions = ["support_table"]
        support_table_results = {str(local)!r}
        support_table_committed = {str(committed)!r}
        """)
    )
    (src / "index.rst").write_text("Support\n=======\n\n.. support-table::\n")
    build = subprocess.run(
        [sys.executable, "-m", "sphinx", "-E", "-W", "-q", "-b", "xml", str(src), str(out)],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )
    assert build.returncode == 0, build.stderr
    # The docutils XML of the page: its text, unwrapped.
    root = ET.parse(out / "index.xml").getroot()  # noqa: S314 - our own build
    return " ".join("".join(root.itertext()).split())


def test_page_without_results_says_not_measured_here(tmp_path: Path, support: Any) -> None:
    """The table builds without any results, saying "not measured here" for each version."""
    page = _build_page(tmp_path, tmp_path / "none", tmp_path / "none-committed")
    for python in support.PYTHONS:
        assert f"Python {python}: not measured here" in page
    assert "✓" not in page


def test_page_with_results_shows_numbers_source_and_date(
    tmp_path: Path, support: Any, measured: Measured
) -> None:
    """A version with results shows its counts, its file and its run's date on the page."""
    flat = _build_page(tmp_path, measured.path.parent, tmp_path / "none-committed")
    assert f"Python {PYTHON}: a local test run ({measured.path})" in flat
    assert _within(_date(flat), measured)
    # Each column: its backend's passing case and the three with no backend,
    # once in the summary and once in the row of the sample's promise.
    assert support.promise_of("test_sample::test_sample_fails") == support.OTHER
    columns = len(support.METHODS) * len(support.BACKENDS)
    assert flat.count("✗ 1 of 4 failed") == 2 * columns
    others = [p for p in support.PYTHONS if p != PYTHON]
    for python in others:
        assert f"Python {python}: not measured here" in flat
