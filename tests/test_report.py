"""Cleanup reports read well: ``str(report)`` is a short summary for people."""

from __future__ import annotations

import dataclasses
import re
import subprocess
import sys
from pathlib import Path

from safeproc import CleanupReport, StepReport

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
    """Lines with every number replaced and runs of spaces collapsed: what must not vary."""
    return [" ".join(re.sub(r"\d+(\.\d+)?", "N", line).split()) for line in text.splitlines()]


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
