"""Child side of the :class:`~safeproc.CleanupReport`: the report file, rewritten after every step.

Plain data only (no dataclasses): this module is loaded by children whose
policy asks for a report, and nothing else of the report machinery is.
"""

from __future__ import annotations

import json
import os

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = ["ReportWriter"]


class ReportWriter:
    """Accumulates the steps of one child and rewrites its report file."""

    __slots__ = ("deadline_expired", "path", "steps", "timeout", "trigger")

    def __init__(self, path: str, *, trigger: str, timeout: float | None) -> None:
        """Write to *path* (the parent reads and removes it)."""
        self.path = path
        self.trigger = trigger
        self.timeout = timeout
        self.deadline_expired = False
        self.steps: list[dict[str, Any]] = []

    def begin(self, name: str) -> None:
        """Record that step *name* started (not completed yet) and write."""
        self.steps.append(
            {"name": name, "count": 0, "seconds": 0.0, "errors": [], "completed": False}
        )
        self.write()

    def end(self, count: int, seconds: float, errors: list[str]) -> None:
        """Record that the step begun last completed, and write."""
        self.steps[-1].update(count=count, seconds=seconds, errors=errors, completed=True)
        self.write()

    def write(self) -> None:
        """Rewrite the file; a parent that is gone (its directory removed) is ignored.

        :raises OSError: the file could not be written for another reason.
        """
        data = {
            "pid": os.getpid(),
            "trigger": self.trigger,
            "deadline_expired": self.deadline_expired,
            "timeout": self.timeout,
            "steps": self.steps,
        }
        tmp = f"{self.path}.{os.getpid()}.tmp"
        try:
            with open(tmp, "w", encoding="utf-8") as f:
                json.dump(data, f)
            os.replace(tmp, self.path)
        except FileNotFoundError:
            pass  # the parent has exited and removed its report directory
