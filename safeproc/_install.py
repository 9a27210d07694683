"""``install()``: safe children for code that only knows the plain libraries.

Code safeproc does not own (a DataLoader, a dask nanny, a library calling
``multiprocessing.get_context("spawn")``) makes plain process objects. One
patch per backend reaches all of them, whenever they were imported::

    parent: install(policy)                       child
    -----------------------                       -----
    BaseProcess._bootstrap  = safe_bootstrap  --fork-->  safe_bootstrap(self)
      (multiprocessing and multiprocess)                   run_child(self, plain _bootstrap, policy)
    spawn.get_preparation_data adds           --spawn / forkserver (pickled)-->
      "safeproc_install": InstallInChild(policy)   unpickling it calls install(policy)
                                                   before the process object is
                                                   loaded and bootstrapped

Classes, ``isinstance`` and pickling by name are untouched: only the method
the child runs is wrapped. ``SafeProcessMixin`` processes already run the
exit sequence through ``super()._bootstrap``, so the wrapper passes them
straight through, and a per-process guard makes sure that two wrappers in one
chain (say ``install(); <coverage patches>; uninstall(); install()``) never
run it twice.

Other tools patch the same method (coverage.py replaces
``multiprocessing.process.BaseProcess._bootstrap`` with one that calls the
function it found when it was imported). Either order works: each wrapper
calls what it found, and if a later patch dropped safeproc's (it found the
plain method), the wrapper is put back on top right before the next fork;
spawned and forkserver children install themselves first.
``uninstall()`` restores the original only where the wrapper is still the
attribute; where someone else wrapped it since, it leaves their patch in
place and the wrapper becomes a pass-through.

``multiprocess`` and ``billiard`` (Celery's fork of multiprocessing) are
patched only where they are imported: at ``install()`` if they already
are, otherwise by a finder on :data:`sys.meta_path` the moment a later
``import multiprocess`` / ``import billiard`` completes. A program (or a
spawned child) that uses only the standard library never imports them (nor
``dill``). Billiard's pool workers end inside their target, with
``os._exit``: :mod:`safeproc._billiard` finishes them there.
"""

from __future__ import annotations

import importlib
import multiprocessing
import multiprocessing.process
import multiprocessing.spawn
import os
import sys
import threading

from safeproc import _forks
from safeproc._cleanup import run_child
from safeproc._errors import report_unraisable
from safeproc._import_hook import OnImport
from safeproc._policy import CleanupPolicy, check_policy, get_default_cleanup
from safeproc._process import SafeProcessMixin, prepare_parent, start_method_of
from safeproc._sigterm import escalate_later
from safeproc._terminate import make_bounded_terminate

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from types import ModuleType
    from typing import Any

    Fn = Callable[..., Any]

__all__ = ["install", "installed", "uninstall"]

#: The key :func:`install` adds to the spawn preparation data. ``prepare()``
#: ignores keys it does not know; unpickling this one installs in the child.
PREPARATION_KEY = "safeproc_install"

# A wrapper safeproc made carries this attribute (uninstall looks for it).
_WRAPPER_MARK = "_safeproc_install_wrapper"

_lock = _forks.reinit_after_fork(threading.RLock())
_active = False
_policy: CleanupPolicy | None = None
# The pid whose _bootstrap already runs the exit sequence: an inner wrapper
# of the same chain passes through. A grandchild has another pid.
_running_in_pid: int | None = None


class _Patch:
    """One attribute safeproc replaced (not a dataclass: ``run``'s children skip that import)."""

    __slots__ = ("name", "original", "owner", "wrapper")

    def __init__(self, owner: Any, name: str, original: Fn, wrapper: Fn) -> None:  # noqa: ANN401
        self.owner, self.name, self.original, self.wrapper = owner, name, original, wrapper


#: ``python -m safeproc run --report``: the directory where the children
#: started through the plain libraries write their reports (see
#: :mod:`safeproc._run_report`); None: they write none. Children inherit it.
report_dir: str | None = None

_patches: list[_Patch] = []
#: The pool modules whose Pool.terminate is bounded (``_patch_pool_terminate``).
_patched_pools: set[str] = set()
#: The backends (package names) whose methods carry safeproc's patches.
_patched_backends: set[str] = set()
#: The backends patched only once a program imports them.
LAZY_BACKENDS = ("multiprocess", "billiard")


def install(cleanup: CleanupPolicy | None = None) -> None:
    """Make every process ``multiprocessing``, ``multiprocess`` and ``billiard`` start safe.

    After this call, children started through the plain libraries (their
    ``Process`` and every context's, ``Pool`` workers, the stdlib
    ``ProcessPoolExecutor``'s workers, managers, and billiard's processes
    and pool workers: Celery's prefork pool), by code imported before or
    after it, run safeproc's exit sequence under every start method, as
    :class:`SafeProcess` children do. Process classes, ``isinstance`` checks
    and pickling are unchanged. Calling it again only changes the policy.
    Safe to call from any thread; undone by :func:`uninstall`.

    :param cleanup: the policy for those children; ``None`` means the
        process-wide default (:func:`get_default_cleanup`) as it is when each
        child starts. Safeproc's own processes, pools and contexts keep the
        policies they were given.
    :raises TypeError: *cleanup* is not a :class:`CleanupPolicy` or ``None``.

    .. versionadded:: 0.1
    """
    global _active, _policy  # noqa: PLW0603 - the process-wide switch
    policy = check_policy(cleanup, "install")
    with _lock:
        _policy = policy
        if _active:
            return
        _patch_backend(multiprocessing)
        for name in LAZY_BACKENDS:
            if name in sys.modules:
                _patch_backend(importlib.import_module(name))
        if _PATCH_ON_IMPORT not in sys.meta_path:
            sys.meta_path.insert(0, _PATCH_ON_IMPORT)
        _active = True


def _patch_backend(backend: ModuleType) -> None:
    """Patch one backend's bootstrap and spawn preparation (holding ``_lock``)."""
    if backend.__name__ in _patched_backends:
        return
    process_module = importlib.import_module(f"{backend.__name__}.process")
    spawn_module = importlib.import_module(f"{backend.__name__}.spawn")
    base = process_module.BaseProcess
    _patch(base, "_bootstrap", _make_safe_bootstrap(backend, base._bootstrap))
    _patch(base, "start", _make_marked_start(backend, base.start))
    _patch(base, "terminate", _make_escalating_terminate(base.terminate))
    _forks.mark_forkserver_children(spawn_module)
    _patch(
        spawn_module,
        "get_preparation_data",
        _make_preparation_data(spawn_module.get_preparation_data),
    )
    _patched_backends.add(backend.__name__)
    if backend.__name__ == "billiard":
        from safeproc._billiard import patch_pool  # noqa: PLC0415 - billiard users only

        patch_pool(_patch)
    if backend.__name__ == "multiprocess":
        # coverage.py measures the stdlib's children; this brings the same
        # to multiprocess's (see safeproc._coverage).
        from safeproc._coverage import measure_multiprocess_children  # noqa: PLC0415

        measure_multiprocess_children()


def _patch_if_active(module: ModuleType) -> None:
    with _lock:
        if _active:
            _patch_backend(module)


#: Patches ``multiprocess`` or ``billiard`` when a program imports it after :func:`install`.
_PATCH_ON_IMPORT = OnImport(LAZY_BACKENDS, _patch_if_active)


def uninstall() -> None:
    """Undo :func:`install`: plain processes start plain children again.

    Patches that other tools applied on top of safeproc's since (coverage.py)
    stay; safeproc's wrappers under them pass through. Children already
    started keep what they had. Calling it when not installed does nothing.

    .. versionadded:: 0.1
    """
    global _active, _policy  # noqa: PLW0603 - the process-wide switch
    with _lock:
        _active = False
        _policy = None
        _patched_backends.clear()
        _patched_pools.clear()
        if _PATCH_ON_IMPORT in sys.meta_path:
            sys.meta_path.remove(_PATCH_ON_IMPORT)
        while _patches:
            patch = _patches.pop()
            if getattr(patch.owner, patch.name, None) is patch.wrapper:
                setattr(patch.owner, patch.name, patch.original)


def _reassert_before_fork() -> None:
    """Put a safe bootstrap back on top if another patch replaced it.

    coverage.py's wrapper calls the method it found when ``coverage.multiproc``
    was imported: imported before :func:`install`, its patch drops ours.
    Wrapping whatever is there again is harmless when it still reaches ours
    (the inner wrapper passes through); checked right before every fork, the
    only start method whose child does not install itself.
    """
    if not _active:
        return
    for backend, process_module, _ in _backends():
        base = process_module.BaseProcess
        if not _reaches_safe_bootstrap(base._bootstrap):
            with _lock:
                if _active and not _reaches_safe_bootstrap(base._bootstrap):
                    _patch(base, "_bootstrap", _make_safe_bootstrap(backend, base._bootstrap))


def _reaches_safe_bootstrap(function: object) -> bool:
    """Tell whether *function* is, or declares it wraps, a safe bootstrap."""
    seen = 0
    while function is not None and seen < 100:  # noqa: PLR2004 - a cycle guard
        if getattr(function, _WRAPPER_MARK, False):
            return True
        function = getattr(function, "__wrapped__", None)
        seen += 1
    return False


os.register_at_fork(before=_reassert_before_fork)


def installed() -> bool:
    """Tell whether :func:`install` is in effect in this process."""
    return _active


def _backends() -> list[tuple[Any, Any, Any]]:
    """(package, process module, spawn module) of each patched backend."""
    return [
        (
            sys.modules[name],
            sys.modules[f"{name}.process"],
            sys.modules[f"{name}.spawn"],
        )
        for name in sorted(_patched_backends)
    ]


def _patch(owner: Any, name: str, wrapper: Callable[..., Any]) -> None:  # noqa: ANN401
    original = getattr(owner, name)
    _patches.append(_Patch(owner, name, original, wrapper))
    setattr(owner, name, wrapper)


def _make_safe_bootstrap(backend: Any, original: Callable[..., int]) -> Callable[..., int]:  # noqa: ANN401
    # (billiard's _bootstrap takes no parent_sentinel: arguments pass through.)
    def _bootstrap(self: Any, *args: Any, **kwargs: Any) -> int:  # noqa: ANN401
        global _running_in_pid  # noqa: PLW0603 - set once in the child
        if not _active or isinstance(self, SafeProcessMixin) or _running_in_pid == os.getpid():
            return original(self, *args, **kwargs)
        _running_in_pid = os.getpid()
        policy = getattr(self, "_safeproc_install_policy", None) or _policy or get_default_cleanup()
        return run_child(
            self,
            lambda: original(self, *args, **kwargs),
            policy,
            start_method=start_method_of(self, backend),
            report_path=getattr(self, "_safeproc_install_report", None),
        )

    _bootstrap.__wrapped__ = original  # type: ignore[attr-defined]
    setattr(_bootstrap, _WRAPPER_MARK, True)
    return _bootstrap


def _make_marked_start(backend: Any, original: Callable[[Any], None]) -> Callable[[Any], None]:  # noqa: ANN401
    """Wrap ``BaseProcess.start`` so that its child is known to be a safe one.

    See :mod:`safeproc._forks`: no collection may run in a fork child before
    its inherited heap is frozen, and a forkserver child draws its boundary
    before it imports the main module. The policy the child gets is kept on
    the process object, for :meth:`terminate`'s escalation.
    """

    def start(self: Any) -> None:  # noqa: ANN401 - a BaseProcess of either backend
        if not _active or isinstance(self, SafeProcessMixin):
            return original(self)
        policy = self._safeproc_install_policy = _policy or get_default_cleanup()
        reports_to = report_dir if policy.report else None
        if reports_to is not None:
            from safeproc import _run_report  # noqa: PLC0415 - run --report only

            self._safeproc_install_report = _run_report.report_path(reports_to, self)
        _patch_pool_terminate(backend)
        method = start_method_of(self, backend)
        prepare_parent(backend, method, __name__)
        with _forks.starting_safe_child(method):
            original(self)
        if reports_to is not None:
            _run_report.remember_exitcode(self)
        return None

    start.__wrapped__ = original  # type: ignore[attr-defined]
    setattr(start, _WRAPPER_MARK, True)
    return start


def _installed_policy() -> CleanupPolicy | None:
    """Return the policy of install()'s children; None when not installed."""
    return (_policy or get_default_cleanup()) if _active else None


def _patch_pool_terminate(backend: Any) -> None:  # noqa: ANN401 - either backend
    """Bound the plain ``Pool.terminate`` of *backend*, once its pool module is in use.

    Called as each process starts (a pool starts its workers before anyone
    can terminate it), so that install() itself never imports the pool
    module into a child that does not use pools.
    """
    name = f"{backend.__name__}.pool"
    pool_module = sys.modules.get(name)
    if pool_module is None or name in _patched_pools:
        return
    with _lock:
        if not _active or name in _patched_pools:
            return
        pool_class = pool_module.Pool
        connection = importlib.import_module(f"{backend.__name__}.connection")
        wrapper = make_bounded_terminate(pool_class.terminate, connection, _installed_policy)
        setattr(wrapper, _WRAPPER_MARK, True)
        _patch(pool_class, "terminate", wrapper)
        _patched_pools.add(name)


def _make_escalating_terminate(original: Callable[[Any], None]) -> Callable[[Any], None]:
    """Wrap ``BaseProcess.terminate``: a ``sigterm="cleanup"`` child is made sure to end.

    As :meth:`SafeProcess.terminate <safeproc.SafeProcess.terminate>` does.
    """

    def terminate(self: Any) -> None:  # noqa: ANN401 - a BaseProcess of either backend
        original(self)
        self._safeproc_terminate_sent = True  # a bounded pool terminate signals once
        policy = getattr(self, "_safeproc_install_policy", None)
        if policy is not None and policy.sigterm == "cleanup":
            escalate_later(self, policy.timeout)

    terminate.__wrapped__ = original  # type: ignore[attr-defined]
    setattr(terminate, _WRAPPER_MARK, True)
    return terminate


def _make_preparation_data(original: Callable[[str], dict[str, Any]]) -> Callable[..., Any]:
    def get_preparation_data(name: str) -> dict[str, Any]:
        data = original(name)
        if _active:
            data[PREPARATION_KEY] = InstallInChild(_policy or get_default_cleanup(), report_dir)
        return data

    get_preparation_data.__wrapped__ = original  # type: ignore[attr-defined]
    setattr(get_preparation_data, _WRAPPER_MARK, True)
    return get_preparation_data


class InstallInChild:
    """Travels in the spawn preparation data; unpickling it installs safeproc.

    A spawned or forkserver child unpickles the preparation data before the
    process object, so its ``_bootstrap`` is already the safe one.
    """

    def __init__(self, policy: CleanupPolicy, reports_to: str | None = None) -> None:
        self.policy = policy
        self.reports_to = reports_to

    def __reduce__(self) -> tuple[Callable[..., None], tuple[CleanupPolicy, str | None]]:
        return (install_in_child, (self.policy, self.reports_to))


def install_in_child(policy: CleanupPolicy, reports_to: str | None = None) -> None:
    """Install *policy* in a spawned or forkserver child (from unpickling).

    *reports_to* is the parent's :data:`report_dir`, for the children this
    child starts in turn.
    """
    global report_dir  # noqa: PLW0603 - the child's copy of the parent's setting
    report_dir = reports_to
    try:
        install(policy)
    except BaseException:  # noqa: BLE001 - the child runs plain rather than not at all
        report_unraisable("Exception ignored while installing safeproc in the child", policy)
        sys.stderr.flush()
