"""Cleanup reports read well: ``str(report)`` is a short summary for people,
and ``python -m safeproc run --report`` prints one line per child at exit."""

from __future__ import annotations

import dataclasses
import re
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from safeproc import CleanupReport, StepReport

if TYPE_CHECKING:
    from conftest import RunScript

RUN_REPORT = ("-m", "safeproc", "run", "--report")

FINISHED = CleanupReport(
    pid=4242,
    trigger="exit",
    steps=(
        StepReport("start", 1, 0.000_25),
        StepReport("atexit", 2, 0.001_5),
        StepReport("gc", 1, 0.000_75, errors=("ValueError: boom",)),
        StepReport("files", 3, 0.000_5),
    ),
    timeout=2.0,
    exitcode=0,
)

EXPIRED = CleanupReport(
    pid=77,
    trigger="sigterm",
    steps=(StepReport("start", 1, 0.001), StepReport("gc", 0, 0.5, completed=False)),
    deadline_expired=True,
    timeout=0.5,
    exitcode=-15,
)


def test_str_is_a_short_summary() -> None:
    """str() gives the child, how it ended, the total in ms, errors and the deadline, then one
    line per step with its count and milliseconds, then one per error."""
    lines = str(FINISHED).splitlines()
    assert lines[0] == (
        "cleanup of child 4242 at exit (exit code 0): 4 steps in 3.00 ms, 1 error, "
        "deadline 2 s not reached"
    )
    assert [line.split()[0] for line in lines[1:5]] == ["start", "atexit", "gc", "files"]
    assert lines[2].split() == ["atexit", "2", "atexit", "handlers", "1.50", "ms"]
    assert lines[3].split() == ["gc", "1", "object", "collected", "0.75", "ms"]
    assert lines[4].split() == ["files", "3", "files", "flushed", "or", "closed", "0.50", "ms"]
    assert lines[5] == "  error in gc: ValueError: boom"
    assert len(lines) == 6
    # Milliseconds line up in one column.
    assert len({line.index(" ms") for line in lines[1:5]}) == 1


def test_str_says_where_the_deadline_expired() -> None:
    """An expired deadline is in the first line, with its step; that step did not finish."""
    lines = str(EXPIRED).splitlines()
    assert lines[0] == (
        "cleanup of child 77 on SIGTERM (exit code -15): 2 steps in 501.00 ms, no errors, "
        "deadline 0.5 s EXPIRED in step 'gc'"
    )
    assert lines[2].split() == ["gc", "did", "not", "finish", "500.00", "ms"]


def test_str_of_a_child_that_ended_early_and_without_deadline() -> None:
    """A child ended in a step by something other than its deadline says so; no deadline too."""
    report = dataclasses.replace(EXPIRED, deadline_expired=False, timeout=None, exitcode=None)
    assert str(report).splitlines()[0] == (
        "cleanup of child 77 on SIGTERM: 2 steps in 501.00 ms, no errors, no deadline, "
        "ended during step 'gc'"
    )


def test_repr_stays_the_dataclass_repr() -> None:
    """repr() still shows every field (it is what debuggers and logs of the object show)."""
    text = repr(FINISHED)
    assert text.startswith("CleanupReport(pid=4242, trigger='exit', steps=(StepReport(")
    assert "errors=('ValueError: boom',)" in text
    assert text != str(FINISHED)


README = Path(__file__).resolve().parents[1] / "README.md"

#: Runs a program as __main__ under the fork start method.
UNDER_FORK = """\
import multiprocessing, runpy, sys
multiprocessing.set_start_method("fork")
runpy.run_path(sys.argv[1], run_name="__main__")
"""


def _shape(text: str) -> list[str]:
    """Lines with every number replaced and runs of spaces collapsed: what must not vary.

    A count's noun is taken in the singular: counts vary by version (3.13
    runs multiprocessing's own exit function as a second atexit handler).
    """
    lines = [" ".join(re.sub(r"\d+(\.\d+)?", "N", line).split()) for line in text.splitlines()]
    return [re.sub(r"\b(N(?: \w+)*? \w\w+?)s\b", r"\1", line) for line in lines]


def test_readme_policy_example_prints_what_the_readme_shows(tmp_path: Path) -> None:
    """The README's policy example prints the child's report summary as the README shows it
    (the same lines, words and counts' places; times and pids vary)."""
    section = README.read_text().split("## A policy per process, pool or context", 1)[1]
    found = re.search(
        r"```python\n(.*?)```\n\nprints, under `fork`.*?```text\n(.*?)```", section, re.DOTALL
    )
    assert found is not None, "the README's policy example and its output block"
    program, shown = found.groups()
    script = tmp_path / "policy_example.py"
    script.write_text(program)
    result = subprocess.run(
        [sys.executable, "-c", UNDER_FORK, str(script)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result
    assert result.stderr == "", result.stderr
    assert _shape(result.stdout) == _shape(shown), result.stdout


# -- python -m safeproc run --report -------------------------------------------

PROGRAM = """
import logging

# Only exit collects garbage here, never an allocation count the child's
# own work reaches first (the count each version's collector keeps differs).
gc.set_threshold(2**31 - 1)

class Cycle:
    def __init__(self):
        self.me = self
    def __del__(self):
        mark("del", os.getpid())

class Target:
    pass

def child(path):
    atexit.register(mark, "atexit", os.getpid())
    global target, log_file
    target = Target()
    weakref.finalize(target, mark, "finalize", os.getpid())
    Cycle()
    logging.getLogger("report-test").addHandler(logging.FileHandler(path + ".log"))
    log_file = open(path, "w")
    log_file.write("unflushed")
    mark("child", os.getpid(), mp.current_process().name)

if __name__ == "__main__":
    procs = [plain_mp.get_context(METHOD).Process(target=child, args=(f"out{i}",))
             for i in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    mark("exitcodes", *[p.exitcode for p in procs])
"""

HEADER = [
    "pid",
    "name",
    "exit",
    "atexit",
    "finalizers",
    "collected",
    "logging",
    "files",
    "errors",
    "ms",
    "slowest",
]


def _table(stderr: str) -> dict[str, dict[str, str]]:
    """Parse run --report's table: pid -> column -> cell."""
    lines = stderr.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("safeproc run --report:"))
    header = lines[start + 1].split()
    assert header[: len(HEADER)] == HEADER, stderr
    rows = {}
    for line in lines[start + 2 :]:
        cells = line.split()
        if not cells or not cells[0].isdigit():
            continue
        rows[cells[0]] = dict(zip(header, cells, strict=False))
    return rows


def test_run_report_prints_a_line_per_child(run_script: RunScript, tmp_path: Path) -> None:
    """``run --report`` prints, at the program's exit, one line per child with what it
    finalized (handlers, objects collected, log handlers and files flushed) and a total."""
    run = run_script(PROGRAM, args=RUN_REPORT, timeout=120)
    assert run.returncode == 0, run.explain()
    children = {m.split()[1]: m.split()[2] for m in run.marks if m.startswith("child ")}
    assert len(children) == 2, run.explain()
    assert "exitcodes 0 0" in run.marks, run.explain()
    title = "safeproc run --report: what the program's 2 children cleaned up"
    assert any(line.startswith(title) for line in run.stderr.splitlines()), run.explain()
    rows = _table(run.stderr)
    assert set(rows) == set(children), run.explain()
    for pid, name in children.items():
        row = rows[pid]
        assert row["name"] == name, run.explain()
        assert row["exit"] == "0", run.explain()
        # What the child made, seen from outside (marks), is what the line counts.
        assert f"atexit {pid}" in run.marks, run.explain()
        assert f"del {pid}" in run.marks, run.explain()
        assert int(row["atexit"]) >= 1, run.explain()
        assert int(row["collected"]) >= 1, run.explain()
        assert int(row["files"]) >= 1, run.explain()
        assert row["errors"] == "0", run.explain()
    total = next(line for line in run.stderr.splitlines() if line.startswith("total"))
    assert re.match(r"total\s+2 children\s", total), total
    # The files the children left open were flushed, as the lines say.
    assert [(tmp_path / f"out{i}").read_text() for i in range(2)] == ["unflushed"] * 2


@pytest.mark.parametrize("start_method", ["fork"])
def test_run_report_names_an_expired_deadline(run_script: RunScript) -> None:
    """A child whose cleanup hung shows the expired deadline and its step in its line."""
    body = """
class Hang:
    def __init__(self):
        self.me = self
    def __del__(self):
        while True:
            pass

def child():
    gc.set_threshold(2**31 - 1)
    Hang()
    mark("child", os.getpid())

if __name__ == "__main__":
    p = plain_mp.get_context(METHOD).Process(target=child)
    p.start()
    p.join(60)
    mark("exitcode", p.exitcode)
"""
    run = run_script(body, args=(*RUN_REPORT, "--cleanup", "timeout=0.5"), timeout=120)
    assert "exitcode 0" in run.marks, run.explain()
    pid = next(m.split()[1] for m in run.marks if m.startswith("child "))
    line = next(ln for ln in run.stderr.splitlines() if ln.startswith(pid))
    assert line.endswith("deadline 0.5 s expired in gc"), run.explain()
