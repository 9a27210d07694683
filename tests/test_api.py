"""The public surface: drop-in namespaces, contexts, executors, pools."""

from __future__ import annotations

import concurrent.futures
import multiprocessing
import multiprocessing.context
import pickle
import sys
import types
from typing import TYPE_CHECKING, Any

import dill
import multiprocess
import pytest

import safeproc
import safeproc.stdlib

if TYPE_CHECKING:
    from conftest import RunScript

SAFE_NAMES = {
    "CleanupPolicy",
    "CleanupReport",
    "SafePool",
    "SafeProcess",
    "StepReport",
    "get_default_cleanup",
    "install",
    "set_default_cleanup",
    "uninstall",
}


@pytest.mark.parametrize(
    ("module", "backend", "own"),
    [
        (safeproc, multiprocess, SAFE_NAMES | {"DillUnsupportedError"}),
        (safeproc.stdlib, multiprocessing, SAFE_NAMES),
    ],
    ids=["multiprocess", "stdlib"],
)
def test_namespace_mirrors_its_backend(module: Any, backend: Any, own: set[str]) -> None:
    """Each namespace offers exactly its backend's names plus safeproc's own."""
    assert set(module.__all__) == set(backend.__all__) | own
    assert module.__all__ == sorted(module.__all__)
    for name in module.__all__:
        assert getattr(module, name) is not None, name
    assert module.Process is module.SafeProcess
    assert module.Pool is module.SafePool
    assert module.get_start_method() == backend.get_start_method()


def test_safe_classes_are_the_backends_classes() -> None:
    """Safe processes are instances of the plain classes; contexts are real contexts."""
    p = safeproc.stdlib.Process(target=print)
    assert isinstance(p, multiprocessing.Process)
    assert isinstance(p, multiprocessing.process.BaseProcess)
    for method in safeproc.stdlib.get_all_start_methods():
        ctx: Any = safeproc.stdlib.get_context(method)
        assert isinstance(ctx.Process(target=print), safeproc.stdlib.SafeProcess.__mro__[1])
        assert ctx.get_start_method() == method
        assert isinstance(ctx, multiprocessing.context.BaseContext)
    d = safeproc.Process(target=print)
    assert isinstance(d, multiprocess.Process)
    assert isinstance(safeproc.get_context("fork"), multiprocess.context.BaseContext)


def test_process_names_match_plain() -> None:
    """Process names follow the plain library's pattern, for drop-in parity."""
    assert safeproc.stdlib.Process(target=print).name.startswith("Process-")
    assert safeproc.stdlib.get_context("fork").Process(target=print).name.startswith("ForkProcess-")
    assert safeproc.Process(target=print, name="x").name == "x"


@pytest.mark.parametrize("method", ["fork", "forkserver", "spawn"])
def test_process_objects_pickle_by_class_name(method: str) -> None:
    """Process classes, including context-bound ones, pickle by qualified name."""
    policy = safeproc.CleanupPolicy(timeout=3)
    ctx = safeproc.stdlib.get_context(method, cleanup=policy)
    proc = ctx.Process(target=print)
    cls = type(proc)
    data = pickle.dumps(cls.__mro__[1])
    assert pickle.loads(data) is cls.__mro__[1]  # noqa: S301 - our own data
    reduced = proc.__reduce_ex__(2)
    assert reduced[1][0] is cls.__mro__[1]
    assert reduced[2]["_cleanup_policy"] == policy


def test_start_method_is_shared_with_the_backend() -> None:
    """get_start_method reads the backend's own setting: one switch, not two."""
    assert safeproc.stdlib.get_start_method() == multiprocessing.get_start_method()
    assert safeproc.get_start_method() == multiprocess.get_start_method()
    assert safeproc.get_all_start_methods() == multiprocess.get_all_start_methods()


def test_context_get_context_keeps_or_replaces_the_policy() -> None:
    """A context's get_context() keeps its policy unless given another."""
    policy = safeproc.CleanupPolicy(report=True)
    ctx = safeproc.stdlib.get_context("spawn", cleanup=policy)
    assert ctx.get_context() is ctx
    assert ctx.get_context("fork").cleanup == policy
    other = safeproc.CleanupPolicy(report=False, timeout=1)
    assert ctx.get_context(cleanup=other).cleanup == other
    assert "spawn" in repr(ctx)


EXECUTOR_SCENARIO = """
    import concurrent.futures

    class Cycle:
        def __init__(self):
            self.me = self
        def __del__(self):
            mark("del", os.getpid())

    def init():
        atexit.register(mark, "atexit", os.getpid())
        Cycle()

    def square(x):
        return x * x

    if __name__ == "__main__":
        with concurrent.futures.ProcessPoolExecutor(
            2, mp_context=ctx(), initializer=init
        ) as ex:
            assert list(ex.map(square, range(10))) == [x * x for x in range(10)]
            pids = {f.result() for f in [ex.submit(os.getpid) for _ in range(20)]}
        mark("workers", len(pids))
    """


@pytest.mark.parametrize("backend", ["stdlib"])
def test_executor_workers_finalize_what_they_created(run_script: RunScript) -> None:
    """ProcessPoolExecutor(mp_context=safe stdlib context), every start
    method: worker atexit handlers and initializer cycles are finalized."""
    _check_executor_run(run_script(EXECUTOR_SCENARIO))


@pytest.mark.parametrize("backend", ["multiprocess"])
@pytest.mark.parametrize("start_method", ["fork"])
def test_executor_with_dill_fork_context(run_script: RunScript) -> None:
    """The stdlib executor also works with the dill backend's fork context."""
    _check_executor_run(run_script(EXECUTOR_SCENARIO))


@pytest.mark.parametrize("method", ["spawn", "forkserver"])
def test_stdlib_executor_with_dill_spawn_contexts_fails_clearly(method: str) -> None:
    """The stdlib executor cannot use multiprocess spawn/forkserver contexts:
    construction fails with a TypeError that says what to use instead."""
    ctx = safeproc.get_context(method)
    with pytest.raises(TypeError, match=r"safeproc\.stdlib\.get_context"):
        concurrent.futures.ProcessPoolExecutor(1, mp_context=ctx)
    # Its own queues and locks are unaffected.
    q = ctx.Queue()
    q.put(1)
    assert q.get(timeout=10) == 1
    ctx.Lock().acquire()


def _check_executor_run(run: Any) -> None:
    assert run.returncode == 0, run.explain()
    workers = int(run.marks[-1].split()[1])
    done = run.marks[:-1]
    atexit_pids = {m.split()[1] for m in done if m.startswith("atexit")}
    del_pids = {m.split()[1] for m in done if m.startswith("del")}
    assert len(done) == 2 * len(atexit_pids), run.explain()
    assert atexit_pids == del_pids, run.explain()
    assert len(atexit_pids) >= workers, run.explain()


def test_pool_workers_finalize_on_close_and_join(run_script: RunScript) -> None:
    """Pool close()+join(): every worker runs the atexit handler its
    initializer registered, once."""
    run = run_script(
        """
        def init():
            atexit.register(mark, "atexit", os.getpid())

        def square(x):
            return x * x

        if __name__ == "__main__":
            pool = ctx().Pool(2, initializer=init)
            assert pool.map(square, range(10)) == [x * x for x in range(10)]
            pool.close()
            pool.join()
            mark("done")
        """
    )
    assert run.returncode == 0, run.explain()
    assert run.marks[-1] == "done"
    pids = [m.split()[1] for m in run.marks[:-1]]
    assert len(pids) == 2 == len(set(pids)), run.explain()


def test_executor_type_check() -> None:
    """The stdlib executor accepts a safe stdlib context as mp_context."""
    ctx = safeproc.stdlib.get_context("spawn")
    ex = concurrent.futures.ProcessPoolExecutor(1, mp_context=ctx)
    ex.shutdown()


@pytest.mark.parametrize("backend", ["stdlib"])
def test_stdlib_programs_never_import_the_dill_backend(run_script: RunScript) -> None:
    """``safeproc.stdlib`` processes and pools (and their spawned or
    forkserver children) never import ``multiprocess`` or ``dill``: a child
    pays only for the backend it uses."""
    run = run_script(
        """
        def dill_modules():
            return ",".join(m for m in ("multiprocess", "dill") if m in sys.modules) or "none"

        def child():
            atexit.register(mark, "atexit", os.getpid())
            mark("child", dill_modules())

        if __name__ == "__main__":
            p = ctx().Process(target=child)
            p.start()
            p.join()
            with ctx().Pool(1) as pool:
                pool.apply(child)
            mark("parent", dill_modules())
            mark("exitcode", p.exitcode)
        """
    )
    assert run.returncode == 0, run.explain()
    assert sorted(m for m in run.marks if not m.startswith("atexit")) == [
        "child none",
        "child none",
        "exitcode 0",
        "parent none",
    ], run.explain()
    # The safe exit sequence ran in the process child (the pool worker's
    # may end by terminate() on leaving the with block).
    assert any(m.startswith("atexit") for m in run.marks), run.explain()


def test_the_dill_namespace_resolves_its_names_on_first_use() -> None:
    """``safeproc``'s backend names are the dill backend's objects, listed
    by ``dir()``; an unknown name raises AttributeError naming it."""
    assert safeproc.SafeProcess is safeproc.Process
    assert issubclass(safeproc.Process, multiprocess.Process)
    assert set(safeproc.__all__) <= set(dir(safeproc))
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        _ = safeproc.Nope


@pytest.mark.xfail(
    sys.version_info >= (3, 15),
    strict=True,
    reason="dill 0.4.1 cannot pickle code on 3.15 ('co_lnotab'): when this passes, "
    "dill supports 3.15: drop this mark and conftest's DILL_PICKLES_CODE xfails",
)
def test_dill_pickles_code_on_this_python(dill_pickles_code: bool) -> None:
    """The canary for the multiprocess backend's expected failures."""
    assert dill_pickles_code


DILL_BY_VALUE = """
def child():
    mark("child ran")

if __name__ == "__main__":
    try:
        p = ctx().Process(target=child)
        p.start()
        p.join(30)
        mark("exitcode", p.exitcode)
    except AttributeError as exc:  # what plain code would catch
        mark(type(exc).__name__, type(exc.__cause__).__name__)
        mark(str(exc))
"""


@pytest.mark.parametrize("start_method", ["spawn"])  # pickles the target by value
@pytest.mark.parametrize("backend", ["multiprocess"])
def test_dill_failure_is_clear_at_the_point_of_use(
    run_script: RunScript, dill_pickles_code: bool
) -> None:
    """Where dill cannot pickle code, starting a child that needs it raises
    :exc:`safeproc.DillUnsupportedError` in the parent, naming dill and both
    versions, an AttributeError as plain's; where dill works, the child runs."""
    # This test observes the failure itself: not an expected failure here.
    run = run_script(DILL_BY_VALUE, dill_xfail=False)
    assert run.returncode == 0, run.explain()
    if dill_pickles_code:
        assert run.marks == ["child ran", "exitcode 0"], run.explain()
        return
    version = ".".join(map(str, sys.version_info[:2]))
    assert run.marks[0] == "DillUnsupportedError AttributeError", run.explain()
    assert f"dill {dill.__version__}" in run.marks[1], run.explain()
    assert f"Python {version}" in run.marks[1], run.explain()
    assert "safeproc.stdlib" in run.marks[1], run.explain()


def test_a_working_dill_is_left_untouched(dill_pickles_code: bool) -> None:
    """The guard wraps dill's code saver only where dill fails."""
    import dill._dill  # noqa: PLC0415

    import safeproc._dill  # noqa: PLC0415, F401 - installs the guard if needed

    saver = dill.Pickler.dispatch[types.CodeType]
    assert (saver is dill._dill.save_code) == dill_pickles_code
