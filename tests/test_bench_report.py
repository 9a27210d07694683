"""The bench's report: readable in a terminal, one glance line per target, honest JSON."""

from __future__ import annotations

import re
import sys
import types
from typing import TYPE_CHECKING, Any

from safeproc._bench import uncompiled_modules
from safeproc._bench._analysis import analyse
from safeproc._bench._config import BACKENDS, BIG_HEAP
from safeproc._bench._render import WIDTH, render, to_json
from safeproc._bench._stats import summarize

if TYPE_CHECKING:
    from pathlib import Path

    import pytest

STEPS = ("start", "atexit", "finalizers", "gc", "logging", "files", "stdio")


def _samples(median: float) -> dict[str, Any]:
    return summarize([median * f for f in (0.9, 0.95, 1.0, 1.05, 1.1)])


def _heap_cell(methods: tuple[str, ...], scale: float) -> dict[str, Any]:
    cells: dict[str, Any] = {}
    for method in methods:
        cell: dict[str, Any] = {
            "latency": {
                f"{b}/{k}": _samples(0.004 * scale * f)
                for b in BACKENDS
                for k, f in (("plain", 1.0), ("safe", 1.3), ("naive", 3.0))
            }
        }
        if method != "spawn":
            cell["memory_kib"] = {
                f"{b}/{k}": _samples(kib)
                for b in BACKENDS
                for k, kib in (
                    ("plain", 740),
                    ("safe", 1840),
                    ("safe-report", 1900),
                    ("naive", 9e4),
                )
            }
            cell["cleanup_seconds"] = {
                f"{b}/{part}": _samples(seconds)
                for b in BACKENDS
                for part, seconds in (
                    ("start", 0.007),
                    ("exit", 0.0012),
                    ("total", 0.0085),
                    ("gc", 0.0004),
                    ("naive", 1.1 * scale),
                )
            }
            cell["step_seconds"] = {f"{b}/{n}": _samples(0.0001) for b in BACKENDS for n in STEPS}
        cells[method] = cell
    return cells


def _data() -> dict[str, Any]:
    """Return a quick run's raw results, with machine facts and errors longer than a line."""
    runs = [
        {"exitcodes": [-15, -15], "busy_workers": 2, "reports": 2, "sigterm_reports": 2}
        for _ in range(2)
    ]
    return {
        "facts": {
            "date": "2026-12-02T16:36:47+00:00",
            "profile": "quick",
            "python_version": "3.11.7",
            "implementation": "CPython",
            "platform": "Linux-6.18.44-a-rather-long-kernel-release-name-x86_64-with-glibc2.36",
            "cpu_count": 2,
            "cpu_model": "AMD EPYC 7B13 64-Core Processor with a long marketing name",
            "load_average_start": [1.5, 1.4, 1.3],
            "load_average_end": [2.5, 2.4, 2.3],
            "versions": {"safeproc": "0.1.0", "multiprocess": "0.70.19", "dill": "0.4.1"},
        },
        "heaps": [
            {"heap": 0, "methods": _heap_cell(("fork", "forkserver", "spawn"), 1.0)},
            {"heap": BIG_HEAP, "methods": _heap_cell(("fork",), 10.0)},
        ],
        "pool": {
            "fork": {
                key: {f"{b}/{k}": _samples(seconds) for b in BACKENDS for k in ("plain", "safe")}
                for key, seconds in (
                    ("map_seconds", 0.007),
                    ("map_chunksize1_seconds", 0.3),
                    ("lifecycle_seconds", 0.11),
                )
            }
        },
        "terminate": {
            "deadline": 1.0,
            **{
                f"fork/{b}/{k}": {"seconds": _samples(0.2), "runs": runs}
                for b in BACKENDS
                for k in ("plain", "safe")
            },
        },
        "errors": ["worker pool failed with exit code 1: " + "details " * 30],
    }


def test_no_report_line_is_wider_than_a_terminal_allows() -> None:
    """Every line of the report fits in WIDTH columns: wide tables split, long text wraps."""
    data = _data()
    report = render(data, analyse(data))
    too_wide = [line for line in report.splitlines() if len(line) > WIDTH]
    assert too_wide == []
    wide = render(data, analyse(data), width=1000)
    assert max(len(line) for line in wide.splitlines()) > WIDTH
    # Split, not dropped: every column header of the wide report is in the narrow one.
    for header in ("plain life", "life safe/plain", "plain chunk=1", "naive/safe"):
        assert header in report


def test_the_report_names_no_issue_numbers() -> None:
    """Output speaks of targets, not of the tracker they were filed in."""
    data = _data()
    report = render(data, analyse(data))
    assert re.search(r"issue|#\d", report, flags=re.IGNORECASE) is None


def test_every_target_has_a_glance_line() -> None:
    """The summary gives each target one line: its status, its name, the deciding figure."""
    data = _data()
    analysis = analyse(data)
    report = render(data, analysis)
    glance = report.split("Targets at a glance:\n", 1)[1].split("\n\n", 1)[0].splitlines()
    verdicts = analysis["verdicts"]
    assert len(glance) == len(verdicts) == 8
    for line, verdict in zip(glance, verdicts, strict=True):
        assert line.split()[0] == verdict.status.upper()
        assert verdict.name in line
        assert line.endswith(verdict.measured)
        assert "target" in verdict.measured
    by_name = {v.name: v for v in verdicts}
    latency = by_name["start->join, fork, empty heap"]
    assert latency.status == "missed"  # 1.3x the plain latency
    assert latency.measured == "safe/plain 1.300; target <= 1.05"
    assert by_name["Pool.map throughput"].status == "met"


def test_json_carries_each_verdicts_glance() -> None:
    """The JSON report has the same short figure per target as the text."""
    data = _data()
    analysis = analyse(data)
    verdicts = to_json(data, analysis)["verdicts"]
    assert [(v["name"], v["measured"]) for v in verdicts] == [
        (v.name, v.measured) for v in analysis["verdicts"]
    ]


def test_the_bench_names_modules_a_spawned_child_would_compile(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Spawn figures are only meaningful with bytecode: the bench says when it is missing."""
    fake = types.ModuleType("safeproc._fake_uncompiled")
    fake.__file__ = str(tmp_path / "_fake_uncompiled.py")
    setattr(fake, "__cached__", str(tmp_path / "__pycache__" / "_fake_uncompiled.pyc"))  # noqa: B010
    compiled = types.ModuleType("safeproc._fake_compiled")
    compiled.__file__ = str(tmp_path / "_fake_compiled.py")
    setattr(compiled, "__cached__", str(tmp_path / "compiled.pyc"))  # noqa: B010
    (tmp_path / "compiled.pyc").write_bytes(b"")
    monkeypatch.setitem(sys.modules, fake.__name__, fake)
    monkeypatch.setitem(sys.modules, compiled.__name__, compiled)
    missing = uncompiled_modules()
    assert "safeproc._fake_uncompiled" in missing
    assert "safeproc._fake_compiled" not in missing
