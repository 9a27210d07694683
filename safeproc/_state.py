"""The child's mutable state, in one object: what child start learnt, what exit needs."""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from safeproc._forks import Boundary
    from safeproc._policy import CleanupPolicy, StdioMode
    from safeproc._report_writer import ReportWriter

__all__ = ["EXITING", "FINISHED", "RUNNING", "ChildExit"]

#: The target (or the plain library's own exit work) is running.
RUNNING = "running"
#: safeproc's exit sequence is running (after the plain bootstrap, or on SIGTERM).
EXITING = "exiting"
#: The exit sequence is over: the process ends next.
FINISHED = "finished"


class ChildExit:
    """One safe child's exit state, made by ``begin_child`` and read by ``finish_child``."""

    __slots__ = (
        "boundary",
        "errors",
        "exitcode",
        "forked",
        "logging_inherited",
        "name",
        "phase",
        "policy",
        "report",
        "sigterm_pending",
        "stdio",
        "step",
        "trigger",
    )

    def __init__(self, policy: CleanupPolicy, *, forked: bool, stdio: StdioMode, name: str) -> None:
        """Start in the :data:`RUNNING` phase, triggered by a normal exit."""
        self.policy = policy
        #: Whether the child inherited a parent's heap (fork, forkserver).
        self.forked = forked
        #: The resolved stdio mode (never "auto").
        self.stdio: StdioMode = stdio
        #: The process name, for diagnostics.
        self.name = name
        self.boundary: Boundary | None = None
        self.report: ReportWriter | None = None
        self.phase = RUNNING
        #: "exit", or "sigterm" once terminate() started the cleanup.
        self.trigger = "exit"
        #: SIGTERM arrived while the exit sequence ran: it is re-raised at its end.
        self.sigterm_pending = False
        #: The exit code the plain library gives (known once the bootstrap returned).
        self.exitcode = 0
        #: The step running now, for diagnostics.
        self.step: str | None = None
        #: logging was imported before this child started (its atexit hook,
        #: if any, was the parent's and was dropped).
        self.logging_inherited = False
        self.errors: list[str] = []

    def set_trigger(self, trigger: str) -> None:
        """Record what started the exit sequence (in the report too)."""
        self.trigger = trigger
        if self.report is not None:
            self.report.trigger = trigger
