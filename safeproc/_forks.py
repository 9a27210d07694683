"""Fork bookkeeping: which forks start safe children, and where a child's inheritance ends.

Runs in every process that imported safeproc, so everything here changes
nothing in a plain child: the at-fork hooks only look at forks the current
thread marked as a safe child's (:class:`starting_safe_child`), and reset
safeproc's own locks.

The boundary between inherited and child-made state is drawn by
:func:`draw_boundary`, as early in the child as safeproc's code runs::

    fork        parent: starting_safe_child  --fork-->  child: begin_child() draws it
                (collector paused from the fork until the heap is frozen)
    forkserver  parent: preparation data + BoundaryMarker  --server forks-->
                child: unpickling the marker draws it, *before* the child
                imports the parent's main module (which is the child's own)
    spawn       a fresh interpreter: nothing is inherited
"""

from __future__ import annotations

import gc
import os
import sys
import threading
import weakref

from safeproc import _compat

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from types import ModuleType
    from typing import Any

__all__ = [
    "BACKEND_PACKAGES",
    "Boundary",
    "BoundaryMarker",
    "StartupHeapMarker",
    "draw_boundary",
    "freeze_startup_heap",
    "mark_forkserver_children",
    "pre_main_boundary",
    "reinit_after_fork",
    "resume_collection",
    "starting_safe_child",
    "thaw_startup_heap",
]

#: The multiprocessing packages whose children safeproc knows.
BACKEND_PACKAGES = ("multiprocessing", "multiprocess")

#: The key safe forkserver and spawned children find in their preparation data.
MARKER_KEY = "safeproc_boundary"


# -- which forks are safe children's --------------------------------------------
#
# A forked child inherits the parent's uncollected garbage. An automatic
# collection in the child before its heap is frozen (threading's at-fork hook,
# the launcher, the bootstrap all allocate) would run the parent's __del__
# methods in the child. So the thread starting a safe child marks the fork;
# the collector is paused across that fork and stays paused in the child until
# its heap is frozen (resume_collection).

_starting = threading.local()
#: Threads whose fork in progress paused the collector (any thread's pause
#: pauses it process-wide; the last one to finish resumes it).
_pausing: set[int] = set()
#: In a safe child: collection was paused at its fork, resume after the freeze.
_paused_in_child = False


class starting_safe_child:  # noqa: N801 - used as a function: with starting_safe_child(method):
    """Mark the forks (and forkserver requests) this thread makes in the block as safe."""

    __slots__ = ("method",)

    def __init__(self, method: str | None) -> None:
        """Mark forks for a child started by *method* (``None``: not known)."""
        self.method = method

    def __enter__(self) -> None:
        _starting.depth = getattr(_starting, "depth", 0) + 1
        _starting.method = self.method

    def __exit__(self, *exc: object) -> None:
        _starting.depth -= 1


def _starting_method() -> str | None:
    if getattr(_starting, "depth", 0) <= 0:
        return None
    method: str | None = getattr(_starting, "method", None)
    return method or "unknown"


# Another parent thread may fork a plain child at any bytecode boundary of
# these hooks: that child must be able to tell "paused by a safe fork" from
# "disabled by the program".  So _pausing is non-empty whenever the pause is
# in effect: a thread joins it before disabling and leaves it only after the
# last one re-enabled, and the lock makes "am I the last one" and the
# re-enable one step (_pause_lock, reset in every child with the other locks).


def _before_fork() -> None:
    if _starting_method() is None:
        return
    with _pause_lock:
        if gc.isenabled() or _pausing:
            _pausing.add(threading.get_ident())
            gc.disable()


def _after_fork_in_parent() -> None:
    me = threading.get_ident()
    if me not in _pausing:  # only this thread adds itself: no lock needed
        return
    with _pause_lock:
        if _pausing == {me}:
            gc.enable()
        _pausing.discard(me)


def _after_fork_in_child() -> None:
    global _paused_in_child  # noqa: PLW0603 - once per child
    for lock in _locks:
        lock._at_fork_reinit()
    if _pausing:
        me = threading.get_ident()
        paused_here, paused_elsewhere = me in _pausing, bool(_pausing - {me})
        _pausing.clear()  # the other threads do not exist here
        if paused_here:
            _paused_in_child = True
        elif paused_elsewhere:
            gc.enable()  # another parent thread's safe fork paused it, not ours
    # The parent's start() never returns here: this child's own forks are
    # marked only by its own starting_safe_child blocks.
    if getattr(_starting, "depth", 0):
        _starting.depth = 0


def resume_collection() -> None:
    """Re-enable the collector paused at this child's fork (once frozen)."""
    global _paused_in_child  # noqa: PLW0603 - once per child
    if _paused_in_child:
        _paused_in_child = False
        gc.enable()


_locks: list[Any] = []


def reinit_after_fork(lock: Any) -> Any:  # noqa: ANN401 - a threading lock or condition
    """Give *lock* a fresh state in every forked child; return it.

    Another parent thread may hold it at the fork: it would never be
    released in the child.
    """
    _locks.append(lock)
    return lock


_pause_lock = reinit_after_fork(threading.Lock())


os.register_at_fork(
    before=_before_fork,
    after_in_parent=_after_fork_in_parent,
    after_in_child=_after_fork_in_child,
)


# -- the boundary -------------------------------------------------------------------


class Boundary:
    """What a forked child inherited, recorded where its inheritance ends."""

    __slots__ = (
        "collections",
        "drawn_before_main",
        "finalizer_index",
        "logging_handlers",
        "logging_imported",
        "other_backends",
    )

    def __init__(self, collections: int) -> None:
        """Record the inherited state of this process now.

        *collections* is :func:`collections_so_far` when the inherited heap
        was frozen, before the collector could run again.
        """
        #: How many collections had run when the inherited heap was frozen:
        #: while none has run since, every object the collector sees is in
        #: the youngest generation.
        self.collections = collections
        #: Drawn by a forkserver child's marker, before its main-module import.
        self.drawn_before_main = False
        logging = sys.modules.get("logging")
        self.logging_imported = logging is not None
        #: The inherited handlers (weak references, as logging keeps them).
        self.logging_handlers: tuple[Any, ...] = (
            () if logging is None else tuple(logging._handlerList)
        )
        #: The first weakref.finalize index that is the child's own.
        self.finalizer_index = _compat.next_finalize_index()
        #: Per imported backend: its inherited children and finalizer keys.
        self.other_backends: dict[str, tuple[frozenset[Any], frozenset[Any]]] = {}
        for name in BACKEND_PACKAGES:
            if name in sys.modules and f"{name}.util" in sys.modules:
                process = sys.modules[f"{name}.process"]
                util = sys.modules[f"{name}.util"]
                self.other_backends[name] = (
                    frozenset(process._children),
                    frozenset(util._finalizer_registry),
                )


def draw_boundary() -> Boundary:
    """Freeze the inherited heap and record what the child inherited.

    After this, ``gc.collect()`` and ``gc.get_objects()`` see only what the
    child makes. The parent's atexit handlers are dropped (3.13's launchers
    drop them themselves).
    """
    # First: an allocation below must not collect the parent's garbage.
    gc.freeze()
    collections = collections_so_far()
    resume_collection()
    boundary = Boundary(collections)
    if not _compat.POPEN_RUNS_ATEXIT:
        _compat.clear_atexit()
    return boundary


def collections_so_far() -> int:
    """Return how many collections, of any generation, this process has run."""
    return sum(generation["collections"] for generation in gc.get_stats())


_pre_main_boundary: Boundary | None = None


def pre_main_boundary() -> Boundary | None:
    """Return the boundary a :class:`BoundaryMarker` drew in this process, if any."""
    return _pre_main_boundary


class BoundaryMarker:
    """Travels in a safe forkserver child's preparation data; unpickling it draws the boundary.

    A forkserver child imports the parent's main module itself, after the
    server forked it and before its bootstrap: what that import creates is
    the child's own. The preparation data is unpickled before that import.
    """

    def __reduce__(self) -> tuple[Callable[[], None], tuple[()]]:
        return (mark_pre_main_boundary, ())


def mark_pre_main_boundary() -> None:
    """Draw the boundary in a forkserver child, before it imports the main module."""
    global _pre_main_boundary  # noqa: PLW0603 - once per child
    if _pre_main_boundary is None:
        try:
            _pre_main_boundary = draw_boundary()
            _pre_main_boundary.drawn_before_main = True
            if not _compat.POPEN_RUNS_ATEXIT:
                # So that the finalizers the main module's import makes
                # register weakref's exit hook where a normal program would.
                weakref.finalize._registered_with_atexit = False  # type: ignore[attr-defined]
        except BaseException:  # noqa: BLE001 - the child starts anyway, as plain
            from safeproc._errors import report_unraisable  # noqa: PLC0415 - rare path

            report_unraisable("Exception ignored while drawing the safeproc boundary", None)


class StartupHeapMarker:
    """Travels in a safe spawned child's preparation data; unpickling it freezes the heap.

    What a spawned child holds before it imports the main module is the
    interpreter's and the libraries' start-up heap, never garbage at exit:
    set aside, every collection and object scan at exit skips it, as a
    forked child's skip what it inherited.
    """

    def __reduce__(self) -> tuple[Callable[[], None], tuple[()]]:
        return (freeze_startup_heap, ())


class _Young:
    """A tracked object made just after the start-up freeze: frozen later only by the program."""


#: In a safe spawned child, once the start-up heap is frozen: an object made
#: just after (a later gc.freeze(), the program's, would take it too).
_young_after_startup: _Young | None = None


def freeze_startup_heap() -> None:
    """Freeze the start-up heap of a spawned child (see :class:`StartupHeapMarker`)."""
    global _young_after_startup  # noqa: PLW0603 - once per child
    if _young_after_startup is None and gc.get_freeze_count() == 0:
        gc.freeze()
        _young_after_startup = _Young()


def thaw_startup_heap() -> None:
    """Hand the start-up heap back to the collector before the interpreter's own exit.

    Not if the program froze objects itself meanwhile (the object made just
    after the start-up freeze is no longer among the collector's): its
    freeze took the start-up heap too, and a plain child would keep all of
    it frozen.
    """
    global _young_after_startup
    young, _young_after_startup = _young_after_startup, None
    if young is not None:
        wanted = id(young)
        if any(id(obj) == wanted for obj in gc.get_objects()):
            gc.unfreeze()


_marked_spawn_modules: set[str] = set()


def mark_forkserver_children(spawn_module: ModuleType) -> None:
    """Wrap *spawn_module*'s ``get_preparation_data`` to mark safe children.

    The wrapper adds a marker only while the calling thread starts a safe
    forkserver child (:class:`BoundaryMarker`) or spawned child
    (:class:`StartupHeapMarker`); plain children's preparation data is
    unchanged.
    """
    if spawn_module.__name__ in _marked_spawn_modules:
        return
    original: Callable[[str], dict[str, Any]] = spawn_module.get_preparation_data

    def get_preparation_data(name: str) -> dict[str, Any]:
        data = original(name)
        method = _starting_method()
        if method == "forkserver":
            data[MARKER_KEY] = BoundaryMarker()
        elif method == "spawn":
            data[MARKER_KEY] = StartupHeapMarker()
        return data

    get_preparation_data.__wrapped__ = original  # type: ignore[attr-defined]
    spawn_module.get_preparation_data = get_preparation_data  # type: ignore[attr-defined]
    _marked_spawn_modules.add(spawn_module.__name__)
