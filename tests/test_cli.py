"""The command line reads as a tool people use: ``--version``, plain-text
help that lists what each option takes, and errors that show the usage of
the command that was mistyped."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from typing import TYPE_CHECKING

import pytest

import safeproc
from safeproc import CleanupPolicy, _policy

if TYPE_CHECKING:
    from pathlib import Path

SAFEPROC = (sys.executable, "-m", "safeproc")


def _cli(
    *args: str, cwd: Path | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    # Never the checkout: "python -m" would import safeproc from the current directory.
    return subprocess.run(
        [*SAFEPROC, *args],
        cwd=cwd or tempfile.gettempdir(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_version() -> None:
    """``--version`` prints the installed distribution's version (the package's in a checkout)."""
    try:
        expected = metadata.version("safeproc")
    except metadata.PackageNotFoundError:
        expected = safeproc.__version__
    result = _cli("--version")
    assert result.returncode == 0, result
    assert result.stdout == f"safeproc {expected}\n"


@pytest.mark.parametrize("command", [(), ("demo",), ("run",), ("bench",)], ids=" ".join)
def test_help_is_plain_text(command: tuple[str, ...]) -> None:
    """No help text shows reST markup (``double backticks``, :roles:)."""
    result = _cli(*command, "--help")
    assert result.returncode == 0, result
    assert result.stdout.startswith(f"usage: python -m safeproc {' '.join(command)}".rstrip())
    assert "``" not in result.stdout
    assert ":func:" not in result.stdout
    assert ":class:" not in result.stdout
    assert max(map(len, result.stdout.splitlines())) <= 120


def test_top_level_help_lists_the_commands() -> None:
    """``--help`` names every command and what it does."""
    result = _cli("--help")
    for command in ("demo", "run", "bench", "--version"):
        assert f"    {command}" in result.stdout or f"  {command}" in result.stdout


def _field_line(help_text: str, field: str) -> str:
    lines = [ln for ln in help_text.splitlines() if ln.split()[:1] == [field]]
    assert len(lines) == 1, (field, help_text)
    return lines[0]


def test_run_help_lists_every_cleanup_field() -> None:
    """``run --help`` lists every CleanupPolicy field with its allowed values and default.

    The expectations come from the policy itself: a field added to
    CleanupPolicy must show up in the help.
    """
    result = _cli("run", "--help")
    assert result.returncode == 0, result
    defaults = CleanupPolicy().as_dict()
    for field in CleanupPolicy.FIELDS:
        line = _field_line(result.stdout, field)
        default = defaults[field]
        if isinstance(default, bool):
            assert "true or false" in line, line
            assert line.endswith(f"default: {str(default).lower()}"), line
        elif field in _policy._CHOICES:
            for choice in _policy._CHOICES[field]:
                assert choice in line, line
            assert line.endswith(f"default: {default}"), line
        else:
            assert "none" in line, line
            assert line.endswith(f"default: {default:g}"), line
    assert "--report" in result.stdout


@pytest.mark.parametrize(
    ("args", "usage", "error"),
    [
        (("bench", "--fulll"), "bench", "unrecognized arguments: --fulll"),
        (("demo", "--method", "teleport"), "demo", "argument --method: invalid choice: 'teleport'"),
        (("demo", "extra"), "demo", "unrecognized arguments: extra"),
        (("run", "--colour", "x.py"), "run", "unrecognized option '--colour'"),
        (("run",), "run", "a script or -m module is required"),
        (("teleport",), "", "argument COMMAND: invalid choice: 'teleport'"),
    ],
    ids=lambda v: " ".join(v) if isinstance(v, tuple) else None,
)
def test_errors_show_the_usage_of_their_command(
    tmp_path: Path, args: tuple[str, ...], usage: str, error: str
) -> None:
    """A mistyped option shows that command's usage (not the top-level one), exit status 2."""
    result = _cli(*args, cwd=tmp_path)
    assert result.returncode == 2, result
    lines = result.stderr.splitlines()
    prog = f"python -m safeproc {usage}".rstrip()
    assert lines[0].startswith(f"usage: {prog} ["), result.stderr
    assert lines[-1].startswith(f"{prog}: error: {error}"), result.stderr


@pytest.mark.parametrize(
    ("spec", "field", "allowed"),
    [
        ("stdio=loud", "stdio", "'auto', 'flush', 'line', 'reopen', 'none'"),
        ("sigterm=never", "sigterm", "'default', 'cleanup'"),
        ("gc=maybe", "gc", "true or false"),
        ("timeout=soon", "timeout", "a number of seconds or none"),
    ],
)
def test_run_bad_cleanup_value_names_field_and_allowed_values(
    tmp_path: Path, spec: str, field: str, allowed: str
) -> None:
    """``run --cleanup`` with a bad value names the field, the allowed values, and run's usage."""
    (tmp_path / "ok.py").write_text("print('ran')\n")
    result = _cli("run", "--cleanup", spec, "ok.py", cwd=tmp_path)
    assert result.returncode == 2, result
    usage, error = result.stderr.splitlines()
    assert usage.startswith("usage: python -m safeproc run ["), usage
    assert error.startswith("python -m safeproc run: error: argument --cleanup: "), error
    assert f"CleanupPolicy.{field}" in error
    assert allowed in error
    assert "ran" not in result.stdout


def test_bench_help_describes_the_profiles() -> None:
    """``bench --help`` says what the quick and full profiles measure and how long they take."""
    result = _cli("bench", "--help")
    assert result.returncode == 0, result
    text = " ".join(result.stdout.split())
    assert "quick (default)" in text
    assert "--full" in text
    for measured in ("latency", "cleanup time", "private memory", "Pool.map", "terminate()"):
        assert measured in text, measured
    assert "About a minute" in text
    assert "About 5 minutes" in text


@pytest.mark.parametrize("problem", ["no directory", "a directory", "read-only directory"])
@pytest.mark.parametrize("option", ["--json", "--plot"])
def test_bench_output_files_are_checked_before_the_run(
    tmp_path: Path, problem: str, option: str
) -> None:
    """``bench --json FILE`` (and ``--plot``) fails at once, with bench's usage, when FILE
    cannot be written: never after a run of a minute or more."""
    if problem == "no directory":
        target = tmp_path / "missing" / "out.json"
    elif problem == "a directory":
        target = tmp_path
    else:
        if os.geteuid() == 0:
            pytest.skip("root may write anywhere")
        locked = tmp_path / "locked"
        locked.mkdir()
        locked.chmod(0o500)
        target = locked / "out.json"
    started = time.monotonic()
    result = _cli("bench", option, str(target), timeout=30)
    assert time.monotonic() - started < 20
    assert result.returncode == 2, result
    lines = result.stderr.splitlines()
    assert lines[0].startswith("usage: python -m safeproc bench ["), result.stderr
    assert lines[-1].startswith(
        f"python -m safeproc bench: error: argument {option}: cannot write"
    ), result.stderr
    assert "profile" not in result.stdout  # the run never started
