"""Exit completeness: logging, open files, stdio, threads, 3.13's gaps and
the cleanup report, each observed from outside the child."""

from __future__ import annotations

import re
import shutil
import tempfile
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from conftest import RunScript


def test_child_logging_handlers_are_flushed_and_closed(run_script: RunScript) -> None:
    """A MemoryHandler the child made flushes its records to its target at exit."""
    run = run_script(
        """
        import logging, logging.handlers

        def child():
            target = logging.FileHandler(MARK)
            memory = logging.handlers.MemoryHandler(capacity=100, target=target)
            log = logging.getLogger("child")
            log.addHandler(memory)
            log.warning("child record %d", os.getpid())

        if __name__ == "__main__":
            p = ctx().Process(target=child)
            p.start()
            p.join()
            mark("exitcode", p.exitcode)
        """
    )
    assert run.returncode == 0, run.explain()
    assert len(run.marks) == 2, run.explain()
    assert run.marks[0].startswith("child record"), run.explain()
    assert run.marks[1] == "exitcode 0", run.explain()


LOGGING_CLOSE_ERROR_SCENARIO = """
import logging

class Closing(logging.Handler):
    def __init__(self, n, fail):
        super().__init__()
        self.n, self.fail = n, fail

    def emit(self, record):
        pass

    def close(self):
        mark("closed", self.n)
        super().close()
        if self.fail:
            raise RuntimeError(f"close failed {self.n}")

def child():
    for n, fail in enumerate([False, True, False]):
        logging.getLogger(f"h{n}").addHandler(Closing(n, fail))

if __name__ == "__main__":
    if os.environ.get("ALONE"):
        child()  # the same code as its own program, for comparison
    else:
        p = ctx().Process(target=child)
        p.start()
        p.join()
        mark("exitcode", p.exitcode)
"""


def test_failing_handler_close_ends_logging_shutdown_as_a_normal_exit_does(
    run_script: RunScript,
) -> None:
    """A child's handlers are closed exactly as its own program's exit would:
    newest first, stopping at a ``close()`` that raises, reported as an atexit
    callback error; the exit code is untouched."""
    alone = run_script(LOGGING_CLOSE_ERROR_SCENARIO, env={"ALONE": "1"})
    run = run_script(LOGGING_CLOSE_ERROR_SCENARIO)
    assert alone.marks == ["closed 2", "closed 1"], alone.explain()
    assert run.returncode == 0, run.explain()
    assert run.marks == [*alone.marks, "exitcode 0"], run.explain()
    atexit_error = re.compile(
        r"^(Error in atexit\._run_exitfuncs|Exception ignored in atexit callback).*$", re.MULTILINE
    )
    assert atexit_error.findall(run.stderr) == atexit_error.findall(alone.stderr), run.explain()
    assert run.stderr.count("RuntimeError: close failed 1") == 1, run.explain()


@pytest.mark.parametrize("start_method", ["fork"])  # only fork children inherit handlers
def test_inherited_memory_handler_delivers_each_record_once(run_script: RunScript) -> None:
    """Records logged through a parent-made MemoryHandler reach its target
    once; the parent's pending records are never written by the child."""
    run = run_script(
        """
        import logging, logging.handlers

        def child():
            logging.getLogger("app").warning("child record")

        if __name__ == "__main__":
            target = logging.FileHandler(MARK)
            memory = logging.handlers.MemoryHandler(capacity=100, target=target)
            log = logging.getLogger("app")
            log.addHandler(memory)
            log.propagate = False
            log.warning("parent record before fork")
            p = ctx().Process(target=child)
            p.start()
            p.join()
            log.warning("parent record after join %s", p.exitcode)
            logging.shutdown()
        """
    )
    assert run.returncode == 0, run.explain()
    assert sorted(run.marks) == [
        "child record",
        "parent record after join 0",
        "parent record before fork",
    ], run.explain()


def test_queue_handler_and_listener_lose_no_record(run_script: RunScript) -> None:
    """Children logging through a QueueHandler into a parent's QueueListener:
    every record arrives, once."""
    run = run_script(
        """
        import logging, logging.handlers

        def child(queue, n):
            log = logging.getLogger("worker")
            log.addHandler(logging.handlers.QueueHandler(queue))
            log.setLevel(logging.INFO)
            for i in range(50):
                log.info("worker %d record %d", n, i)

        if __name__ == "__main__":
            queue = ctx().Queue()
            listener = logging.handlers.QueueListener(queue, logging.FileHandler(MARK))
            listener.start()
            procs = [ctx().Process(target=child, args=(queue, n)) for n in range(3)]
            for p in procs:
                p.start()
            for p in procs:
                p.join()
            listener.stop()
        """
    )
    assert run.returncode == 0, run.explain()
    expected = sorted(f"worker {n} record {i}" for n in range(3) for i in range(50))
    assert sorted(run.marks) == expected, run.explain()


def test_buffered_files_made_in_the_child_are_flushed(run_script: RunScript) -> None:
    """A file the child opened and never closed keeps its buffered bytes;
    a file inherited with the parent's pending bytes is not flushed twice."""
    run = run_script(
        """
        def child(path):
            global f
            f = open(path, "w")
            f.write("child bytes\\n")

        if __name__ == "__main__":
            inherited = open(MARK, "w")
            inherited.write("parent pending\\n")
            p = ctx().Process(target=child, args=(MARK + ".child",))
            p.start()
            p.join()
            inherited.close()
            with open(MARK + ".child") as c:
                mark("child file:", c.read().strip())
        """
    )
    assert run.returncode == 0, run.explain()
    assert run.marks == ["parent pending", "child file: child bytes"], run.explain()


def test_files_off_leaves_child_files_to_the_plain_library(
    run_script: RunScript, start_method: str
) -> None:
    """files=False: an unclosed child file fares as under the plain library
    (its buffer is lost under fork and forkserver)."""
    body = """
        def child(path):
            global f
            f = open(path, "w")
            f.write("child bytes\\n")

        if __name__ == "__main__":
            kw = {} if mp is plain_mp else {"cleanup": safe_mp.CleanupPolicy(files=False)}
            p = ctx().Process(target=child, args=(MARK + ".child",), **kw)
            p.start()
            p.join()
            with open(MARK + ".child") as c:
                mark("child file:", c.read().strip() or "empty")
        """
    safe = run_script(body)
    plain = run_script(body, plain=True)
    assert safe.marks == plain.marks, (safe.explain(), plain.explain())
    if start_method != "spawn":
        assert safe.marks == ["child file: empty"], safe.explain()


def test_child_finalizers_run_after_the_parent_made_one(run_script: RunScript) -> None:
    """3.13's gap: a child finalizer runs even when the parent had created
    one before forking (the inherited 'registered' flag)."""
    run = run_script(
        """
        class Target:
            pass

        def child():
            global c
            c = Target()
            weakref.finalize(c, mark, "child-finalizer", os.getpid())

        if __name__ == "__main__":
            p_obj = Target()
            weakref.finalize(p_obj, mark, "parent-finalizer", os.getpid())
            p = ctx().Process(target=child)
            p.start()
            p.join()
            mark("parent", os.getpid())
        """
    )
    assert run.returncode == 0, run.explain()
    words = [m.split()[0] for m in run.marks]
    assert words == ["child-finalizer", "parent", "parent-finalizer"], run.explain()
    assert run.marks[1].split()[1] == run.marks[2].split()[1], run.explain()


def test_non_daemon_threads_are_joined_before_atexit(run_script: RunScript) -> None:
    """The child's non-daemon thread finishes before its atexit handlers run;
    a daemon thread does not hold the exit up."""
    run = run_script(
        """
        import threading

        def worker():
            time.sleep(0.3)
            mark("thread-done")

        def child():
            atexit.register(mark, "atexit")
            threading.Thread(target=worker).start()
            threading.Thread(target=time.sleep, args=(600,), daemon=True).start()

        if __name__ == "__main__":
            p = ctx().Process(target=child)
            started = time.monotonic()
            p.start()
            p.join(60)
            mark("exitcode", p.exitcode, time.monotonic() - started < 30)
        """
    )
    assert run.marks == ["thread-done", "atexit", "exitcode 0 True"], run.explain()


STDIO_SCENARIO = """
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
    print("stderr-output", file=sys.stderr)

if __name__ == "__main__":
    print("parent-before", flush=True)
    policy = safe_mp.CleanupPolicy(stdio={mode!r})
    p = ctx().Process(target=child, cleanup=policy)
    p.start()
    p.join()
    print("parent-after", p.exitcode)
"""


@pytest.mark.parametrize("mode", ["auto", "flush", "line", "reopen", "none"])
@pytest.mark.parametrize("unbuffered", [False, True], ids=["buffered", "unbuffered"])
@pytest.mark.parametrize("to_file", [False, True], ids=["pipe", "file"])
def test_stdio_policies(
    run_script: RunScript, mode: str, unbuffered: bool, to_file: bool, start_method: str
) -> None:
    """Every stdio mode but none delivers the child's late output (atexit,
    __del__) once, to a pipe or a file, with and without -u."""
    run = run_script(
        STDIO_SCENARIO.format(mode=mode),
        args=("-u",) if unbuffered else (),
        stdout_to_file=to_file,
    )
    assert run.returncode == 0, run.explain()
    lines = run.stdout.splitlines()
    assert lines[0] == "parent-before", run.explain()
    assert lines[-1] == "parent-after 0", run.explain()
    child_lines = lines[1:-1]
    # python -u does not reach the forkserver process (PYTHONUNBUFFERED does).
    buffered_child = not unbuffered or start_method == "forkserver"
    if mode == "none" and buffered_child and start_method != "spawn":
        # Nothing flushes a forked child's buffered stdout: as plain.
        assert "atexit-output" not in child_lines, run.explain()
    else:
        assert child_lines == ["target-output", "atexit-output", "del-output"], run.explain()
    assert run.stderr.count("stderr-output") == 1, run.explain()


WRITER_THREAD_SCENARIO = """
import threading

stop = threading.Event()

def writer():
    n = 0
    while not stop.is_set():
        n += 1
        print(f"parent-line {{n}}")
    print(f"parent-last {{n}}", flush=True)

def child(i):
    print(f"child-line {{i}}")
    logging.getLogger().warning("child-record %d", i)

if __name__ == "__main__":
    import logging
    logging.basicConfig(format="%(message)s")
    t = threading.Thread(target=writer)
    t.start()
    hung = 0
    for i in range({forks}):
        p = ctx().Process(target=child, args=(i,))
        p.start()
        p.join(10)
        if p.exitcode is None:
            hung += 1
            p.kill()
            p.join()
    stop.set()
    t.join()
    mark("hung", hung)
"""


@pytest.mark.parametrize("start_method", ["fork"])
@pytest.mark.timeout(300)
def test_parent_writer_thread_never_hangs_or_duplicates(run_script: RunScript) -> None:
    """With a parent thread writing to stdout at every fork, default-policy
    fork children never hang, print their lines and log records once, and
    never write the parent's bytes again."""
    forks = 150
    run = run_script(WRITER_THREAD_SCENARIO.format(forks=forks), timeout=240)
    assert run.returncode == 0, run.explain()[-3000:]
    assert run.marks == ["hung 0"], run.marks
    # A child's exit flush is one write of under PIPE_BUF bytes, so it is
    # atomic; the parent's 8 KiB writes are not, and a child's line can land
    # inside one of them. Match the child's lines anywhere, and the parent's
    # only where they are intact.
    child = sorted(int(n) for n in re.findall(r"child-line (\d+)\n", run.stdout))
    assert child == list(range(forks)), child[:20]
    records = sorted(
        int(ln.split()[1]) for ln in run.stderr.splitlines() if ln.startswith("child-record")
    )
    assert records == list(range(forks)), run.stderr[-2000:]
    parent = re.findall(r"(?m)^parent-line (\d+)$", run.stdout)
    assert len(parent) > 0
    assert len(parent) == len(set(parent)), "a parent line was written twice"


def test_report_is_delivered_with_counts_times_and_errors(
    run_script: RunScript, start_method: str
) -> None:
    """report=True: after join() the parent reads what each step did, in order."""
    run = run_script(
        """
        class Cycle:
            def __init__(self):
                self.me = self

        def child():
            atexit.register(lambda: 1 / 0)
            atexit.register(print, "fine")
            for _ in range(10):
                Cycle()

        if __name__ == "__main__":
            p = ctx().Process(target=child, cleanup=safe_mp.CleanupPolicy(report=True))
            assert p.cleanup_report is None
            p.start()
            p.join()
            r = p.cleanup_report
            mark("trigger", r.trigger, r.deadline_expired, r.hung_step)
            mark("atexit", r.step("atexit").count)
            mark("errors", len(r.errors), any("ZeroDivisionError" in e for e in r.errors))
            mark("steps", ",".join(s.name for s in r.steps))
            mark("seconds", r.seconds >= 0, all(s.seconds >= 0 for s in r.steps))
            mark("pid", r.pid == p.pid)
        """
    )
    assert run.returncode == 0, run.explain()
    marks = dict(m.split(" ", 1) for m in run.marks)
    assert marks["trigger"] == "exit False None", run.explain()
    assert int(marks["atexit"]) >= 2, run.explain()
    assert marks["errors"] == "1 True", run.explain()
    assert marks["seconds"] == "True True", run.explain()
    assert marks["pid"] == "True", run.explain()
    expected = ["start", "atexit", "backends", "finalizers", "gc", "logging", "files", "stdio"]
    if start_method == "spawn":
        expected.remove("backends")  # nothing is inherited
    assert marks["steps"].split(",") == expected, run.explain()


def test_report_delivery_never_blocks_when_the_parent_is_gone(run_script: RunScript) -> None:
    """A child whose parent exited without reading its report still exits."""
    run = run_script(
        """
        def child():
            atexit.register(mark, "child-exited")
            time.sleep(0.5)

        if __name__ == "__main__":
            p = ctx().Process(target=child, cleanup=safe_mp.CleanupPolicy(report=True))
            p.start()
            mark("parent-gone")
            os._exit(0)
        """
    )
    assert run.returncode == 0, run.explain()
    # The harness waits for every process it started, grandchildren included.
    assert "parent-gone" in run.marks, run.explain()


OTEL_SCENARIO = """
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult


class FileExporter(SpanExporter):
    def export(self, spans):
        for span in spans:
            mark("span", span.name, os.getpid())
        return SpanExportResult.SUCCESS


def setup_tracing():
    global provider
    provider = TracerProvider()  # registers its own atexit shutdown
    # A long schedule: only the exit-time shutdown can export these spans.
    provider.add_span_processor(BatchSpanProcessor(FileExporter(), schedule_delay_millis=60_000))


def make_spans(n):
    tracer = provider.get_tracer("test")
    for i in range(n):
        with tracer.start_as_current_span(f"s{{i}}"):
            pass
    return n


def child():
    setup_tracing()
    make_spans(5)


if __name__ == "__main__":
    if {in_pool}:
        pool = ctx().Pool(2, initializer=setup_tracing)
        assert sum(pool.map(make_spans, [3] * 4, chunksize=1)) == 12
        pool.close()
        pool.join()
    else:
        p = ctx().Process(target=child)
        p.start()
        p.join()
        mark("exitcode", p.exitcode)
"""


@pytest.mark.parametrize("in_pool", [False, True], ids=["process", "pool"])
def test_opentelemetry_batch_spans_are_not_lost(run_script: RunScript, in_pool: bool) -> None:
    """An OpenTelemetry TracerProvider with a BatchSpanProcessor made in a
    child or a pool initializer exports every span at exit."""
    run = run_script(OTEL_SCENARIO.format(in_pool=in_pool))
    assert run.returncode == 0, run.explain()
    spans = [m for m in run.marks if m.startswith("span ")]
    if in_pool:
        assert len(spans) == 12, run.explain()
    else:
        assert sorted(m.split()[1] for m in spans) == [f"s{i}" for i in range(5)], run.explain()
        assert run.marks[-1] == "exitcode 0", run.explain()


@pytest.mark.parametrize("start_method", ["fork", "forkserver"])
@pytest.mark.parametrize(
    ("ending", "code"),
    [("lambda: os._exit(3)", 3), ("lambda: os.kill(os.getpid(), signal.SIGKILL)", -9)],
    ids=["os._exit", "SIGKILL"],
)
def test_report_says_what_ended_the_child(run_script: RunScript, ending: str, code: int) -> None:
    """An atexit handler calling ``os._exit(3)``, or killed by SIGKILL (as
    the OOM killer does): that exit code, the atexit step interrupted, and
    no deadline expired (it did not). Report files do not accumulate in the
    parent's report directory."""
    # Short, under the system's temporary directory: the forkserver's socket
    # goes there too, and an AF_UNIX path under the test's own directory
    # can pass the 108-byte limit (pytest numbers its base directories).
    base = tempfile.mkdtemp(prefix="sp-")
    try:
        run = run_script(
            f"ENDING = {ending}\n"
            """
import glob, tempfile

def child():
    atexit.register(ENDING)

if __name__ == "__main__":
    base = os.environ["REPORT_BASE"]
    tempfile.tempdir = base  # the report directory goes here
    for _ in range(3):
        p = ctx().Process(target=child, cleanup=safe_mp.CleanupPolicy(report=True))
        p.start()
        p.join(30)
        r = p.cleanup_report
        mark("report", p.exitcode, r.exitcode, r.deadline_expired, r.interrupted_step, r.hung_step)
    dirs = glob.glob(os.path.join(base, "safeproc-reports-*"))
    mark("dirs", len(dirs), "files-left", sum(len(os.listdir(d)) for d in dirs))
""",
            env={"REPORT_BASE": base},
        )
    finally:
        shutil.rmtree(base, ignore_errors=True)
    assert run.marks == [f"report {code} {code} False atexit None"] * 3 + ["dirs 1 files-left 0"], (
        run.explain()
    )
