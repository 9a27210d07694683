"""The child's exit sequence: what runs, in which order, and why.

Everything a safeproc child does beyond the plain library lives here, each
step a small named function, in the order it runs::

    parent                               child (SafeProcess._bootstrap)
    ------                               -----------------------------
    SafeProcess(cleanup=policy)
      .start()  --- fork / forkserver -->  begin_child()          at child start
                    / spawn (pickled)        freeze_inherited_heap       gc.freeze()
                                             mark_finalizer_boundary     weakref.finalize index
                                             drop_inherited_atexit       atexit._clear() (< 3.13)
                                             isolate_inherited_logging   parent's buffered records
                                             prepare_stdio               policy.stdio
                                             install_sigterm_cleanup     policy.sigterm
                                                                         (SIGTERM later runs
                                                                         finish_child, then
                                                                         dies by SIGTERM)
                                           plain _bootstrap()     target, thread join,
                                             run() returns -> arm deadline   multiprocessing's
                                                                             own finalizers
                                           finish_child()         in this order
                                             run_child_atexit
                                             run_child_finalizers
                                             collect_child_garbage
                                             shutdown_child_logging
                                             flush_child_files
                                             flush_stdio
      .exitcode  <-- os._exit(code) ----   (popen)
      .cleanup_report <-- report file ---  rewritten after every step

A forked child (fork, forkserver) finalizes only what it created: the
inherited heap is frozen, so ``gc.collect()`` and ``gc.get_objects()`` see
only child-made objects; finalizers older than the boundary and atexit
handlers registered before the child started never run in it. A spawned
child is a fresh interpreter whose normal exit already collects garbage,
shuts logging down and flushes files after ``_bootstrap`` returns: there
safeproc runs only the atexit and finalizer steps (so the deadline and the
report cover them) and the final stdio flush.

Every step runs in its own ``try``: an error is printed the way CPython
prints errors in ``__del__`` and atexit handlers (``os._exit`` would
otherwise hide it), never changes the exit code, and never stops the
steps after it.
"""

from __future__ import annotations

import gc
import io
import os
import sys
import threading
import time
import weakref
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

from safeproc import _compat
from safeproc._deadline import arm_deadline
from safeproc._report import ReportWriter, StepReport
from safeproc._sigterm import (
    die_by_sigterm,
    drop_inherited_sigterm_cleanup,
    install_sigterm_cleanup,
)
from safeproc._stdio import flush_stdio, prepare_stdio, resolve_stdio_mode

if TYPE_CHECKING:
    from safeproc._policy import CleanupPolicy, StdioMode

__all__ = [
    "ChildExit",
    "begin_child",
    "finish_child",
    "report_unraisable",
    "resume_collection",
    "run_child",
    "starting_safe_child",
]


# -- fork bookkeeping (runs in every process that imported safeproc) --------

_forked_since_import = False
_threads_at_last_fork = 1


@dataclass(frozen=True)
class ServerFork:
    """What a forkserver child inherited: the server's state at the fork.

    A forkserver child imports the parent's main module itself, after the
    fork and before its bootstrap, as a spawned child does: the atexit
    handlers, finalizers and logging handlers that import creates are the
    child's own. The boundary is therefore taken at the fork, not at child
    start (3.13's forkserver clears atexit there too).
    """

    logging_imported: bool
    logging_handlers: tuple[Any, ...]
    finalizer_boundary: int


#: Set in a child the forkserver forked (where the server imported safeproc).
_server_fork: ServerFork | None = None
_FORKSERVER_MODULES = frozenset({"multiprocessing.forkserver", "multiprocess.forkserver"})


# -- no collection between a safe fork and the freeze --------------------------
#
# A forked child inherits the parent's uncollected garbage. An automatic
# collection in the child before freeze_inherited_heap() (threading's at-fork
# hook, the launcher, the bootstrap all allocate) would run the parent's
# __del__ methods in the child. So the thread starting a safe child marks the
# fork (starting_safe_child); the collector is paused across that fork and
# stays paused in the child until its heap is frozen (resume_collection).

_starting = threading.local()
#: Threads whose fork in progress paused the collector (any thread's pause
#: pauses it process-wide; the last one to finish resumes it).
_pausing: set[int] = set()
#: In a safe child: collection was paused at its fork, resume after the freeze.
_paused_in_child = False


class starting_safe_child:  # noqa: N801 - used as a function: with starting_safe_child():
    """Mark the forks this thread makes while in the block as safe children's."""

    def __enter__(self) -> None:
        _starting.depth = getattr(_starting, "depth", 0) + 1

    def __exit__(self, *exc: object) -> None:
        _starting.depth -= 1


def _before_fork() -> None:
    global _threads_at_last_fork  # noqa: PLW0603 - read by the child
    if getattr(_starting, "depth", 0) > 0 and (gc.isenabled() or _pausing):
        gc.disable()
        _pausing.add(threading.get_ident())
    _threads_at_last_fork = threading.active_count()


def _after_fork_in_parent() -> None:
    me = threading.get_ident()
    if me in _pausing:
        _pausing.discard(me)
        if not _pausing:
            gc.enable()


def resume_collection() -> None:
    """Re-enable the collector paused at this child's fork (once frozen)."""
    global _paused_in_child  # noqa: PLW0603 - once per child
    if _paused_in_child:
        _paused_in_child = False
        gc.enable()


def _after_fork_in_child() -> None:
    global _forked_since_import, _server_fork, _paused_in_child  # noqa: PLW0603
    _forked_since_import = True
    me = threading.get_ident()
    paused_here, paused_elsewhere = me in _pausing, bool(_pausing - {me})
    _pausing.clear()  # the other threads do not exist here
    if paused_here:
        _paused_in_child = True
    elif paused_elsewhere:
        gc.enable()  # another parent thread's safe fork paused it, not ours
    # The parent's start() never returns here: this child's own forks are
    # marked only by its own starting_safe_child blocks.
    _starting.depth = 0
    # The frame that called os.fork(): the forkserver's serving loop?
    caller = sys._getframe(1)
    if caller.f_globals.get("__name__") in _FORKSERVER_MODULES:
        _server_fork = _mark_server_fork()


def _mark_server_fork() -> ServerFork:
    """Draw the inherited/created boundary of a forkserver child at its fork.

    Plain forkserver children are forked here too; nothing done here shows
    in them: the server's atexit handlers never run in a plain child (its
    launcher ends it with ``os._exit``; 3.13's clears them as well).
    """
    logging = sys.modules.get("logging")
    handlers: tuple[Any, ...] = () if logging is None else tuple(logging._handlerList)
    boundary = _compat.next_finalize_index()
    _compat.clear_atexit()
    # The hook is armed again by the child's first finalizer.
    weakref.finalize._registered_with_atexit = False  # type: ignore[attr-defined]
    return ServerFork(
        logging_imported=logging is not None,
        logging_handlers=handlers,
        finalizer_boundary=boundary,
    )


os.register_at_fork(
    before=_before_fork,
    after_in_parent=_after_fork_in_parent,
    after_in_child=_after_fork_in_child,
)


def is_forked_child(start_method: str | None) -> bool:
    """Tell whether this process inherited a parent's heap.

    A fork child (and a forkserver child whose server had imported safeproc)
    ran the at-fork hook; a forkserver child whose server had not is
    recognised by its start method.
    """
    return _forked_since_import or start_method == "forkserver"


# -- state ------------------------------------------------------------------


@dataclass
class ChildExit:
    """What :func:`begin_child` learnt that :func:`finish_child` needs."""

    policy: CleanupPolicy
    forked: bool
    stdio: StdioMode
    finalizer_boundary: int = 0
    inherited_handlers: tuple[Any, ...] = ()
    report: ReportWriter | None = None
    finished: bool = False
    #: SIGTERM arrived during the normal exit sequence: re-raised at its end.
    sigterm_pending: bool = False
    #: logging was imported before this child started (so its own atexit
    #: hook, if any, was the parent's and was dropped).
    logging_inherited: bool = False
    errors: list[str] = field(default_factory=list)

    @property
    def trigger(self) -> str:
        """``"exit"``, or ``"sigterm"`` once terminate() started the cleanup."""
        return self._trigger

    @trigger.setter
    def trigger(self, value: str) -> None:
        self._trigger = value
        if self.report is not None:
            self.report.trigger = value

    _trigger: str = "exit"


# -- errors -----------------------------------------------------------------


def report_unraisable(err_msg: str, obj: object) -> None:
    """Print the exception being handled as CPython prints ``__del__`` errors.

    Goes through :data:`sys.unraisablehook`, so a custom hook sees it too.
    """
    args = _compat.unraisable_hook_args(err_msg, obj)
    try:
        sys.unraisablehook(args)
    except BaseException:  # noqa: BLE001 - a broken hook: last resort
        sys.__unraisablehook__(args)


class _ErrorRecorder:
    """Records unraisable errors for the report, then prints them as usual."""

    def __init__(self, sink: list[str]) -> None:
        self.sink = sink
        self.previous = sys.unraisablehook

    def __call__(self, args: Any) -> None:  # noqa: ANN401 - UnraisableHookArgs
        name = getattr(args.exc_type, "__name__", "Exception")
        self.sink.append(f"{args.err_msg or 'Exception ignored in'}: {name}: {args.exc_value}")
        self.previous(args)

    def __enter__(self) -> None:
        sys.unraisablehook = self

    def __exit__(self, *exc: object) -> None:
        sys.unraisablehook = self.previous


# -- the whole child --------------------------------------------------------


def run_child(
    process: Any,  # noqa: ANN401 - a BaseProcess of either backend
    plain_bootstrap: Callable[[], int],
    policy: CleanupPolicy,
    *,
    start_method: str | None,
    report_path: str | None,
) -> int:
    """Run a child: start steps, the plain bootstrap, the exit sequence.

    Returns the plain bootstrap's exit code, which the launcher passes to
    ``os._exit``. If the start steps fail (a bug in safeproc), the child
    reports it and runs exactly as the plain library would.
    """
    state = None
    try:
        state = begin_child(policy, start_method=start_method, report_path=report_path)
        # An instance attribute shadows run() for this child only.
        process.run = wrap_run_with_deadline(process.run, state)
    except BaseException:  # noqa: BLE001 - fall back to plain behaviour
        report_unraisable("Exception ignored in safeproc child start", process)
    exitcode = plain_bootstrap()
    if state is not None:
        finish_child(state)
    return exitcode


# -- at child start ---------------------------------------------------------


def begin_child(
    policy: CleanupPolicy,
    *,
    start_method: str | None,
    report_path: str | None,
) -> ChildExit:
    """Record the boundary between inherited and child-made state."""
    started = time.perf_counter()
    forked = is_forked_child(start_method)
    if forked:
        # First: an allocation below must not collect the parent's garbage.
        freeze_inherited_heap()
        resume_collection()
    state = ChildExit(
        policy=policy,
        forked=forked,
        stdio=resolve_stdio_mode(policy.stdio, forked=forked, parent_threads=_threads_at_last_fork),
    )
    server_fork = _server_fork if start_method == "forkserver" else None
    if server_fork is not None:
        state.logging_inherited = server_fork.logging_imported
    else:
        state.logging_inherited = forked and "logging" in sys.modules
    if policy.report and report_path is not None:
        state.report = ReportWriter(report_path, trigger="exit", timeout=policy.timeout)
    if forked:
        state.finalizer_boundary = mark_finalizer_boundary(policy, server_fork)
        if server_fork is None:
            drop_inherited_atexit()  # a forkserver child's were dropped at its fork
        state.inherited_handlers = isolate_inherited_logging(server_fork)
    prepare_stdio(state.stdio)
    if policy.sigterm == "cleanup":
        install_sigterm_cleanup(state, finish_child)
    elif forked:
        drop_inherited_sigterm_cleanup()
    if state.report is not None:
        # Timed as a step so the report shows what child start cost.
        state.report.steps.append(
            StepReport(name="start", count=int(forked), seconds=time.perf_counter() - started)
        )
    return state


def freeze_inherited_heap() -> None:
    """Move every inherited object to the permanent generation.

    A later ``gc.collect()`` (ours, or one the child's allocations trigger)
    then never finalizes the parent's garbage, and costs what the child
    created rather than what it inherited.
    """
    gc.freeze()


def mark_finalizer_boundary(policy: CleanupPolicy, server_fork: ServerFork | None) -> int:
    """Return the first ``weakref.finalize`` index that belongs to the child.

    Weakref's own exit hook is made to select only finalizers at or above
    the boundary (one class attribute written, rather than every inherited
    entry: each write to inherited memory costs a copy-on-write fault). The
    hook is re-armed: the child's first finalizer registers it with atexit at
    the position a normal program would (3.13 loses child finalizers because
    the inherited "already registered" flag stays set). With
    ``finalizers=False`` it selects none. A forkserver child's boundary (and
    re-arming) dates from its fork.
    """
    if server_fork is not None:
        boundary = server_fork.finalizer_boundary
    else:
        boundary = _compat.next_finalize_index()
    if not policy.finalizers:
        weakref.finalize._registered_with_atexit = True  # type: ignore[attr-defined]
    elif server_fork is None:  # a forkserver child's was re-armed at its fork
        weakref.finalize._registered_with_atexit = False  # type: ignore[attr-defined]
    _compat.select_finalizers_from(boundary if policy.finalizers else sys.maxsize)
    return boundary


def drop_inherited_atexit() -> None:
    """Forget the parent's atexit handlers (3.13's launcher already does)."""
    if not _compat.POPEN_CLEARS_ATEXIT:
        _compat.clear_atexit()


def isolate_inherited_logging(server_fork: ServerFork | None) -> tuple[Any, ...]:
    """Return the inherited logging handlers; empty their record buffers.

    A parent's ``MemoryHandler`` buffer holds records the parent will flush
    itself: the child's copy is dropped so they never appear twice, and the
    records the child logs through it reach the target once, at child exit.
    A forkserver child inherited the handlers the server had at its fork.
    """
    logging = sys.modules.get("logging")
    if logging is None:
        return ()
    if server_fork is not None:
        inherited = server_fork.logging_handlers
    else:
        inherited = tuple(logging._handlerList)
    buffering = _buffering_handler_class()
    if buffering is not None:
        for ref in inherited:
            handler = ref()
            if isinstance(handler, buffering):
                handler.buffer = []
    return inherited


# -- at child end -----------------------------------------------------------


def wrap_run_with_deadline(run: Callable[[], None], state: ChildExit) -> Callable[[], None]:
    """Return *run* so that the cleanup deadline starts when it ends.

    The plain bootstrap joins the child's non-daemon threads right after
    ``run()``; arming the timer here puts that join under the deadline too.
    """

    def run_then_arm_deadline() -> None:
        try:
            run()
        finally:
            arm_deadline(state.policy.timeout)
            if state.report is not None:
                # The plain bootstrap joins threads next: a hang there shows.
                state.report.steps.append(StepReport(name="threads", completed=False))
                _write_report(state.report)

    return run_then_arm_deadline


_Step = Callable[[ChildExit], int]


def finish_child(state: ChildExit) -> None:
    """Run the exit sequence once, in order; each step isolated."""
    if state.finished:
        return
    state.finished = True
    report = state.report
    if report is not None and report.steps and report.steps[-1].name == "threads":
        report.steps[-1] = StepReport(name="threads", count=1)
    left_to_interpreter: list[tuple[str, _Step]] = []
    with _ErrorRecorder(state.errors):
        for name, step, needs_exit_help in _enabled_steps(state.policy):
            if needs_exit_help and not _no_interpreter_exit(state):
                left_to_interpreter.append((name, step))
            else:
                _run_step(state, name, step)
        _flush_stdio_step_if_enabled(state)
    # The deadline stays armed: a forked child calls os._exit next, and a
    # spawned child's interpreter exit (gc, module teardown) is cleanup too.
    if state.sigterm_pending:
        # SIGTERM arrived during the sequence: no interpreter exit will do
        # what was left to it. (One check, so no window between two.)
        with _ErrorRecorder(state.errors):
            for name, step in left_to_interpreter:
                _run_step(state, name, step)
            if left_to_interpreter:
                _flush_stdio_step_if_enabled(state)
        die_by_sigterm()


def _enabled_steps(policy: CleanupPolicy) -> list[tuple[str, _Step, bool]]:
    """Return the policy's steps in order: (name, step, left to a spawned child's exit)."""
    sequence: list[tuple[str, bool, _Step, bool]] = [
        ("atexit", policy.atexit, run_child_atexit, False),
        ("finalizers", policy.finalizers, run_child_finalizers, False),
        ("gc", policy.gc, collect_child_garbage, True),
        ("logging", policy.logging, shutdown_child_logging, True),
        # Not left to the interpreter: 3.9's exit does not flush a file held
        # by a spawned child's __mp_main__ globals.
        ("files", policy.files, flush_child_files, False),
    ]
    return [(name, step, later) for name, enabled, step, later in sequence if enabled]


def _flush_stdio_step_if_enabled(state: ChildExit) -> None:
    if state.stdio != "none":
        _run_step(state, "stdio", _flush_stdio_step)


def _no_interpreter_exit(state: ChildExit) -> bool:
    """Tell whether nothing after safeproc will finalize this child.

    A spawned child's own interpreter exit collects garbage, shuts logging
    down and flushes files; a forked child's ``os._exit`` does none of it,
    and neither does death by SIGTERM. With ``sigterm="cleanup"`` a spawned
    child does it all itself too: CPython restores SIGTERM's default action
    early in interpreter exit, so a terminate() landing there would kill it
    before its garbage is collected.
    """
    return (
        state.forked
        or state.policy.sigterm == "cleanup"
        or state.trigger == "sigterm"
        or state.sigterm_pending
    )


def _run_step(state: ChildExit, name: str, step: Callable[[ChildExit], int]) -> None:
    report = state.report
    if report is not None:
        report.steps.append(StepReport(name=name, completed=False))
        _write_report(report)
    errors_before = len(state.errors)
    started = time.perf_counter()
    count = 0
    try:
        count = step(state)
    except BaseException:  # noqa: BLE001 - reported below, never fatal
        report_unraisable(f"Exception ignored in safeproc cleanup step {name!r}", step)
    if report is not None:
        report.steps[-1] = StepReport(
            name=name,
            count=count,
            seconds=time.perf_counter() - started,
            errors=tuple(state.errors[errors_before:]),
        )
        _write_report(report)


def _write_report(report: ReportWriter) -> None:
    try:
        report.write()
    except FileNotFoundError:
        pass  # the parent has exited and removed its report directory
    except OSError:
        report_unraisable("Exception ignored while writing the safeproc report", report.path)


def run_child_atexit(state: ChildExit) -> int:
    """Run the child's atexit handlers, last registered first, once."""
    count = _compat.atexit_handler_count()
    # Also empties the list: 3.13's own run after _bootstrap is a no-op.
    unreported = _compat.run_atexit_handlers()
    if unreported is not None:
        state.errors.append(f"Error in atexit._run_exitfuncs: {unreported!r}")
    return count


def run_child_finalizers(state: ChildExit) -> int:
    """Run the child's ``weakref.finalize(..., atexit=True)`` callbacks left.

    Usually weakref's own hook already ran them during the atexit step, at
    a normal program's position; this runs what is left (``atexit=False``,
    or a hook registered before the child started). It mirrors
    ``weakref.finalize._exitfunc`` (newest first, gc disabled, re-selecting
    when a callback creates finalizers), for indices at or above the
    child's boundary only.
    """
    cls: Any = weakref.finalize
    registry = _compat.finalize_registry()
    boundary = state.finalizer_boundary

    def select() -> list[Any]:
        live = [(f, i) for f, i in list(registry.items()) if i.atexit and i.index >= boundary]
        live.sort(key=lambda item: item[1].index)
        return [f for f, _ in live]

    ran = 0
    reenable_gc = gc.isenabled()
    gc.disable()
    try:
        pending: list[Any] | None = None
        while True:
            if pending is None or cls._dirty:
                pending = select()
                cls._dirty = False
            if not pending:
                break
            finalizer = pending.pop()
            try:
                finalizer()
            except Exception:  # noqa: BLE001 - reported like CPython does
                report_unraisable("Exception ignored in weakref.finalize callback", finalizer)
            ran += 1
    finally:
        # As at interpreter exit: no finalizer runs after this point.
        cls._shutdown = True
        if reenable_gc:
            gc.enable()
    return ran


def collect_child_garbage(state: ChildExit) -> int:  # noqa: ARG001 - step signature
    """Collect the cyclic garbage the child created (inherited is frozen)."""
    return gc.collect()


def shutdown_child_logging(state: ChildExit) -> int:
    """Flush and close child-made handlers; flush inherited buffering ones.

    The child's handlers go through one ``logging.shutdown`` call, as at a
    normal exit: newest first, and, with ``logging.raiseExceptions`` (the
    default), a ``close()`` that raises ends it there, reported as an
    atexit callback error. Every start method behaves the same.

    When logging was first imported in this child, its own atexit hook
    (``logging.shutdown``) already closed every handler in the atexit step:
    closing them again would run close() twice.
    """
    logging = sys.modules.get("logging")
    if logging is None or (not state.logging_inherited and state.policy.atexit):
        return 0
    inherited = set(state.inherited_handlers)
    child_refs = [
        ref
        for ref in list(logging._handlerList)
        if ref not in inherited and not getattr(ref(), "_closed", False)
    ]
    if child_refs:
        try:
            logging.shutdown(child_refs)
        except Exception:  # noqa: BLE001 - reported like CPython does
            report_unraisable(*_compat.atexit_error_message(logging.shutdown))
    flushed = 0
    buffering = _buffering_handler_class()
    if buffering is not None:
        for ref in state.inherited_handlers:
            handler = ref()
            if isinstance(handler, buffering):
                try:
                    handler.flush()
                except Exception:  # noqa: BLE001 - reported like CPython does
                    report_unraisable("Exception ignored while flushing logging handler", handler)
                flushed += 1
    return len(child_refs) + flushed


def _buffering_handler_class() -> Any:  # noqa: ANN401 - a class or None
    handlers = sys.modules.get("logging.handlers")
    return getattr(handlers, "BufferingHandler", None)


def flush_child_files(state: ChildExit) -> int:  # noqa: ARG001 - step signature
    """Flush buffered files the child opened and still holds.

    ``gc.get_objects()`` excludes the frozen (inherited) heap, so an
    inherited file, whose buffer holds the parent's bytes, is never touched.
    Text layers are flushed before the binary buffers under them.
    """
    streams = (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__)
    std = {id(s) for s in streams} | {id(getattr(s, "buffer", None)) for s in streams}
    text: list[Any] = []
    binary: list[Any] = []
    for obj in gc.get_objects():
        if isinstance(obj, io.TextIOWrapper):
            text.append(obj)
        elif isinstance(obj, (io.BufferedWriter, io.BufferedRandom)):
            binary.append(obj)
    flushed = 0
    for f in (*text, *binary):
        if id(f) in std:
            continue
        try:
            if f.closed or not f.writable():
                continue
        except ValueError:
            continue  # still being constructed (a signal interrupted open())
        try:
            f.flush()
        except RuntimeError:
            continue  # "reentrant call": SIGTERM interrupted a write to it
        except (OSError, ValueError):
            report_unraisable("Exception ignored while flushing file", f)
        flushed += 1
    return flushed


def _flush_stdio_step(state: ChildExit) -> int:
    flush_stdio(state.stdio)
    return 2
