"""The child's exit sequence: what runs, in which order, and why.

Everything a safeproc child does beyond the plain library lives here, each
step a small named function, in the order it runs::

    parent                               child (SafeProcess._bootstrap)
    ------                               -----------------------------
    SafeProcess(cleanup=policy)
      .start()  --- fork / forkserver -->  begin_child()            at child start
                    / spawn (pickled)        draw_boundary             gc.freeze(): inherited
                                             arm_child_finalizers      weakref.finalize's exit hook
                                             isolate_inherited_logging parent's buffered records
                                             prepare_stdio             policy.stdio
                                             install_sigterm_cleanup   policy.sigterm (SIGTERM later
                                                                       runs the sequence below, then
                                                                       dies by SIGTERM)
                                           plain _bootstrap()       target, thread join,
                                                                    multiprocessing's own finalizers
                                           finish_child()           in this order:
                                             run_child_atexit         3.13+: plain's, unbounded
                                             run_other_backends_exit  -- the deadline starts here --
                                             run_child_finalizers
                                             collect_child_garbage    cycles, then module globals
                                             shutdown_child_logging
                                             close_and_flush_files
                                             flush_stdio
      .exitcode  <-- os._exit(code) ----   (popen)
      .cleanup_report <-- report file ---  rewritten after every step

A forked child (fork, forkserver) finalizes only what it created: the
inherited heap is frozen, so ``gc.collect()`` and ``gc.get_objects()`` see
only child-made objects; finalizers older than the boundary and atexit
handlers registered before the child started never run in it. A spawned
child is a fresh interpreter whose own normal exit follows the bootstrap:
safeproc runs its atexit handlers (unbounded, as that exit would), then
finalizes its main module's globals and closes what it left open while
its modules still work, and leaves the rest to that exit.

The deadline bounds only what safeproc adds, never the plain library's own
exit work (its thread join and finalizers, and from 3.13 the atexit
handlers its launchers run). When it expires, cleanup stops where it is and
the child ends as the plain library would have ended it: with the plain
exit code, or by SIGTERM after ``terminate()``.

Every step runs in its own ``try``: an error is printed the way CPython
prints errors in ``__del__`` and atexit handlers (``os._exit`` would
otherwise hide it), never changes the exit code, and never stops the
steps after it.
"""

from __future__ import annotations

import faulthandler
import gc
import os
import sys
import time
import weakref
from collections.abc import Callable

from safeproc import _compat, _forks, _objects
from safeproc._deadline import Deadline, announce_expiry
from safeproc._errors import ErrorRecorder, report_unraisable
from safeproc._sigterm import (
    die_by_sigterm,
    drop_inherited_sigterm_cleanup,
    install_sigterm_cleanup,
    restore_default_sigterm,
)
from safeproc._state import EXITING, FINISHED, RUNNING, ChildExit
from safeproc._stdio import flush_stdio, prepare_stdio, resolve_stdio_mode

TYPE_CHECKING = False
if TYPE_CHECKING:
    from types import FrameType
    from typing import Any

    from safeproc._forks import Boundary
    from safeproc._policy import CleanupPolicy

__all__ = ["begin_child", "finish_child", "run_child", "running_child"]

_FORKED_METHODS = frozenset({"fork", "forkserver"})

#: (pid, state) of the safe child running in this process: a pool whose
#: workers end inside their target (billiard's ``os._exit``) finishes it there.
_running: tuple[int, ChildExit] | None = None


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
        state = begin_child(
            policy,
            start_method=start_method,
            report_path=report_path,
            name=getattr(process, "_name", "?"),
        )
    except BaseException:  # noqa: BLE001 - fall back to plain behaviour
        report_unraisable("Exception ignored in safeproc child start", process)
    if state is not None:
        global _running  # noqa: PLW0603 - once per child
        _running = (os.getpid(), state)
    exitcode = plain_bootstrap()
    if state is not None:
        finish_child(state, exitcode)
    return exitcode


def running_child() -> ChildExit | None:
    """Return the exit state of the safe child this process is, if it is one.

    ``None`` in a parent, a plain child, or a process forked from a safe
    child without being one itself (the state would be its parent's).
    """
    running = _running
    if running is None or running[0] != os.getpid():
        return None
    return running[1]


# -- at child start ---------------------------------------------------------


def begin_child(
    policy: CleanupPolicy,
    *,
    start_method: str | None,
    report_path: str | None,
    name: str = "?",
) -> ChildExit:
    """Record the boundary between inherited and child-made state; prepare the exit."""
    started = time.perf_counter()
    forked = start_method in _FORKED_METHODS
    boundary = None
    if forked:
        # A forkserver child's boundary was drawn before it imported the
        # main module; a fork child's is drawn here, first thing.
        boundary = _forks.pre_main_boundary() if start_method == "forkserver" else None
        if boundary is None:
            boundary = _forks.draw_boundary()
    state = ChildExit(
        policy,
        forked=forked,
        stdio=resolve_stdio_mode(policy.stdio, forked=forked),
        name=name,
    )
    state.boundary = boundary
    state.logging_inherited = boundary is not None and boundary.logging_imported
    if policy.report and report_path is not None:
        from safeproc._report_writer import ReportWriter  # noqa: PLC0415 - report=True only

        state.report = ReportWriter(report_path, trigger="exit", timeout=policy.timeout)
    if boundary is not None:
        arm_child_finalizers(policy, boundary)
        isolate_inherited_logging(boundary)
    prepare_stdio(state.stdio, forked=forked)
    if policy.sigterm == "cleanup":
        install_sigterm_cleanup(state, cleanup_on_sigterm)
    elif forked:
        drop_inherited_sigterm_cleanup()
    if state.report is not None:
        # Timed as a step so the report shows what child start cost.
        state.report.begin("start")
        state.report.end(int(forked), time.perf_counter() - started, [])
    return state


def arm_child_finalizers(policy: CleanupPolicy, boundary: Boundary) -> None:
    """Make ``weakref.finalize``'s exit hook run the child's finalizers only.

    The hook selects indices at or above the boundary (one class attribute
    written, rather than every inherited entry: each write to inherited
    memory costs a copy-on-write fault). Up to 3.12, where the plain child
    runs no atexit handler, the hook is re-armed: the child's first
    finalizer registers it with atexit at the position a normal program
    would. From 3.13 the plain launcher runs the atexit handlers itself, and
    the hook is left exactly as the plain child has it; where the inherited
    flag keeps the plain child from registering it (the parent had made a
    finalizer), :func:`run_child_finalizers` runs the child's.
    """
    weakref_finalize: Any = weakref.finalize
    if not policy.finalizers:
        if not _compat.POPEN_RUNS_ATEXIT:
            _compat.select_finalizers_from(sys.maxsize)  # none: left to the plain library
        return
    _compat.select_finalizers_from(boundary.finalizer_index)
    if not _compat.POPEN_RUNS_ATEXIT and not boundary.drawn_before_main:
        # (A forkserver child's marker re-armed it before the main module's import.)
        weakref_finalize._registered_with_atexit = False


def isolate_inherited_logging(boundary: Boundary) -> None:
    """Empty the record buffers of inherited buffering handlers.

    A parent's ``MemoryHandler`` buffer holds records the parent will flush
    itself: the child's copy is dropped so they never appear twice, and the
    records the child logs through it reach the target once, at child exit.
    """
    buffering = _buffering_handler_class()
    if buffering is None:
        return
    for ref in boundary.logging_handlers:
        handler = ref()
        if isinstance(handler, buffering):
            handler.buffer = []


def _buffering_handler_class() -> Any:  # noqa: ANN401 - a class or None
    handlers = sys.modules.get("logging.handlers")
    return getattr(handlers, "BufferingHandler", None)


# -- at child end -----------------------------------------------------------


_Step = Callable[[ChildExit], int]


def finish_child(state: ChildExit, exitcode: int) -> None:
    """Run the exit sequence once, after the plain bootstrap returned *exitcode*.

    Never raises. Returns normally unless the deadline expired or SIGTERM
    arrived meanwhile (then the process ends here, as plain would end it).
    """
    if state.phase != RUNNING:
        return  # SIGTERM ran the sequence already
    state.exitcode = exitcode
    state.phase = EXITING
    try:
        if state.forked:
            _run_sequence(state, _exit_steps(state))
        else:
            _hand_over_to_interpreter(state)
    except BaseException:  # noqa: BLE001 - never into the launcher
        report_unraisable("Exception ignored in safeproc's exit sequence", None)
    # One store, then one check: a SIGTERM arriving after the store sees
    # "finished" and dies at once; one before it is seen here.
    state.phase = FINISHED
    if state.sigterm_pending:
        die_by_sigterm()


def cleanup_on_sigterm(state: ChildExit) -> None:
    """Run the whole exit sequence after SIGTERM, under the deadline (the handler dies next).

    The plain child would die at once: everything here is safeproc's, so
    all of it is bounded, and nothing is left to an interpreter exit.
    """
    state.phase = EXITING
    state.set_trigger("sigterm")
    try:
        _run_sequence(state, _sigterm_steps(state))
    except BaseException:  # noqa: BLE001 - the handler dies by SIGTERM next
        report_unraisable("Exception ignored in safeproc's exit sequence", None)
    state.phase = FINISHED


def _hand_over_to_interpreter(state: ChildExit) -> None:
    """Run a spawned child's steps, then leave the rest to its interpreter's exit.

    The atexit handlers run first, where the interpreter would run them
    next, and unbounded, as plain (the report can then count them, and a
    ``terminate()`` that lands meanwhile lets them finish before the child
    dies by SIGTERM). Then what the interpreter's exit does too late to
    work, bounded: it finalizes the main module's globals only after every
    other module is torn down (a spawned child runs the main module into
    runpy's namespace, outside :data:`sys.modules`), so archives, temporary
    files and database connections the child never closed are closed here,
    while their modules still work, as they are in the same code run as its
    own program. SIGTERM's default action comes back for the rest, as plain.
    """
    unbounded = {"atexit", "finalizers"}
    _run_sequence(
        state, [(name, step, name not in unbounded) for name, step, _ in _sigterm_steps(state)]
    )
    _forks.thaw_startup_heap()
    restore_default_sigterm()


#: (name, step, bounded: whether the deadline covers it).
_StepPlan = list[tuple[str, _Step, bool]]


def _exit_steps(state: ChildExit) -> _StepPlan:
    """Return the steps of a forked child's normal exit, in order."""
    policy = state.policy
    # From 3.13 the plain launcher runs the atexit list itself (the child's
    # handlers, then multiprocessing's own exit function): that is the
    # plain library's work, run here in its place and unbounded.
    plan: _StepPlan = []
    if policy.atexit:
        plan.append(("atexit", run_child_atexit, not _compat.POPEN_RUNS_ATEXIT))
        plan.append(("backends", run_other_backends_exit, True))
    return plan + _bounded_steps(state)


def _sigterm_steps(state: ChildExit) -> _StepPlan:
    """Return the steps after SIGTERM: all of them safeproc's, so all bounded."""
    plan: _StepPlan = []
    if state.policy.atexit:
        plan.append(("atexit", run_child_atexit, True))
        if state.forked:
            plan.append(("backends", run_other_backends_exit, True))
    return plan + _bounded_steps(state)


def _bounded_steps(state: ChildExit) -> _StepPlan:
    policy = state.policy
    sequence: list[tuple[str, bool, _Step]] = [
        ("finalizers", policy.finalizers, run_child_finalizers),
        ("gc", policy.gc, collect_child_garbage),
        ("logging", policy.logging, shutdown_child_logging),
        ("files", policy.files, close_and_flush_child_files),
        ("stdio", state.stdio != "none", flush_child_stdio),
    ]
    return [(name, step, True) for name, enabled, step in sequence if enabled]


def _run_sequence(state: ChildExit, plan: _StepPlan) -> None:
    deadline = Deadline(state.policy.timeout, lambda frame: _deadline_expired(state, frame))
    try:
        with ErrorRecorder(state.errors):
            for name, step, bounded in plan:
                if bounded:
                    deadline.run()
                else:
                    deadline.pause()
                _run_step(state, name, step)
    finally:
        deadline.stop()


def _run_step(state: ChildExit, name: str, step: _Step) -> None:
    report = state.report
    state.step = name
    if report is not None:
        _write_report(report.begin, name)
    errors_before = len(state.errors)
    started = time.perf_counter()
    count = 0
    try:
        count = step(state)
    except Exception:  # noqa: BLE001 - reported below, never fatal
        report_unraisable(f"Exception ignored in safeproc cleanup step {name!r}", step)
    if report is not None:
        _write_report(
            report.end, count, time.perf_counter() - started, state.errors[errors_before:]
        )
    state.step = None


def _write_report(write: Callable[..., None], *args: object) -> None:
    try:
        write(*args)
    except OSError:
        report_unraisable("Exception ignored while writing the safeproc report", None)


def _deadline_expired(state: ChildExit, frame: FrameType | None) -> None:  # noqa: ARG001
    """Stop cleaning up and end the child as the plain library would (never returns).

    Runs in the deadline's signal handler. The deadline's last tick, a
    second later, bounds what it does here.
    """
    try:
        ending = (
            "dying by SIGTERM"
            if state.trigger == "sigterm" or state.sigterm_pending
            else f"exiting with code {state.exitcode}"
        )
        fd = announce_expiry(state.policy.timeout, state.name, state.step, ending)
        faulthandler.dump_traceback(file=fd, all_threads=True)
    except BaseException:  # noqa: BLE001, S110 - diagnostics only: the exit below matters
        pass
    try:
        if state.report is not None:
            state.report.deadline_expired = True
            state.report.write()
    except BaseException:  # noqa: BLE001, S110 - diagnostics only
        pass
    if state.stdio != "none":
        flush_stdio(state.stdio)
    if state.trigger == "sigterm" or state.sigterm_pending:
        die_by_sigterm()
    os._exit(state.exitcode)


# -- the steps --------------------------------------------------------------


def run_child_atexit(state: ChildExit) -> int:  # noqa: ARG001 - step signature
    """Run the child's atexit handlers, last registered first, once."""
    count = _compat.atexit_handler_count()
    # Also empties the list: 3.13's own run after _bootstrap is a no-op.
    _compat.run_atexit_handlers()
    return count


def run_other_backends_exit(state: ChildExit) -> int:
    """Run the exit function of the other multiprocessing package the child used.

    A program using both the standard library and ``multiprocess`` runs
    both packages' exit functions at a normal exit (each registers one with
    atexit): they join the children the program started with that package
    and run its ``Finalize`` callbacks (a manager's shutdown, a queue's
    feeder flush). The child's own package did so in the plain bootstrap;
    the other one's is run here, over what the child made with it only.
    """
    boundary = state.boundary
    if boundary is None:
        return 0
    ran = 0
    for name, (children, finalizers) in boundary.other_backends.items():
        process = sys.modules.get(f"{name}.process")
        util = sys.modules.get(f"{name}.util")
        if process is None or util is None or util._exiting:
            continue
        # The parent's children and finalizers of this package are not the
        # child's to join or run.
        process._children.difference_update(children)
        for key in finalizers:
            util._finalizer_registry.pop(key, None)
        if not process._children and not util._finalizer_registry:
            continue
        util._exit_function()
        ran += 1
    return ran


def run_child_finalizers(state: ChildExit) -> int:
    """Run the child's ``weakref.finalize(..., atexit=True)`` callbacks left.

    Usually weakref's own hook already ran them during the atexit step, at
    a normal program's position; this runs what is left (a hook the
    inherited flag kept from registering, a forkserver child's module-level
    finalizers). It mirrors ``weakref.finalize._exitfunc``
    (newest first, gc disabled, re-selecting when a callback creates
    finalizers), for indices at or above the child's boundary only.
    """
    cls: Any = weakref.finalize
    registry = _compat.finalize_registry()
    boundary = 0 if state.boundary is None else state.boundary.finalizer_index

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


def collect_child_garbage(state: ChildExit) -> int:
    """Collect the child's cyclic garbage, then release what its module globals hold.

    As a normal exit does: a collection, then module teardown (only the
    globals that hold child-made objects with ``__del__``, see
    :mod:`safeproc._objects`), then a collection of what that freed. The
    inherited heap is frozen: neither touches it.
    """
    found = _collect(state)
    # A spawned child's modules are its own, torn down by its interpreter's
    # exit: only its main module's globals are released early (see
    # _hand_over_to_interpreter).
    released = _objects.release_child_globals(main_only=not state.forked)
    if released:
        found += released + gc.collect()
    return found


def _collect(state: ChildExit) -> int:
    """Collect every generation the collector sees; return what it found.

    In a forked child that has run no collection since its inherited heap
    was frozen (out of every generation), every object the collector sees
    is in the youngest generation: collecting that one finds what a full
    collection would. It skips the full collection's last stage, which
    empties the interpreter's free lists: in a forked child those cached
    objects lie in inherited pages, and freeing them copies 40 to 70 pages
    (130-250 µs on 3.13-3.15). Any collection since, automatic or the
    program's, may have aged objects: then the collection is full.
    """
    boundary = state.boundary
    if boundary is not None and _forks.collections_so_far() == boundary.collections:
        return gc.collect(0)
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
    inherited = () if state.boundary is None else state.boundary.logging_handlers
    # By identity: a dead weak reference cannot be hashed (an inherited
    # handler a child's basicConfig(force=True) freed).
    inherited_ids = {id(ref) for ref in inherited}
    child_refs = [
        ref
        for ref in list(logging._handlerList)
        if id(ref) not in inherited_ids and not getattr(ref(), "_closed", False)
    ]
    if child_refs:
        try:
            logging.shutdown(child_refs)
        except Exception:  # noqa: BLE001 - reported like CPython does
            report_unraisable(*_compat.atexit_error_message(logging.shutdown))
    flushed = 0
    buffering = _buffering_handler_class()
    if buffering is not None:
        for ref in inherited:
            handler = ref()
            if isinstance(handler, buffering):
                try:
                    handler.flush()
                except Exception:  # noqa: BLE001 - reported like CPython does
                    report_unraisable("Exception ignored while flushing logging handler", handler)
                flushed += 1
    return len(child_refs) + flushed


def close_and_flush_child_files(state: ChildExit) -> int:  # noqa: ARG001 - step signature
    """Close the child's archives, temporary files and databases, flush its other files."""
    return _objects.close_and_flush_child_files()


def flush_child_stdio(state: ChildExit) -> int:
    """Flush ``sys.stdout`` and ``sys.stderr`` once more: the steps above may have printed."""
    flush_stdio(state.stdio)
    return 2
