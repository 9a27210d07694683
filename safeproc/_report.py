"""The :class:`CleanupReport` a child records and the parent reads back.

The child (:mod:`safeproc._report_writer`) rewrites its report file after
every step (only when the policy asks for a report), so a child that ends
early still leaves a report that names the step it was in. Writing a small
file never blocks the child, whether or not the parent is still there to
read it. The parent removes each file once it has read it.
"""

from __future__ import annotations

import atexit
import contextlib
import dataclasses
import os
import signal
import threading
from dataclasses import dataclass

from safeproc import _forks

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = ["CleanupReport", "StepReport"]


@dataclass(frozen=True)
class StepReport:
    """What one cleanup step did in the child.

    .. versionadded:: 0.1
    """

    #: The step's name, for example ``"atexit"`` or ``"gc"``.
    name: str
    #: How many items the step handled (handlers run, objects collected ...).
    count: int = 0
    #: Wall time the step took, in seconds.
    seconds: float = 0.0
    #: One line per error the step reported (the full traceback went to
    #: the child's stderr).
    errors: tuple[str, ...] = ()
    #: False when the child ended before the step finished (see
    #: :attr:`CleanupReport.interrupted_step`).
    completed: bool = True


@dataclass(frozen=True)
class CleanupReport:
    """What cleanup did in one child, delivered to the parent.

    Read it from :attr:`SafeProcess.cleanup_report` after ``join()``, or from
    :meth:`SafePool.cleanup_reports` for a pool.

    .. versionadded:: 0.1
    """

    #: The child's process id.
    pid: int
    #: ``"exit"`` for a normal end, ``"sigterm"`` when cleanup ran on SIGTERM.
    trigger: str
    #: The steps in the order they ran.
    steps: tuple[StepReport, ...] = ()
    #: True when the cleanup deadline expired: cleanup stopped there (the
    #: step it was in is :attr:`hung_step`) and the child ended as the plain
    #: library would have ended it, or, if it could not run Python any more,
    #: by ``SIGALRM``.
    deadline_expired: bool = False
    #: The policy's deadline in seconds, or None.
    timeout: float | None = None
    #: The child's exit code as the parent saw it (None if not known).
    exitcode: int | None = None

    @property
    def errors(self) -> tuple[str, ...]:
        """Every error reported by any step."""
        return tuple(e for s in self.steps for e in s.errors)

    @property
    def seconds(self) -> float:
        """Total time spent in the recorded steps."""
        return sum(s.seconds for s in self.steps)

    @property
    def interrupted_step(self) -> str | None:
        """The step the child was in when it ended before finishing it, if any.

        Its deadline (:attr:`deadline_expired`), a signal (:attr:`exitcode`
        is negative) or the step's own code (``os._exit()`` in an atexit
        handler) ended it.
        """
        for step in self.steps:
            if not step.completed:
                return step.name
        return None

    @property
    def hung_step(self) -> str | None:
        """The step the child was in when its deadline expired, if it did."""
        return self.interrupted_step if self.deadline_expired else None

    def step(self, name: str) -> StepReport:
        """Return the report of the step called *name*.

        :raises KeyError: no such step ran.
        """
        for s in self.steps:
            if s.name == name:
                return s
        raise KeyError(name)

    def __str__(self) -> str:
        """Summarize for people: one line, then one per step and per error.

        The :func:`repr` stays the full dataclass one.
        """
        lines = [self.headline()]
        for step in self.steps:
            done = _count_text(step.name, step.count) if step.completed else "did not finish"
            lines.append(f"  {step.name:<11}{done:<28}{step.seconds * 1000:>8.2f} ms")
        lines.extend(f"  error in {s.name}: {e}" for s in self.steps for e in s.errors)
        return "\n".join(lines)

    def headline(self) -> str:
        """One line: the child, how it ended, total time, errors, the deadline."""
        how = "on SIGTERM" if self.trigger == "sigterm" else "at exit"
        if self.exitcode is not None:
            how += f" (exit code {self.exitcode})"
        errors = len(self.errors)
        steps = len(self.steps)
        parts = [
            (
                f"cleanup of child {self.pid} {how}: "
                f"{steps} {_plural(steps, 'step')} in {self.seconds * 1000:.2f} ms"
            ),
            f"{errors or 'no'} {_plural(errors, 'error')}",
        ]
        if self.timeout is None:
            parts.append("no deadline")
        elif self.deadline_expired:
            where = f" in step {self.hung_step!r}" if self.hung_step is not None else ""
            parts.append(f"deadline {self.timeout:g} s EXPIRED{where}")
        else:
            parts.append(f"deadline {self.timeout:g} s not reached")
        interrupted = self.interrupted_step
        if interrupted is not None and not self.deadline_expired:
            parts.append(f"ended during step {interrupted!r}")
        return ", ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        """Return the report as JSON-compatible data."""
        return {
            "pid": self.pid,
            "trigger": self.trigger,
            "deadline_expired": self.deadline_expired,
            "timeout": self.timeout,
            "exitcode": self.exitcode,
            "steps": [
                {
                    "name": s.name,
                    "count": s.count,
                    "seconds": s.seconds,
                    "errors": list(s.errors),
                    "completed": s.completed,
                }
                for s in self.steps
            ],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CleanupReport:
        """Rebuild a report from :meth:`to_dict` data."""
        exitcode = data.get("exitcode")
        return cls(
            pid=int(data["pid"]),
            trigger=str(data["trigger"]),
            deadline_expired=bool(data["deadline_expired"]),
            timeout=data["timeout"],
            exitcode=None if exitcode is None else int(exitcode),
            steps=tuple(
                StepReport(
                    name=s["name"],
                    count=int(s["count"]),
                    seconds=float(s["seconds"]),
                    errors=tuple(s["errors"]),
                    completed=bool(s["completed"]),
                )
                for s in data["steps"]
            ),
        )


#: What a step's count counts, singular and plural.
_COUNTED = {
    "atexit": ("atexit handler", "atexit handlers"),
    "backends": ("exit function", "exit functions"),
    "finalizers": ("finalizer", "finalizers"),
    "gc": ("object collected", "objects collected"),
    "logging": ("log handler flushed", "log handlers flushed"),
    "files": ("file flushed or closed", "files flushed or closed"),
    "stdio": ("stream flushed", "streams flushed"),
}


def _plural(count: int, word: str) -> str:
    return word if count == 1 else f"{word}s"


def _count_text(step: str, count: int) -> str:
    if step == "start":
        return ""  # its count is internal (whether the child was forked)
    singular, plural = _COUNTED.get(step, ("item", "items"))
    return f"{count} {singular if count == 1 else plural}"


def read_report(path: str, exitcode: int | None) -> CleanupReport | None:
    """Parent side: load the report at *path* and remove the file; None if none was written.

    A child its deadline ended by ``SIGALRM`` (it could not run Python any
    more) left its report in the step it was in: that is recorded as an
    expired deadline. Any other early end is only what :attr:`exitcode`
    and :attr:`~CleanupReport.interrupted_step` say.
    """
    import json  # noqa: PLC0415 - only programs that ask for reports pay for it

    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError):
        return None
    finally:
        with contextlib.suppress(OSError):
            os.remove(path)
    report = CleanupReport.from_dict(data)
    expired = report.deadline_expired or (
        exitcode == -signal.SIGALRM and report.interrupted_step is not None
    )
    return dataclasses.replace(report, deadline_expired=expired, exitcode=exitcode)


_report_dir: str | None = None
_report_dir_lock = _forks.reinit_after_fork(threading.Lock())
_report_counter = iter(range(1, 1 << 62))


def new_report_path(prefix: str = "p") -> str:
    """Return a fresh report file path in this process's report directory.

    The directory is removed when this process exits normally; forked
    children never remove it (safeproc does not run inherited finalizers).
    """
    # Imported here, by the parent, so that only programs asking for reports
    # pay for them, and a forked child finds them imported.
    import json  # noqa: F401, PLC0415
    import tempfile  # noqa: PLC0415

    global _report_dir  # noqa: PLW0603 - one directory per process
    with _report_dir_lock:
        if _report_dir is None or not os.path.isdir(_report_dir):
            _report_dir = tempfile.mkdtemp(prefix="safeproc-reports-")
            atexit.register(_remove_dir, _report_dir, os.getpid())
        return os.path.join(_report_dir, f"{prefix}{os.getpid()}-{next(_report_counter)}")


def _remove_dir(path: str, owner_pid: int) -> None:
    # A child that inherited this handler and exits normally must not
    # delete its parent's directory.
    if os.getpid() == owner_pid:
        import shutil  # noqa: PLC0415 - at exit, once

        shutil.rmtree(path, ignore_errors=True)
