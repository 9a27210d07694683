"""Process classes whose children run the exit sequence of ``_cleanup``.

One mixin, :class:`SafeProcessMixin`, overrides ``_bootstrap`` (the method
that runs in the child and returns the exit code the launcher passes to
``os._exit``). It is combined with every concrete process class of both
backends; the classes live at module level under stable names because spawn
and forkserver pickle process objects by class name. The standard library's
classes are here; the ``multiprocess`` ones are in :mod:`safeproc._dill`, so
that a program (or a spawned child) using only the standard library never
imports ``multiprocess`` and ``dill``.
"""

from __future__ import annotations

import copyreg
import importlib
import multiprocessing
import multiprocessing.context as _std_context
import multiprocessing.spawn

from safeproc import _forks, _kernel
from safeproc._cleanup import run_child
from safeproc._policy import CleanupPolicy, check_policy, get_default_cleanup
from safeproc._sigterm import escalate_later

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any, ClassVar, TypeVar

    from safeproc._report import CleanupReport

__all__ = [
    "SafeForkProcess",
    "SafeForkServerProcess",
    "SafeProcess",
    "SafeProcessMixin",
    "SafeSpawnProcess",
    "bind_process_class",
]


class SafeProcessMixin:
    """The safeproc behaviour, mixed into a backend's process class.

    Accepts every argument the plain class accepts, plus the keyword-only
    *cleanup* (a :class:`~safeproc.CleanupPolicy`, or ``None`` for the
    context's or the process-wide default).
    """

    #: The backend package (``multiprocessing`` or ``multiprocess``).
    _safeproc_backend: Any
    #: The name the plain class gives its processes ("ForkProcess-1" ...).
    _safeproc_plain_name: str
    #: A policy bound by a context (see :func:`bind_process_class`).
    _safeproc_bound_cleanup: ClassVar[CleanupPolicy | None] = None

    _cleanup_policy: CleanupPolicy
    _safeproc_report_path: str | None
    _safeproc_report: CleanupReport | None
    _safeproc_terminate_sent: bool
    #: Where a pool wants this worker's report once it is reaped.
    _safeproc_report_sink: Callable[[CleanupReport], None] | None
    # Provided by BaseProcess.
    _name: str
    _identity: tuple[int, ...]
    run: Callable[[], None]
    exitcode: int | None

    def __init__(  # noqa: PLR0913 - the plain signature plus one keyword
        self,
        group: None = None,
        target: Callable[..., object] | None = None,
        name: str | None = None,
        args: Any = (),  # noqa: ANN401 - as the plain class
        kwargs: Any = None,  # noqa: ANN401 - as the plain class
        *,
        daemon: bool | None = None,
        cleanup: CleanupPolicy | None = None,
    ) -> None:
        policy = check_policy(cleanup, "Process")
        super().__init__(  # type: ignore[call-arg]
            group, target, name, args, {} if kwargs is None else kwargs, daemon=daemon
        )
        if name is None and _is_safeproc_class(type(self)):
            # Name processes as the plain class would ("ForkProcess-1").
            self._name = f"{self._safeproc_plain_name}-" + ":".join(map(str, self._identity))
        self._cleanup_policy = policy or type(self)._safeproc_bound_cleanup or get_default_cleanup()
        self._safeproc_report_path = None
        self._safeproc_report = None
        self._safeproc_terminate_sent = False
        self._safeproc_report_sink = None

    @property
    def cleanup(self) -> CleanupPolicy:
        """The :class:`~safeproc.CleanupPolicy` this process's child follows."""
        return self._cleanup_policy

    @property
    def cleanup_report(self) -> CleanupReport | None:
        """What cleanup did in the child, once it has ended.

        ``None`` while the child runs, when the policy did not ask for a
        report, or when the child died before safeproc's code ran in it. A
        child killed during its target leaves a report with only the
        ``"start"`` step.
        """
        if self._safeproc_report is None and self._safeproc_report_path is not None:
            exitcode = self.exitcode
            if exitcode is None:
                return None
            from safeproc._report import read_report  # noqa: PLC0415 - report=True only

            self._safeproc_report = read_report(self._safeproc_report_path, exitcode)
        return self._safeproc_report

    def join(self, timeout: float | None = None) -> None:
        """Wait for the child, as the plain :meth:`~multiprocessing.Process.join`."""
        super().join(timeout)  # type: ignore[misc]
        self._hand_over_report()

    def is_alive(self) -> bool:
        """Whether the child runs, as the plain :meth:`~multiprocessing.Process.is_alive`."""
        alive: bool = super().is_alive()  # type: ignore[misc]
        if not alive:
            # A pool's terminate() reaps ended workers this way, not by join().
            self._hand_over_report()
        return alive

    def _hand_over_report(self) -> None:
        if getattr(self, "_safeproc_report_sink", None) is None or self.exitcode is None:
            return
        # One pop (atomic): a pool's threads may reap the same worker at once.
        sink = self.__dict__.pop("_safeproc_report_sink", None)
        if sink is None:
            return
        self._safeproc_report_sink = None
        report = self.cleanup_report
        if report is not None:
            sink(report)

    def start(self) -> None:
        """Start the child, as the plain :meth:`~multiprocessing.Process.start`."""
        if self._cleanup_policy.report and self._safeproc_report_path is None:
            # The child's writer, imported here so that a forked child
            # inherits it rather than importing it (json with it) at start.
            import safeproc._report_writer  # noqa: F401, PLC0415
            from safeproc._report import new_report_path  # noqa: PLC0415 - report=True only

            self._safeproc_report_path = new_report_path()
        method = self._child_start_method()
        prepare_parent(self._safeproc_backend, method, type(self).__module__)
        with _forks.starting_safe_child(method):
            super().start()  # type: ignore[misc]

    def terminate(self) -> None:
        """Send SIGTERM, as the plain :meth:`~multiprocessing.Process.terminate`.

        With ``sigterm="cleanup"`` the child runs its cleanup first and
        still dies by SIGTERM (``exitcode == -15``), and the parent makes
        sure it ends: a second SIGTERM 0.1 s after the deadline (the child's
        main thread may be stuck in a C call that never runs Python code),
        then SIGKILL one second later as the last resort.
        """
        super().terminate()  # type: ignore[misc]
        self._safeproc_terminate_sent = True
        if self._cleanup_policy.sigterm == "cleanup":
            escalate_later(self, self._cleanup_policy.timeout)

    def _bootstrap(self, parent_sentinel: int | None = None) -> int:
        # Through super() so a patched BaseProcess._bootstrap (coverage.py)
        # still runs: the plain steps, the target, the thread join.
        plain_bootstrap = super()._bootstrap  # type: ignore[misc]
        return run_child(
            self,
            lambda: plain_bootstrap(parent_sentinel),
            self._cleanup_policy,
            start_method=self._child_start_method(),
            report_path=self._safeproc_report_path,
        )

    def _child_start_method(self) -> str:
        return start_method_of(self, self._safeproc_backend)

    def __reduce_ex__(self, protocol: Any) -> Any:  # noqa: ANN401 - pickle protocol
        rv = super().__reduce_ex__(protocol)
        state = rv[2] if isinstance(rv, tuple) and len(rv) > 2 else None  # noqa: PLR2004
        if isinstance(state, dict) and state.get("_safeproc_report_sink") is not None:
            # The pool's report list stays in the parent (the child never
            # reports through it; a lock cannot be pickled).
            rv = (*rv[:2], {**state, "_safeproc_report_sink": None}, *rv[3:])
        cls = type(self)
        if "_safeproc_bound_cleanup" in cls.__dict__ and isinstance(rv, tuple):
            # A context-bound class exists only in the parent: pickle the
            # instance as its named base; the policy travels in the state.
            named = cls.__mro__[1]
            state = rv[2] if len(rv) > 2 else None  # noqa: PLR2004 - reduce tuple
            rv = (copyreg._reconstructor, (named, object, None), state)  # type: ignore[attr-defined]
        return rv


def start_method_of(process: Any, backend: Any) -> str:  # noqa: ANN401 - either backend's
    """Return the start method *process* uses (the concrete classes name theirs).

    ``get_start_method()`` fixes the default method if none was chosen yet,
    exactly as the plain ``start()`` is about to.
    """
    method: str | None = getattr(type(process), "_start_method", None)
    if method is None:
        method = backend.get_start_method()
    return method


def prepare_parent(backend: Any, method: str | None, module: str) -> None:  # noqa: ANN401
    """Ready this process to start a safe child of *backend* by *method*.

    A forked child inherits what it needs (:mod:`ctypes` for its one-shot
    signal handlers) rather than importing it; a forkserver imports it once,
    for every child it forks, through its preload list.
    """
    if method == "fork":
        _kernel.prepare()
    elif method == "forkserver":
        _preload_in_forkserver(backend, (module, "safeproc._preload"))


def _preload_in_forkserver(backend: Any, modules: tuple[str, ...]) -> None:  # noqa: ANN401
    """Have the forkserver import *modules* (safeproc's) once, not every child it forks.

    Only before the server starts; the user's own preload list is kept, and
    comes first.
    """
    server = importlib.import_module(f"{backend.__name__}.forkserver")._forkserver
    if getattr(server, "_forkserver_pid", None) is not None:
        return
    preload = list(getattr(server, "_preload_modules", None) or [])
    missing = [m for m in modules if m not in preload]
    if missing:
        server._preload_modules = [*preload, *missing]


#: The modules that define safeproc's process classes.
_CLASS_MODULES = frozenset({__name__, "safeproc._dill"})


def _is_safeproc_class(cls: type) -> bool:
    return cls.__module__ in _CLASS_MODULES


_bound_classes: dict[tuple[type, CleanupPolicy], type] = {}


if TYPE_CHECKING:
    _P = TypeVar("_P", bound=SafeProcessMixin)


def bind_process_class(cls: type[_P], policy: CleanupPolicy | None) -> type[_P]:
    """Return a subclass of *cls* whose processes default to *policy*.

    Contexts with a policy hand this out as their ``Process``, so that
    ``ctx.Process(...)`` (and ``ProcessPoolExecutor(mp_context=ctx)``)
    picks the policy up. Instances pickle as *cls*.
    """
    if policy is None:
        return cls
    key = (cls, policy)
    bound: type[_P] | None = _bound_classes.get(key)
    if bound is None:
        bound = type(
            cls.__name__,
            (cls,),
            {"_safeproc_bound_cleanup": policy, "__module__": cls.__module__},
        )
        bound.__qualname__ = cls.__qualname__
        _bound_classes[key] = bound
    return bound


# -- the standard library backend ---------------------------------------------

_forks.mark_forkserver_children(multiprocessing.spawn)


class SafeProcess(SafeProcessMixin, _std_context.Process):
    """:class:`multiprocessing.Process` whose child finalizes what it created.

    Takes every argument :class:`multiprocessing.Process` takes, plus the
    keyword-only *cleanup*: a :class:`~safeproc.CleanupPolicy`, or ``None``
    for the context's policy or else the process-wide default.

    .. versionadded:: 0.1
    """

    _safeproc_backend = multiprocessing
    _safeproc_plain_name = "Process"


class SafeForkProcess(SafeProcessMixin, _std_context.ForkProcess):
    """The ``fork`` context's process class, made safe."""

    _safeproc_backend = multiprocessing
    _safeproc_plain_name = "ForkProcess"


class SafeSpawnProcess(SafeProcessMixin, _std_context.SpawnProcess):
    """The ``spawn`` context's process class, made safe."""

    _safeproc_backend = multiprocessing
    _safeproc_plain_name = "SpawnProcess"


class SafeForkServerProcess(SafeProcessMixin, _std_context.ForkServerProcess):
    """The ``forkserver`` context's process class, made safe."""

    _safeproc_backend = multiprocessing
    _safeproc_plain_name = "ForkServerProcess"
