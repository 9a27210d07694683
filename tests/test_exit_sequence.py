"""The child exit sequence: what the child created is finalized, once, and
nothing it inherited is, for both backends and every start method."""

from __future__ import annotations

import sys
import textwrap
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from pathlib import Path

    from conftest import RunScript

SEED = """
class Foo():
    def __init__(self):
        self.b = []
    def __del__(self):
        print('del', flush=True)

def foo():
    print('call foo', flush=True)
    f = Foo()
    a = [f]
    f.b.append(a)

if __name__ == '__main__':
    p = ctx().Process(target=foo)
    p.start()
    p.join()
    sys.exit(p.exitcode)
"""


#: A child-made cycle whose finalizer marks the process it runs in.
CYCLE = """
class Cycle:
    def __init__(self):
        self.me = self
    def __del__(self):
        mark("del", os.getpid())
"""


def test_seed_program_prints_del_once_from_the_child(run_script: RunScript) -> None:
    """The issue's seed program prints 'call foo' then 'del' exactly once."""
    run = run_script(SEED)
    assert run.returncode == 0, run.explain()
    assert run.stdout.splitlines() == ["call foo", "del"], run.explain()


def test_child_cycles_atexit_and_finalizers_all_run_once(run_script: RunScript) -> None:
    """A child's cyclic __del__, atexit handlers and finalizers each run once,
    in a normal program's order."""
    run = run_script(
        CYCLE
        + textwrap.dedent(
            """
        class Target:
            pass

        def child():
            # The cycle is collected at exit, never by an allocation count
            # reached earlier (which a normal program may also do).
            gc.set_threshold(2**31 - 1)
            atexit.register(mark, "atexit-first", os.getpid())
            atexit.register(mark, "atexit-second", os.getpid())
            global older, newer
            older, newer = Target(), Target()
            weakref.finalize(older, mark, "finalize-older", os.getpid())
            weakref.finalize(newer, mark, "finalize-newer", os.getpid())
            Cycle()
            mark("child", os.getpid())

        if __name__ == "__main__":
            p = ctx().Process(target=child)
            p.start()
            p.join()
            mark("parent-exitcode", p.exitcode)
        """
        )
    )
    assert run.returncode == 0, run.explain()
    child_pid = run.marks[0].split()[1]
    words = [m.split()[0] for m in run.marks]
    assert all(m.split()[-1] == child_pid for m in run.marks[:-1]), run.explain()
    # As in a normal program: weakref's exit hook, registered with atexit by
    # the first finalizer, runs before the handlers registered earlier;
    # handlers last-registered first, finalizers newest first.
    expected = ["child", "finalize-newer", "finalize-older", "atexit-second", "atexit-first"]
    assert words[:5] == expected, run.explain()
    assert sorted(words[5:]) == ["del", "parent-exitcode"], run.explain()
    assert run.marks[-1] == "parent-exitcode 0"


@pytest.mark.parametrize("age", ["young", "aged"])
def test_child_cycles_are_collected_in_every_generation(run_script: RunScript, age: str) -> None:
    """A child's cycle is collected at exit whether it is still in the
    youngest generation or aged into an older one before it became garbage
    (the exit collects the youngest alone only when nothing older is there)."""
    run = run_script(
        CYCLE
        + textwrap.dedent(
            """
        def child():
            gc.set_threshold(2**31 - 1)  # no collection but the ones below
            cycle = Cycle()
            if sys.argv[1] == "aged":
                gc.collect(0)  # still alive: it moves to an older generation
                gc.collect(1)
            young = any(obj is cycle for obj in gc.get_objects(generation=0))
            mark("young", young, os.getpid())
            del cycle  # garbage from here on, collected only at exit

        if __name__ == "__main__":
            p = ctx().Process(target=child)
            p.start()
            p.join()
            mark("exitcode", p.exitcode)
        """
        ),
        args_after=(age,),
    )
    assert run.returncode == 0, run.explain()
    child_pid = run.marks[0].split()[-1]
    assert run.marks == [f"young {age == 'young'} {child_pid}", f"del {child_pid}", "exitcode 0"], (
        run.explain()
    )


def test_nothing_inherited_is_finalized_in_the_child(run_script: RunScript) -> None:
    """The parent's atexit handlers, finalizers and cyclic garbage never run in
    the child, even when the child's own code runs gc.collect()."""
    run = run_script(
        """
        class Cycle:
            def __init__(self):
                self.me = self
            def __del__(self):
                mark("parent-cycle-del", os.getpid())

        class Target:
            pass

        def child():
            gc.collect()  # an ordinary collection the child's code triggers
            mark("child", os.getpid())

        if __name__ == "__main__":
            gc.disable()
            atexit.register(mark, "parent-atexit", os.getpid())
            keep = Target()
            weakref.finalize(keep, mark, "parent-finalize", os.getpid())
            Cycle()  # garbage the parent has not collected yet
            p = ctx().Process(target=child)
            p.start()
            p.join()
            gc.collect()  # the parent's own garbage is the parent's to collect
            mark("parent", os.getpid(), p.exitcode)
        """
    )
    assert run.returncode == 0, run.explain()
    child_pid = next(m.split()[1] for m in run.marks if m.startswith("child "))
    in_child = [m for m in run.marks if m.split()[1] == child_pid and not m.startswith("child ")]
    assert in_child == [], run.explain()
    parent_pid = next(m.split()[1] for m in run.marks if m.startswith("parent "))
    # The parent still finalizes its own state exactly once.
    for word in ("parent-atexit", "parent-finalize", "parent-cycle-del"):
        assert run.marks.count(f"{word} {parent_pid}") == 1, run.explain()


def test_plain_library_loses_what_safeproc_keeps(run_script: RunScript, start_method: str) -> None:
    """The baseline this library exists for: plain fork/forkserver children
    skip the child's cyclic __del__, spawn children do not."""
    # No automatic collection (a plain child may run one if its allocations
    # reach the threshold): the baseline is what exit itself does.
    run = run_script("gc.set_threshold(2**31 - 1)\n" + SEED, plain=True)
    assert run.returncode == 0, run.explain()
    expected = ["call foo", "del"] if start_method == "spawn" else ["call foo"]
    assert run.stdout.splitlines() == expected, run.explain()


def test_cleanup_output_is_flushed_when_stdout_is_a_file(run_script: RunScript) -> None:
    """Output printed by the child's atexit handlers and __del__ (without
    flush) reaches a redirected, fully buffered stdout, once."""
    run = run_script(
        """
        class Cycle:
            def __init__(self):
                self.me = self
            def __del__(self):
                print("del-output")

        def child():
            gc.set_threshold(2**31 - 1)  # the cycle is collected at exit, not earlier
            atexit.register(print, "atexit-output")
            Cycle()
            print("target-output")

        if __name__ == "__main__":
            print("parent-before", flush=True)
            p = ctx().Process(target=child)
            p.start()
            p.join()
            print("parent-after")
        """,
        stdout_to_file=True,
    )
    assert run.returncode == 0, run.explain()
    assert run.stdout.splitlines() == [
        "parent-before",
        "target-output",
        "atexit-output",
        "del-output",
        "parent-after",
    ], run.explain()


def test_nested_children_finalize_only_their_own(run_script: RunScript) -> None:
    """A safe child that starts safe children: each generation runs its own
    atexit handler once and never its ancestors'."""
    run = run_script(
        """
        def grandchild():
            atexit.register(mark, "grandchild-atexit", os.getpid())

        def child():
            atexit.register(mark, "child-atexit", os.getpid())
            p = ctx().Process(target=grandchild)
            p.start()
            p.join()
            mark("grandchild-exitcode", p.exitcode)

        if __name__ == "__main__":
            atexit.register(mark, "parent-atexit", os.getpid())
            p = ctx().Process(target=child)
            p.start()
            p.join()
            mark("child-exitcode", p.exitcode)
            mark("parent", os.getpid())
        """
    )
    assert run.returncode == 0, run.explain()
    words = [m.split()[0] for m in run.marks]
    assert words == [
        "grandchild-atexit",
        "grandchild-exitcode",
        "child-atexit",
        "child-exitcode",
        "parent",
        "parent-atexit",
    ], run.explain()
    pids = [m.split()[1] for m in run.marks]
    assert pids[0] != pids[2] != pids[4], run.explain()
    assert pids[4] == pids[5], run.explain()
    assert run.marks[1] == "grandchild-exitcode 0"
    assert run.marks[3] == "child-exitcode 0"


def test_main_module_import_in_the_child_is_the_childs_own(
    run_script: RunScript, start_method: str
) -> None:
    """What the main module creates at import is the child's own where the
    child imports it (spawn; forkserver unless the server preloaded it:
    finalized there, once, on every version) and inherited where it does not
    (fork, a server's preload: never in the child)."""
    run = run_script(
        """
        import logging

        class Closing(logging.Handler):
            def emit(self, record):
                pass

            def close(self):
                mark("module-handler-closed", os.getpid())
                super().close()

        class Target:
            pass

        # Module level: runs in the parent, and again in every child that
        # imports this module as __mp_main__.
        atexit.register(lambda: mark("module-atexit", os.getpid()))
        module_target = Target()
        weakref.finalize(module_target, lambda: mark("module-finalize", os.getpid()))
        logging.getLogger("module").addHandler(Closing())
        IMPORTED_IN = os.getpid()

        def child():
            mark("child", os.getpid())
            # forkserver: the server may have imported it (then inherited).
            mark("imported-here", IMPORTED_IN == os.getpid())

        if __name__ == "__main__":
            mark("parent", os.getpid())
            p = ctx().Process(target=child)
            p.start()
            p.join()
            mark("exitcode", p.exitcode)
        """
    )
    assert run.returncode == 0, run.explain()
    assert "exitcode 0" in run.marks, run.explain()
    pids = {m.split()[0]: m.split()[1] for m in run.marks if m.split()[0] in ("parent", "child")}
    events = ("module-atexit", "module-finalize", "module-handler-closed")
    in_child = sorted(m.split()[0] for m in run.marks if m.split()[1:] == [pids["child"]])
    in_parent = sorted(m.split()[0] for m in run.marks if m.split()[1:] == [pids["parent"]])
    assert in_parent == sorted([*events, "parent"]), run.explain()
    imported_here = "imported-here True" in run.marks
    assert imported_here == (start_method == "spawn") or start_method == "forkserver"
    expected = sorted([*events, "child"]) if imported_here else ["child"]
    assert in_child == expected, run.explain()


PARENT_GARBAGE_AT_FORK = """
import gc, os

class ParentCycle:
    def __init__(self):
        self.me = self
    def __del__(self):
        with open(os.environ["PARENT_GARBAGE_MARKS"], "a") as f:
            f.write(f"del-parent {os.getpid()}\\n")

def make_garbage_just_before_fork():
    # Registered before anything else, so it runs last before each fork:
    # fresh garbage, and a collector that runs at the next allocation.
    ParentCycle()
    gc.set_threshold(1)

if __name__ == "__main__":
    os.register_at_fork(
        before=make_garbage_just_before_fork,
        after_in_parent=lambda: gc.set_threshold(700, 10, 10),
    )
"""


@pytest.mark.parametrize("start_method", ["fork"])  # only fork children inherit garbage
@pytest.mark.parametrize("how", ["safe", "installed", "plain"])
def test_parent_garbage_is_never_collected_in_the_child(
    run_script: RunScript, tmp_path: Path, how: str
) -> None:
    """Uncollected garbage the parent had at the fork is finalized only in the
    parent, even when a collection is due at the child's first allocation
    (plain children finalize it in the child: the scenario provokes that)."""
    marks = tmp_path / "parent-garbage"
    run = run_script(
        """
        def child():
            mark("child", os.getpid())

        if __name__ == "__main__":
            HOW = sys.argv[1]
            if HOW == "installed":
                safe_mp.install()
            context = plain_mp.get_context(METHOD) if HOW != "safe" else ctx()
            p = context.Process(target=child)
            p.start()
            p.join()
            gc.set_threshold(700, 10, 10)
            gc.collect()
            mark("exitcode", p.exitcode, "parent", os.getpid())
        """,
        preamble=PARENT_GARBAGE_AT_FORK,
        args_after=(how,),
        env={"PARENT_GARBAGE_MARKS": str(marks)},
    )
    assert run.returncode == 0, run.explain()
    child_pid = next(m.split()[1] for m in run.marks if m.startswith("child"))
    parent_pid = next(m.split()[3] for m in run.marks if m.startswith("exitcode"))
    where = sorted(line.split()[1] for line in marks.read_text().splitlines())
    if how == "plain":
        assert child_pid in where, (where, run.explain())
    else:
        assert where == [parent_pid], (where, child_pid, run.explain())


@pytest.mark.parametrize("start_method", ["fork"])
@pytest.mark.timeout(120)
def test_collector_pause_never_leaks_to_the_parent_or_plain_children(
    run_script: RunScript,
) -> None:
    """Safe forks pause the collector only around themselves: a parent
    thread forking plain children at the same time, the parent afterwards and
    those children all keep automatic collection."""
    run = run_script(
        """
        import threading

        def report(kind):
            mark(kind, gc.isenabled())

        def plain_forks():
            for _ in range(30):
                p = plain_mp.get_context(METHOD).Process(target=report, args=("plain",))
                p.start()
                p.join()

        if __name__ == "__main__":
            thread = threading.Thread(target=plain_forks)
            thread.start()
            for _ in range(30):
                p = ctx().Process(target=report, args=("safe",))
                p.start()
                p.join()
            thread.join()
            mark("parent", gc.isenabled())
        """
    )
    assert run.returncode == 0, run.explain()
    assert sorted(set(run.marks)) == ["parent True", "plain True", "safe True"], run.explain()
    assert len(run.marks) == 61, run.explain()


PAUSE_INTERLEAVING = """
import threading
import safeproc._forks as forks

class Stalling:
    # The collector as the fork hooks see it, stalled at one step so that
    # another thread forks a plain child exactly there.
    def __init__(self, step):
        self.step, self.reached, self.go = step, threading.Event(), threading.Event()
    def __getattr__(self, name):
        return getattr(gc, name)
    def stall(self, name):
        if name == self.step and os.getpid() == PARENT:  # not in the children
            self.reached.set()
            self.go.wait(30)
    def disable(self):
        gc.disable()
        self.stall("disable")
    def enable(self):
        self.stall("enable")
        gc.enable()

def plain_child_collects():
    pid = os.fork()
    if pid == 0:
        os._exit(0 if gc.isenabled() else 1)
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0

def safe_fork():
    # The parent's side of a safe fork, hook by hook: a real fork would also
    # run other modules' hooks (logging's holds its lock across the fork).
    with forks.starting_safe_child("fork"):
        forks._before_fork()
        forks._after_fork_in_parent()

PARENT = os.getpid()

if __name__ == "__main__":
    for step in ("disable", "enable"):
        stalling = Stalling(step)
        forks.gc = stalling
        thread = threading.Thread(target=safe_fork)
        thread.start()
        stalling.reached.wait(30)
        mark(step, plain_child_collects())
        stalling.go.set()
        thread.join(30)
        forks.gc = gc
    mark("parent", gc.isenabled())
"""


@pytest.mark.parametrize("start_method", ["fork"])
def test_collector_pause_is_never_seen_half_done(run_script: RunScript) -> None:
    """A plain fork from another thread at any step of a safe fork's
    collector pause (just disabled, about to re-enable) gives a child that
    collects, as plain: deterministic, where the test above samples."""
    run = run_script(PAUSE_INTERLEAVING)
    assert run.returncode == 0, run.explain()
    assert run.marks == ["disable True", "enable True", "parent True"], run.explain()


def test_atexit_runs_exactly_once_on_every_version(run_script: RunScript) -> None:
    """3.13 runs child atexit handlers itself: safeproc must not run them twice."""
    run = run_script(
        """
        def child():
            atexit.register(mark, "atexit", os.getpid())

        if __name__ == "__main__":
            p = ctx().Process(target=child)
            p.start()
            p.join()
        """
    )
    assert run.returncode == 0, run.explain()
    assert len(run.marks) == 1, run.explain()
    assert run.marks[0].startswith("atexit "), run.explain()


def test_temporary_directory_made_in_the_child_is_removed(run_script: RunScript) -> None:
    """A TemporaryDirectory the child made and never closed is removed at its exit."""
    run = run_script(
        """
        import tempfile

        def child():
            global keep
            keep = tempfile.TemporaryDirectory()
            mark(keep.name)

        if __name__ == "__main__":
            p = ctx().Process(target=child)
            p.start()
            p.join()
            mark("exists", os.path.exists(open(MARK).read().split()[0]))
        """
    )
    assert run.returncode == 0, run.explain()
    assert run.marks[-1] == "exists False", run.explain()


def test_version_is_exported() -> None:
    """The package reports a version string."""
    import safeproc  # noqa: PLC0415

    assert safeproc.__version__.count(".") == 2
    assert sys.version_info >= (3, 10)


OWN_PROGRAM_RESOURCES = """
import gzip, sqlite3, subprocess, tempfile, zipfile

KEEP = []

def work(d):
    # Opened and never closed, as a program that relies on its exit does.
    g = gzip.open(os.path.join(d, "data.gz"), "wt")
    g.write("gzip-payload\\n" * 1000)
    z = zipfile.ZipFile(os.path.join(d, "data.zip"), "w")
    z.writestr("member.txt", "zip-payload")
    t = tempfile.NamedTemporaryFile(dir=d, prefix="named-", delete=True)
    t.write(b"x")
    db = sqlite3.connect(os.path.join(d, "db.sqlite"))
    db.execute("create table t (x)")
    db.commit()
    db.execute("insert into t values (1)")  # never committed
    KEEP.extend([g, z, t, db])

def observe(d):
    try:
        with gzip.open(os.path.join(d, "data.gz"), "rt") as f:
            gz = len(f.read().splitlines())
    except Exception as e:
        gz = type(e).__name__
    try:
        with zipfile.ZipFile(os.path.join(d, "data.zip")) as f:
            zp = f.read("member.txt").decode()
    except Exception as e:
        zp = type(e).__name__
    names = sorted(os.listdir(d))
    db = sqlite3.connect(os.path.join(d, "db.sqlite"))
    rows = db.execute("select count(*) from t").fetchone()[0]
    db.close()
    return [gz, zp, [n for n in names if n.startswith("named-") or n.endswith("-journal")], rows]

if __name__ == "__main__":
    safe_dir, own_dir = os.path.abspath("safe"), os.path.abspath("own")
    os.mkdir(safe_dir)
    os.mkdir(own_dir)
    p = ctx().Process(target=work, args=(safe_dir,))
    p.start()
    p.join(30)
    mark("exitcode", p.exitcode)
    # The same work as its own Python program: the reference.
    subprocess.run(
        [sys.executable, "-c", f"import scenario; scenario.work({own_dir!r})"], check=True
    )
    mark("safe", observe(safe_dir))
    mark("own", observe(own_dir))
"""


def test_files_archives_and_databases_end_as_in_their_own_program(
    run_script: RunScript,
) -> None:
    """Gzip and zip writers, a NamedTemporaryFile and an uncommitted sqlite
    transaction the child never closed end as they do when the same code
    runs as its own program: readable archives, the temporary file removed,
    the transaction rolled back and its journal gone.

    From 3.14 the interpreter's own exit can lose the gzip data: at module
    teardown the GzipFile dies before the text wrapper above it flushes
    into it ("RuntimeError: lost gzip_file", then EOFError on reading).
    safeproc closes the wrapper first, while every module works, so the
    child's archive stays readable there: that one difference is cleanup
    done right, never less than the program's own exit."""
    run = run_script(OWN_PROGRAM_RESOURCES)
    assert run.returncode == 0, run.explain()
    marks = dict(m.split(" ", 1) for m in run.marks)
    assert marks["exitcode"] == "0", run.explain()
    readable = "[1000, 'zip-payload', [], 0]"
    assert marks["safe"] == readable, run.explain()
    if sys.version_info >= (3, 14):
        assert marks["own"] in (readable, "['EOFError', 'zip-payload', [], 0]"), run.explain()
    else:
        assert marks["own"] == readable, run.explain()


OTHER_BACKEND_FINALIZE = """
import importlib

other = importlib.import_module(
    "multiprocessing.util" if BACKEND == "multiprocess" else "multiprocess.util"
)

class Resource:
    pass

def child():
    global resource
    resource = Resource()
    # What a library on the other backend registers (a Manager, a pool, a
    # shared_memory tracker): it runs at a normal interpreter exit.
    other.Finalize(resource, mark, args=("other-backend-finalize", os.getpid()), exitpriority=10)
    mark("child", os.getpid())

if __name__ == "__main__":
    own_program_or_child(child)
"""


def test_other_backends_finalizers_run_as_in_their_own_program(run_script: RunScript) -> None:
    """A child on one backend that registers a ``util.Finalize`` of the other
    backend gets it run at exit, as the same code run as its own program
    does (both multiprocessing.util and multiprocess.util run theirs from
    atexit)."""
    own = run_script(OTHER_BACKEND_FINALIZE, args_after=("own",))
    assert own.returncode == 0, own.explain()
    pid = own.marks[0].split()[1]
    assert own.marks == [f"child {pid}", f"other-backend-finalize {pid}"], own.explain()
    safe = run_script(OTHER_BACKEND_FINALIZE)
    assert safe.returncode == 0, safe.explain()
    pid = safe.marks[0].split()[1]
    assert safe.marks == [f"child {pid}", f"other-backend-finalize {pid}", "exitcode 0"], (
        safe.explain()
    )
