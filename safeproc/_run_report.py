"""``python -m safeproc run --report``: what each child of the program cleaned up.

The picture of what plain multiprocessing would have lost: one line per
child (atexit handlers, finalizers, objects collected, log handlers and
files flushed, errors, the slowest step), printed to stderr at the
program's exit::

    run --report (this process)              children, at any depth, any start method
    ---------------------------              ---------------------------------------
    collect_reports(): a report directory,   start() (safeproc._install) names the
      (run: _install.report_dir = it) --->    child's report file there:
                                               <clock>-<starter pid>-<n>-<name in hex>
    ... the program runs ...                 each child rewrites its report after
                                               every step (safeproc._report_writer)
    at exit, after multiprocessing's own
      exit function joined the children:
      print_summary() reads the reports,
      prints the table, removes the directory

The directory travels to forked children with the module's state and to
spawned and forkserver ones with the installation (``InstallInChild``), so
grandchildren report too. Processes made by safeproc's own classes keep
their own policies and deliver their reports as usual.
"""

from __future__ import annotations

import atexit
import itertools
import os
import shutil
import signal
import sys
import tempfile
import time
import weakref

from safeproc._report import read_report

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from safeproc._report import CleanupReport, StepReport

__all__ = ["collect_reports", "print_summary", "report_path", "summary_lines"]

#: More children than this: the first ones are listed, then the totals.
MAX_LINES = 20

#: (column title, step whose count it shows).
COUNT_COLUMNS = (
    ("atexit", "atexit"),
    ("finalizers", "finalizers"),
    ("collected", "gc"),
    ("logging", "logging"),
    ("files", "files"),
)

_counter = itertools.count(1)


def collect_reports() -> str:
    """Print a summary of the reports in a new directory at exit; return it.

    The caller makes the children started from now on report there
    (``safeproc._install.report_dir``).
    """
    directory = tempfile.mkdtemp(prefix="safeproc-run-reports-")
    # atexit runs the last registered first: the summary must come after the
    # multiprocessing packages' exit functions, which join (or terminate) the
    # children the program left running.
    exit_functions = [
        util._exit_function
        for util in (
            sys.modules.get(f"{name}.util") for name in ("multiprocessing", "multiprocess")
        )
        if util is not None
    ]
    for function in exit_functions:
        atexit.unregister(function)
    atexit.register(print_summary, directory, os.getpid())
    for function in exit_functions:
        atexit.register(function)
    return directory


def report_path(directory: str, process: Any) -> str:  # noqa: ANN401 - either backend's process
    """Return the report file of *process*, about to start: its name is in the file name."""
    name = str(getattr(process, "_name", "?")).encode(errors="replace")[:60].hex()
    return os.path.join(
        directory, f"{time.monotonic_ns():020d}-{os.getpid()}-{next(_counter)}-{name}"
    )


#: Report file -> the child's exit code, once its process object is gone.
_exitcodes: dict[str, int | None] = {}
#: Report file -> a weak reference to the child's process object.
_processes: dict[str, weakref.ref[Any]] = {}


def remember_exitcode(process: Any) -> None:  # noqa: ANN401 - either backend's process
    """Keep the exit code of *process*, just started, for the summary.

    Neither the process object nor its pipes are kept alive: a weak
    reference reads the exit code while the object lives, and its callback
    keeps the last one the object knew (its launcher holds no reference back).
    """
    path = process._safeproc_install_report
    popen = process._popen

    def gone(_: object) -> None:
        _exitcodes[path] = popen.returncode
        _processes.pop(path, None)

    _processes[path] = weakref.ref(process, gone)


def _exitcode(path: str) -> int | None:
    ref = _processes.get(path)
    process = None if ref is None else ref()
    if process is not None:
        exitcode: int | None = process.exitcode
        return exitcode
    return _exitcodes.get(path)


def _name_of(file_name: str) -> str:
    try:
        return bytes.fromhex(file_name.split("-", 3)[3]).decode(errors="replace")
    except (IndexError, ValueError):
        return "?"


def read_reports(directory: str) -> list[tuple[str, CleanupReport]]:
    """Return (process name, report) of every report in *directory*, in start order."""
    try:
        names = sorted(n for n in os.listdir(directory) if not n.endswith(".tmp"))
    except OSError:
        return []
    reports = []
    for file_name in names:
        path = os.path.join(directory, file_name)
        report = read_report(path, _exitcode(path))
        if report is not None:
            reports.append((_name_of(file_name), report))
    return reports


def print_summary(directory: str, owner_pid: int) -> None:
    """At the program's exit: print what its children cleaned up, remove *directory*."""
    if os.getpid() != owner_pid:
        return  # a copy inherited by a fork
    try:
        lines = summary_lines(read_reports(directory))
        stderr = sys.stderr if sys.stderr is not None else sys.__stderr__
        if stderr is not None:
            stderr.write("".join(f"{line}\n" for line in lines))
            stderr.flush()
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def _note(report: CleanupReport) -> str:
    notes = []
    if report.trigger == "sigterm":
        notes.append("cleanup on SIGTERM")
    ended = "ended"
    exitcode = report.exitcode
    if exitcode is not None and exitcode < 0 and report.trigger == "exit":
        try:
            ended = f"killed by {signal.Signals(-exitcode).name}"
        except ValueError:
            ended = f"killed by signal {-exitcode}"
    if report.deadline_expired:
        where = f" in {report.hung_step}" if report.hung_step else ""
        notes.append(f"deadline {report.timeout:g} s expired{where}")
    elif report.interrupted_step is not None:
        notes.append(f"{ended} during {report.interrupted_step}")
    elif not _exit_steps(report) and report.trigger == "exit":
        notes.append(f"{ended} before its exit steps")
    return ", ".join(notes)


def _exit_steps(report: CleanupReport) -> list[StepReport]:
    return [s for s in report.steps if s.name != "start"]


def _exit_seconds(report: CleanupReport) -> float:
    return sum(s.seconds for s in _exit_steps(report))


def _row(name: str, report: CleanupReport) -> list[str]:
    steps = {s.name: s for s in report.steps}
    counts = [str(steps[step].count) if step in steps else "-" for _, step in COUNT_COLUMNS]
    slowest = max(_exit_steps(report), key=lambda s: s.seconds, default=None)
    slowest_text = "-" if slowest is None else f"{slowest.name} {slowest.seconds * 1000:.2f} ms"
    return [
        str(report.pid),
        name,
        "?" if report.exitcode is None else str(report.exitcode),
        *counts,
        str(len(report.errors)),
        f"{_exit_seconds(report) * 1000:.2f}",
        slowest_text,
        _note(report),
    ]


def _total_row(reports: list[tuple[str, CleanupReport]]) -> list[str]:
    counts = []
    for _, step in COUNT_COLUMNS:
        found = [s.count for _, r in reports for s in r.steps if s.name == step]
        counts.append(str(sum(found)) if found else "-")
    expired = sum(r.deadline_expired for _, r in reports)
    return [
        "total",
        f"{len(reports)} children",
        "",
        *counts,
        str(sum(len(r.errors) for _, r in reports)),
        f"{sum(_exit_seconds(r) for _, r in reports) * 1000:.2f}",
        "",
        f"{expired} deadline(s) expired" if expired else "",
    ]


def summary_lines(reports: list[tuple[str, CleanupReport]]) -> list[str]:
    """Return the summary table of *reports* ((process name, report) pairs) as lines."""
    if not reports:
        return ["safeproc run --report: no child of this program reported a cleanup"]
    header = [
        "pid",
        "name",
        "exit",
        *(title for title, _ in COUNT_COLUMNS),
        "errors",
        "ms",
        "slowest",
        "",
    ]
    rows = [_row(name, report) for name, report in reports[:MAX_LINES]]
    totals = [_total_row(reports)] if len(reports) > 1 else []
    widths = [max(len(row[i]) for row in [header, *rows, *totals]) for i in range(len(header))]
    # Text columns (name, slowest step, note) to the left, numbers to the right.
    left = {1, len(header) - 2, len(header) - 1}

    def line(cells: list[str]) -> str:
        return "  ".join(
            cell.ljust(width) if i in left else cell.rjust(width)
            for i, (cell, width) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    children = "child" if len(reports) == 1 else "children"
    title = f"safeproc run --report: what the program's {len(reports)} {children} cleaned up"
    lines = [f"{title} (counts and milliseconds of the exit steps)", line(header)]
    lines.extend(line(row) for row in rows)
    if len(reports) > MAX_LINES:
        lines.append(f"... and {len(reports) - MAX_LINES} more (counted in the total)")
    lines.extend(line(row) for row in totals)
    return lines
