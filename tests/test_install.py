"""``safeproc.install()`` makes the plain libraries' children safe, and
``python -m safeproc run`` runs a program exactly as ``python`` does."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from conftest import Run, RunScript

RUN = ("-m", "safeproc", "run")

# A child that creates one of each thing a normal exit finalizes, after the
# parent created its own (which must never be finalized in the child).
LEAKY_CHILD = """
class Cycle:
    def __init__(self, who):
        self.me, self.who = self, who
    def __del__(self):
        mark("del", self.who, os.getpid())

class Target:
    pass

def child():
    atexit.register(mark, "atexit", "child", os.getpid())
    global target
    target = Target()
    weakref.finalize(target, mark, "finalize", "child", os.getpid())
    Cycle("child")
    mark("ran", "child", os.getpid())

def parent_state():
    atexit.register(mark, "atexit", "parent", os.getpid())
    global parent_target
    parent_target = Target()
    weakref.finalize(parent_target, mark, "finalize", "parent", os.getpid())
    Cycle("parent")
"""


def _events(marks: list[str], who: str) -> list[str]:
    """Return the event words marked by *who* ("child" or "parent")."""
    return sorted(m.split()[0] for m in marks if m.split()[1:2] == [who])


def test_install_makes_plain_processes_safe(run_script: RunScript) -> None:
    """After install(), a plain library's context Process finalizes what the
    child created, once, and nothing of the parent's."""
    run = run_script(
        LEAKY_CHILD
        + """
if __name__ == "__main__":
    safe_mp.install()
    parent_state()
    p = plain_mp.get_context(METHOD).Process(target=child)
    assert type(p).__module__.startswith(plain_mp.__name__), type(p)
    p.start()
    p.join()
    mark("exitcode", "main", p.exitcode)
    mark("parentpid", "main", os.getpid())
"""
    )
    assert run.returncode == 0, run.explain()
    assert "exitcode main 0" in run.marks, run.explain()
    assert _events(run.marks, "child") == ["atexit", "del", "finalize", "ran"], run.explain()
    parent_pid = next(m.split()[2] for m in run.marks if m.startswith("parentpid"))
    parent = [m for m in run.marks if m.split()[1:2] == ["parent"]]
    # Only the parent's exit finalizes its own state (its cycle may or may
    # not be collected at interpreter exit): never the child.
    assert all(m.split()[2] == parent_pid for m in parent), run.explain()
    # Handlers carry the parent's pid as an argument: a copy run in the child
    # would show up as a second mark.
    assert sum(m.startswith("atexit parent") for m in run.marks) == 1, run.explain()
    assert sum(m.startswith("finalize parent") for m in run.marks) == 1, run.explain()


def test_install_reaches_classes_imported_before_it(run_script: RunScript) -> None:
    """Process classes and contexts obtained before install() and the default
    context's Process are safe too: the patch is on the base class."""
    run = run_script(
        LEAKY_CHILD
        + """
if __name__ == "__main__":
    early_ctx = plain_mp.get_context(METHOD)
    EarlyProcess = early_ctx.Process
    plain_mp.set_start_method(METHOD, force=True)
    safe_mp.install()
    for p in (EarlyProcess(target=child), plain_mp.Process(target=child)):
        p.start()
        p.join()
        mark("exitcode", "main", p.exitcode)
"""
    )
    assert run.returncode == 0, run.explain()
    child_marks = [m for m in run.marks if m.split()[1:2] == ["child"]]
    pids = sorted({m.split()[2] for m in child_marks})
    assert len(pids) == 2, run.explain()
    for pid in pids:
        events = sorted(m.split()[0] for m in child_marks if m.split()[2] == pid)
        assert events == ["atexit", "del", "finalize", "ran"], run.explain()


def test_install_reaches_pool_and_executor_workers(run_script: RunScript, backend: str) -> None:
    """Plain Pool workers (and the stdlib ProcessPoolExecutor's) run their
    initializer's atexit handlers when the pool is closed."""
    run = run_script(
        """
def init():
    atexit.register(mark, "worker-atexit", os.getpid())

def work(x):
    return x * 2

if __name__ == "__main__":
    safe_mp.install()
    with plain_mp.get_context(METHOD).Pool(2, initializer=init) as pool:
        assert pool.map(work, range(4)) == [0, 2, 4, 6]
        pool.close()
        pool.join()
    mark("pool-done")
    if BACKEND == "stdlib":
        import concurrent.futures
        plain_mp.set_start_method(METHOD, force=True)
        with concurrent.futures.ProcessPoolExecutor(1, initializer=init) as ex:
            assert ex.submit(work, 3).result() == 6
    mark("executor-done")
"""
    )
    assert run.returncode == 0, run.explain()
    pool_marks = run.marks[: run.marks.index("pool-done")]
    executor_marks = run.marks[run.marks.index("pool-done") + 1 : -1]
    assert len(pool_marks) == 2, run.explain()
    assert all(m.startswith("worker-atexit") for m in pool_marks), run.explain()
    assert len(executor_marks) == (1 if backend == "stdlib" else 0), run.explain()


def test_uninstall_restores_plain_behaviour(run_script: RunScript) -> None:
    """install() then uninstall() leaves children exactly as plain ones."""
    body = (
        LEAKY_CHILD
        + """
import multiprocessing.process, multiprocessing.spawn
# Only exit collects garbage here, never an allocation count reached earlier.
gc.set_threshold(2**31 - 1)
if __name__ == "__main__":
    # Loading safeproc's modules (install is loaded on first use) marks the
    # preparation data of its own forkserver children, for good; install()
    # must add nothing that uninstall() leaves behind.
    safe_mp.install, safe_mp.uninstall
    originals = (multiprocessing.process.BaseProcess._bootstrap,
                 multiprocessing.spawn.get_preparation_data)
    if not os.environ.get("SAFEPROC_TEST_PLAIN"):
        safe_mp.install()
        safe_mp.install()
        safe_mp.uninstall()
        safe_mp.uninstall()
    assert (multiprocessing.process.BaseProcess._bootstrap,
            multiprocessing.spawn.get_preparation_data) == originals
    p = plain_mp.get_context(METHOD).Process(target=child)
    p.start()
    p.join()
    mark("exitcode", "main", p.exitcode)
"""
    )
    plain = run_script(body, plain=True)
    undone = run_script(body)
    assert undone.returncode == plain.returncode == 0, undone.explain()

    def events(marks: list[str]) -> list[str]:
        return sorted(" ".join(m.split()[:2]) for m in marks)

    assert events(undone.marks) == events(plain.marks), (undone.explain(), plain.explain())


def test_install_is_idempotent_thread_safe_and_never_doubles(run_script: RunScript) -> None:
    """install() from many threads at once, and a SafeProcess under install(),
    each run the child's atexit handler exactly once."""
    run = run_script(
        """
import threading

def child():
    atexit.register(mark, "atexit", os.getpid())

if __name__ == "__main__":
    threads = [threading.Thread(target=safe_mp.install) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for p in (plain_mp.get_context(METHOD).Process(target=child),
              safe_mp.get_context(METHOD).Process(target=child)):
        p.start()
        p.join()
        mark("exitcode", p.exitcode)
"""
    )
    assert run.returncode == 0, run.explain()
    words = [m.split()[0] for m in run.marks]
    assert words == ["atexit", "exitcode", "atexit", "exitcode"], run.explain()


def test_install_policy_reaches_every_child(run_script: RunScript) -> None:
    """The policy given to install() governs plain children of every start
    method: with ``sigterm="cleanup"`` terminate() runs the child's atexit
    handler before it dies by SIGTERM (plain: it just dies)."""
    run = run_script(
        """
def child(ready):
    atexit.register(mark, "atexit-ran")
    ready.set()
    time.sleep(60)

if __name__ == "__main__":
    safe_mp.install(safe_mp.CleanupPolicy(sigterm="cleanup"))
    c = plain_mp.get_context(METHOD)
    ready = c.Event()
    p = c.Process(target=child, args=(ready,))
    started = time.monotonic()
    p.start()
    ready.wait(30)
    p.terminate()
    p.join(30)
    mark(p.exitcode, time.monotonic() - started < 20)
""",
    )
    assert run.returncode == 0, run.explain()
    assert run.marks == ["atexit-ran", f"{-15} True"], run.explain()


@pytest.mark.parametrize("backend", ["stdlib"])
def test_install_reaches_multiprocess_imported_after_it(
    run_script: RunScript, start_method: str
) -> None:
    """install() does not import multiprocess; a later ``import
    multiprocess`` gets safe children all the same, and uninstall() undoes it."""
    run = run_script(
        LEAKY_CHILD
        + """
if __name__ == "__main__":
    gc.set_threshold(2**31 - 1)  # only exit (or safeproc's cleanup) collects
    safe_mp.install()
    mark("imported", "main", "multiprocess" in sys.modules, "dill" in sys.modules)
    import multiprocess
    parent_state()
    p = multiprocess.get_context(METHOD).Process(target=child)
    p.start()
    p.join()
    mark("exitcode", "main", p.exitcode)
    safe_mp.uninstall()
    p = multiprocess.get_context(METHOD).Process(target=Cycle, args=("plain",))
    p.start()
    p.join()
    mark("exitcode", "main", p.exitcode)
"""
    )
    assert run.returncode == 0, run.explain()
    assert "imported main False False" in run.marks, run.explain()
    assert run.marks.count("exitcode main 0") == 2, run.explain()
    assert _events(run.marks, "child") == ["atexit", "del", "finalize", "ran"], run.explain()
    if start_method != "spawn":
        # Uninstalled: a plain fork/forkserver child never collects its garbage.
        assert _events(run.marks, "plain") == [], run.explain()


def test_install_rejects_a_bad_policy() -> None:
    """install() names the argument and the allowed type on bad input."""
    import safeproc  # noqa: PLC0415 - the test's subject, imported late on purpose

    with pytest.raises(
        TypeError, match=r"install\(cleanup=\.\.\.\): cleanup must be a CleanupPolicy"
    ):
        safeproc.install("timeout=5")  # type: ignore[arg-type]
    assert not safeproc._install.installed()


def test_run_gives_a_plain_program_safe_children(run_script: RunScript) -> None:
    """A program that imports only the plain library, run by ``python -m
    safeproc run``, prints the seed's 'del' from the child under every method."""
    run = run_script(
        """
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
    assert not isinstance(plain_mp.get_context(METHOD).Process(), safe_mp.SafeProcess)
    p = plain_mp.get_context(METHOD).Process(target=foo)
    p.start()
    p.join()
    sys.exit(p.exitcode)
""",
        args=RUN,
    )
    assert run.returncode == 0, run.explain()
    assert run.stdout.splitlines() == ["call foo", "del"], run.explain()


def test_run_cleanup_option_sets_the_policy(run_script: RunScript) -> None:
    """``--cleanup sigterm=cleanup`` reaches the children of every start
    method: terminate() runs the child's atexit handler first."""
    run = run_script(
        """
def child(ready):
    atexit.register(mark, "atexit-ran")
    ready.set()
    time.sleep(60)

if __name__ == "__main__":
    c = plain_mp.get_context(METHOD)
    ready = c.Event()
    p = c.Process(target=child, args=(ready,))
    p.start()
    ready.wait(30)
    p.terminate()
    p.join(30)
    mark(p.exitcode)
""",
        args=(*RUN, "--cleanup", "timeout=0.5,sigterm=cleanup,stdio=flush"),
    )
    assert run.returncode == 0, run.explain()
    assert run.marks == ["atexit-ran", "-15"], run.explain()


# -- run: parity with plain python, observed as a whole program ---------------

PARITY_PROGRAM = """\
import multiprocessing, os, sys

def child(q):
    import __main__
    q.put((__main__.__name__, os.path.basename(getattr(__main__, "__file__", "")),
           sys.argv[1:], MAIN_NAME))

MAIN_NAME = __name__

def main():
    m = sys.modules["__main__"]
    print(sorted(k for k in vars(m) if k.startswith("__")))
    print(m.__name__, m.__spec__ and m.__spec__.name, m.__package__)
    print(type(m.__loader__).__name__, m.__file__, getattr(m, "__cached__", None) is None)
    print(sys.argv, sys.path[0])
    for method in ("fork", "forkserver", "spawn"):
        ctx = multiprocessing.get_context(method)
        q = ctx.Queue()
        p = ctx.Process(target=child, args=(q,))
        p.start()
        print(method, q.get(timeout=60))
        p.join()
    how = sys.argv[1] if len(sys.argv) > 1 else ""
    if how == "raise":
        def inner():
            raise ValueError("boom")
        inner()
    if how == "exit":
        sys.exit(7)
    if how == "exit-msg":
        sys.exit("a message")
    if how == "syntax":
        exec("def (:")

if __name__ == "__main__":
    main()
"""


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    # A wide terminal keeps argparse from wrapping the help texts checked.
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1", "COLUMNS": "200"}
    return subprocess.run(
        [sys.executable, *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.parametrize("how", ["ok", "raise", "exit", "exit-msg", "syntax"])
@pytest.mark.parametrize("mode", ["script", "module"])
def test_run_is_exactly_plain_python(tmp_path: Path, how: str, mode: str) -> None:
    """``python -m safeproc run`` gives the same __main__, sys.argv, sys.path[0],
    spawn/forkserver main import, output, traceback and exit code as python."""
    (tmp_path / "prog").mkdir()
    (tmp_path / "prog" / "parity.py").write_text(PARITY_PROGRAM)
    if mode == "script":
        program, cwd = ["prog/parity.py", how, "--cleanup", "x"], tmp_path
    else:
        program, cwd = ["-m", "parity", how, "--cleanup", "x"], tmp_path / "prog"
    plain = _run(program, cwd)
    safe = _run([*RUN, *program], cwd)
    assert (safe.returncode, safe.stdout, safe.stderr) == (
        plain.returncode,
        plain.stdout,
        plain.stderr,
    )
    assert plain.returncode == {"ok": 0, "raise": 1, "exit": 7, "exit-msg": 1, "syntax": 1}[how]
    assert "safeproc" not in safe.stderr


def test_run_reports_missing_programs_like_python(tmp_path: Path) -> None:
    """A missing script or module gives python's message and exit status."""
    for program in (["missing.py"], ["-m", "missing_module_xyz"]):
        plain = _run(program, tmp_path)
        safe = _run([*RUN, *program], tmp_path)
        assert (safe.returncode, safe.stderr) == (plain.returncode, plain.stderr)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("timeout=soon", "CleanupPolicy.timeout must be a number of seconds or none"),
        ("timeout=-1", "CleanupPolicy.timeout must be a finite number"),
        ("stdio=loud", "CleanupPolicy.stdio must be one of 'auto', 'flush'"),
        ("gc=maybe", "CleanupPolicy.gc must be true or false"),
        ("colour=red", "unknown field 'colour'; the fields are: gc, atexit"),
        ("timeout", "--cleanup expects FIELD=VALUE pairs"),
    ],
)
def test_run_rejects_a_bad_cleanup_option(tmp_path: Path, spec: str, message: str) -> None:
    """A bad ``--cleanup`` names the field and the allowed values, exit status 2."""
    (tmp_path / "ok.py").write_text("print('ran')\n")
    result = _run([*RUN, "--cleanup", spec, "ok.py"], tmp_path)
    assert result.returncode == 2, result
    assert message in result.stderr, result.stderr
    assert "ran" not in result.stdout


def test_run_help_and_usage_errors(tmp_path: Path) -> None:
    """``run --help`` documents the options; a missing program is a usage error."""
    helped = _run([*RUN, "--help"], tmp_path)
    assert helped.returncode == 0
    assert "--cleanup" in helped.stdout
    for field in ("timeout", "stdio", "sigterm"):
        assert field in helped.stdout
    missing = _run(list(RUN), tmp_path)
    assert missing.returncode == 2
    assert "a script or -m module is required" in missing.stderr
    listed = _run(["-m", "safeproc", "--help"], tmp_path)
    assert listed.returncode == 0
    assert "run script.py or -m module exactly as python would" in listed.stdout


@pytest.mark.parametrize("kind", ["directory", "zip"])
def test_run_directory_and_zip_like_python(tmp_path: Path, kind: str) -> None:
    """A directory or zip archive with a __main__.py runs as with python."""
    import zipfile  # noqa: PLC0415 - this test only

    main = "import sys\nprint(__name__, __spec__.name, sys.argv, sys.path[0])\nsys.exit(4)\n"
    if kind == "directory":
        (tmp_path / "app").mkdir()
        (tmp_path / "app" / "__main__.py").write_text(main)
        target = "app"
    else:
        with zipfile.ZipFile(tmp_path / "app.zip", "w") as archive:
            archive.writestr("__main__.py", main)
        target = "app.zip"
    plain = _run([target, "x"], tmp_path)
    safe = _run([*RUN, target, "x"], tmp_path)
    assert plain.returncode == 4, plain
    assert (safe.returncode, safe.stdout, safe.stderr) == (
        plain.returncode,
        plain.stdout,
        plain.stderr,
    )


@pytest.mark.parametrize("timeout", ["0.5", "None"])
@pytest.mark.parametrize("start_method", ["fork", "forkserver"])
def test_install_sigterm_cleanup_escalates_a_child_stuck_in_c(
    run_script: RunScript, timeout: str
) -> None:
    """install(sigterm="cleanup"): terminate() of a plain child stuck in a C
    call ends it by SIGTERM soon after the deadline, as SafeProcess does;
    with no deadline too."""
    run = run_script(
        f"TIMEOUT = {timeout}\n"
        """
def child(ready):
    ready.set()
    sum(range(10**13))  # holds the GIL: the handler never runs

if __name__ == "__main__":
    safe_mp.install(safe_mp.CleanupPolicy(sigterm="cleanup", timeout=TIMEOUT))
    c = plain_mp.get_context(METHOD)
    ready = c.Event()
    p = c.Process(target=child, args=(ready,))
    p.start()
    ready.wait(30)
    time.sleep(0.2)
    started = time.monotonic()
    p.terminate()
    p.join(30)
    mark(p.exitcode, time.monotonic() - started < 5)
""",
    )
    assert run.marks == [f"{-15} True"], run.explain()


MAIN_IMPORT_EVENTS = """
import tempfile

# Module level: runs in the parent and in every child that imports this
# module itself (spawn; forkserver unless its server preloaded it).
atexit.register(lambda: mark("module-atexit", os.getpid()))
module_tmp = tempfile.TemporaryDirectory()
mark("module-tmpdir", os.getpid(), module_tmp.name)

def child():
    mark("child", os.getpid())

if __name__ == "__main__":
    how = sys.argv[1]
    if how == "install":
        safe_mp.install()
    c = (safe_mp if how == "safe" else plain_mp).get_context(METHOD)
    p = c.Process(target=child)
    p.start()
    p.join(30)
    mark("exitcode", p.exitcode)
    child_pid = [m.split()[1] for m in open(MARK).read().splitlines() if m.startswith("child ")][0]
    left = [
        m.split()[2] for m in open(MARK).read().splitlines()
        if m.startswith("module-tmpdir " + child_pid)
    ]
    mark("child-tmpdirs-left", sum(os.path.exists(t) for t in left))
"""


def _child_events(run: Run) -> list[str]:
    child = next(m.split()[1] for m in run.marks if m.startswith("child "))
    return sorted(m.split()[0] for m in run.marks if m.split()[1:2] == [child])


@pytest.mark.parametrize("start_method", ["forkserver", "spawn"])
def test_install_and_run_agree_with_safeprocess_on_the_main_import(
    run_script: RunScript,
) -> None:
    """What a forkserver or spawned child's own import of the main module
    creates (an atexit handler, a TemporaryDirectory) is the child's: it is
    finalized the same way through SafeProcess, install() and ``run``."""
    safe = run_script(MAIN_IMPORT_EVENTS, args_after=("safe",))
    installed = run_script(MAIN_IMPORT_EVENTS, args_after=("install",))
    ran = run_script(MAIN_IMPORT_EVENTS, args=RUN, args_after=("run",))
    for run in (safe, installed, ran):
        assert run.returncode == 0, run.explain()
        assert "exitcode 0" in run.marks, run.explain()
        assert "child-tmpdirs-left 0" in run.marks, run.explain()
    assert _child_events(installed) == _child_events(safe), installed.explain()
    assert _child_events(ran) == _child_events(safe), ran.explain()


def test_install_with_multiprocess_in_a_zip(tmp_path: Path) -> None:
    """install(), then ``multiprocess`` and another module from the same zip:
    the zip's shared loader is left as it was, so both import."""
    import importlib.util  # noqa: PLC0415
    import zipfile  # noqa: PLC0415

    spec = importlib.util.find_spec("multiprocess")
    assert spec is not None
    assert spec.submodule_search_locations
    package = Path(next(iter(spec.submodule_search_locations)))
    archive = tmp_path / "libs.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for path in package.rglob("*.py"):
            z.write(path, Path("multiprocess") / path.relative_to(package))
        z.writestr("helper_mod.py", "VALUE = 42\n")
    program = (
        "import sys\n"
        f"sys.path.insert(0, {str(archive)!r})\n"
        "import safeproc\n"
        "safeproc.install()\n"
        "import multiprocess\n"
        "import helper_mod\n"
        "print(multiprocess.__file__.startswith(sys.path[0]), helper_mod.VALUE)\n"
        "p = multiprocess.get_context('fork').Process(target=print, args=('child',))\n"
        "p.start(); p.join(); print('exitcode', p.exitcode)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", program],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split("\n")[:3] == ["True 42", "child", "exitcode 0"], result.stdout
