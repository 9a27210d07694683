"""Real engines, started from their own command lines: Celery prefork workers
(billiard) on a real Redis broker, and a dask scheduler with nanny-managed
workers over TCP. Every task child and worker process finalizes what it
created when the engine ends it; plain, the same runs lose all of it
(``nox -s engines`` installs celery, redis, dask and opentelemetry, and
needs Debian's ``redis-server``)."""

from __future__ import annotations

import collections
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import psutil
import pytest

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

# Also "clients": the default test command (-m "not clients") leaves them out.
pytestmark = [pytest.mark.engines, pytest.mark.clients, pytest.mark.timeout(600)]

#: What a child's exit delivers as marks: handlers, finalizers, __del__,
#: an exported span. Its buffered log record is the fifth.
KEPT_MARKS = ("atexit", "finalize", "del", "span")
#: Kept per child when it exits as its own program.
KEPT_PER_CHILD = len(KEPT_MARKS) + 1

# Imported by the Celery app and by dask's nannies and workers (PYTHONPATH).
# One of each thing a normal exit finalizes; "who" is "child" in a task
# child or worker process, "parent" in the process that starts them (its
# copies must never be finalized in a child).
ENGINE_STATE = """
import atexit, logging, logging.handlers, os, weakref

MARKS = os.environ["ENGINE_MARKS"]


def mark(*words, _open=open):  # (works late in an interpreter's exit too)
    with _open(MARKS, "a") as f:
        f.write(" ".join(map(str, words)) + "\\n")


class Cycle:
    def __init__(self, who):
        self.me, self.who, self.pid = self, who, os.getpid()
    def __del__(self):
        mark("del", self.who, self.pid)


class Target:
    pass


class FileSpanExporter:
    # An OpenTelemetry exporter writing one mark per exported span.
    def export(self, spans):
        from opentelemetry.sdk.trace.export import SpanExportResult
        for span in spans:
            mark("span", *span.name.split())
        return SpanExportResult.SUCCESS
    def shutdown(self):
        pass
    def force_flush(self, timeout_millis=30000):
        return True


KEEP = []


def make_finalizable_state(who, span=True):
    pid = os.getpid()
    atexit.register(mark, "atexit", who, pid)
    target = Target()
    KEEP.append(target)
    weakref.finalize(target, mark, "finalize", who, pid)
    # Held by a global until the exit, as module teardown releases it: a
    # cycle left as garbage at once is collected (or not) by whichever
    # automatic collection the engine's own code triggers next.
    global CYCLE
    CYCLE = Cycle(who)
    if span:
        # Spans leave this BatchSpanProcessor only when the provider's own
        # atexit hook shuts it down (the timer is set beyond any run).
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
        provider = TracerProvider()
        provider.add_span_processor(
            BatchSpanProcessor(FileSpanExporter(), schedule_delay_millis=600_000)
        )
        KEEP.append(provider)
        with provider.get_tracer("engines").start_as_current_span(f"{who} {pid}"):
            pass
    handler = logging.handlers.MemoryHandler(
        100, target=logging.FileHandler(os.environ["ENGINE_LOG"])
    )
    logger = logging.getLogger(f"engines-{who}-{pid}")
    logger.propagate = False
    logger.addHandler(handler)
    logger.warning("record %s %s", who, pid)
    mark("made", who, pid)


def dask_setup(server):
    # As a nanny preload: the nanny's own state, inherited by fork workers.
    if type(server).__name__ == "Nanny":
        make_finalizable_state("parent")
"""

#: Observation only: the pool's parent marks each child's real exit status
#: once it reaps it (appended to the programs that start billiard pools).
MARKING_POLL = """
_poll = billiard.popen_fork.Popen.poll


def _marking_poll(self, flag=os.WNOHANG):
    code = _poll(self, flag)
    if code is not None and not getattr(self, "_exit_marked", False):
        self._exit_marked = True
        engine_state.mark("exit", "child", self.pid, code)
    return code


billiard.popen_fork.Popen.poll = _marking_poll
"""

CELERY_APP = (
    """
{preamble}
import os
import billiard.popen_fork
from celery import Celery, signals
import engine_state

app = Celery("app", broker=os.environ["BROKER"], backend=os.environ["BROKER"])
app.conf.update(
    worker_prefetch_multiplier=1,
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
)


@app.task(bind=True)
def probe(self, i):
    engine_state.make_finalizable_state("child")
    return os.getpid(), self.request.hostname


@signals.worker_init.connect
def make_parent_state(**kwargs):
    engine_state.make_finalizable_state("parent")
    engine_state.mark("node", "parent", os.getpid())


@signals.worker_process_shutdown.connect
def on_process_shutdown(pid, exitcode, **kwargs):
    engine_state.mark("shutdown", "child", pid, exitcode)


# Observation only: the pool's parent marks each child's real exit status
# once it reaps it.
"""
    + MARKING_POLL
)

CELERY_CLIENT = """
import sys, time
from app import app, probe
import engine_state

deadline = time.monotonic() + 90
while len(app.control.inspect(timeout=1).ping() or {}) < 2:
    if time.monotonic() > deadline:
        sys.exit("the two worker nodes did not answer")
results = [probe.delay(i) for i in range(int(sys.argv[1]))]
for result in results:
    pid, node = result.get(timeout=120)
    engine_state.mark("task", node, pid)
"""

DASK_CLIENT = """
import sys
from distributed import Client
import engine_state


def setup():
    engine_state.make_finalizable_state("child")
    return engine_state.os.getpid()


with Client(sys.argv[1], timeout=60) as client:
    client.wait_for_workers(2, timeout=90)
    pids = client.run(setup)
    assert len(pids) == 2, pids
    for pid in pids.values():
        engine_state.mark("worker", "child", pid)
    client.shutdown()
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _token_processes(token: str) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["environ"]):
        with contextlib.suppress(psutil.Error, OSError):
            if (proc.info["environ"] or {}).get("ENGINE_TOKEN") == token:
                found.append(proc)
    return found


@dataclass
class EngineRun:
    """What one engine run left behind, observed from outside."""

    marks: list[str]
    log: str
    returncodes: list[int]
    output: str
    children: set[str] = field(default_factory=set)

    def explain(self) -> str:
        """Everything the run left, for assertion messages."""
        return (
            f"returncodes={self.returncodes}\n--- output\n{self.output[-6000:]}\n--- marks\n"
            + "\n".join(self.marks)
            + "\n--- log\n"
            + self.log
        )

    def events(self, who: str, pid: str) -> list[str]:
        """Return the state events ("made", KEPT_MARKS) marked for *who* with *pid*, sorted."""
        return sorted(
            m.split()[0]
            for m in self.marks
            if m.split()[1:3] == [who, pid] and m.split()[0] in ("made", *KEPT_MARKS)
        )

    def records(self, who: str, pid: str) -> int:
        """Count the log records of *who* with *pid* that reached the log file."""
        return self.log.count(f"record {who} {pid}\n")

    def kept(self) -> int:
        """Count what the children's exits delivered: marks and log records."""
        return sum(
            len(self.events("child", pid)) - 1 + self.records("child", pid) for pid in self.children
        )


class Engine:
    """Starts an engine's processes with one token, stops and checks them."""

    def __init__(self, tmp_path: Path, env: dict[str, str]) -> None:
        """Prepare a run in *tmp_path* whose processes get *env* too."""
        self.tmp_path = tmp_path
        self.token = uuid.uuid4().hex
        self.marks = tmp_path / "marks"
        self.log = tmp_path / "records.log"
        self.env = {
            **os.environ,
            **env,
            "ENGINE_TOKEN": self.token,
            "ENGINE_MARKS": str(self.marks),
            "ENGINE_LOG": str(self.log),
            "PYTHONPATH": os.pathsep.join(
                [str(tmp_path), *filter(None, [os.environ.get("PYTHONPATH")])]
            ),
            "PYTHONFAULTHANDLER": "1",
        }
        (tmp_path / "engine_state.py").write_text(textwrap.dedent(ENGINE_STATE))
        self.processes: list[tuple[subprocess.Popen[bytes], Path]] = []

    def start(self, name: str, argv: list[str], extra_env: dict[str, str] | None = None) -> None:
        """Start one long-running process of the engine, its output to a file."""
        out = self.tmp_path / f"{name}.out"
        with open(out, "wb") as f:
            proc = subprocess.Popen(
                argv,
                cwd=self.tmp_path,
                env={**self.env, **(extra_env or {})},
                stdin=subprocess.DEVNULL,
                stdout=f,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.processes.append((proc, out))

    def run(self, argv: list[str], timeout: float = 180) -> None:
        """Run a client program to its end; fail with the engine's output if it fails."""
        result = subprocess.run(
            argv,
            cwd=self.tmp_path,
            env=self.env,
            capture_output=True,
            timeout=timeout,
            check=False,
        )
        if result.returncode != 0:
            pytest.fail(
                f"client failed: rc={result.returncode}\n{result.stdout.decode()}\n"
                f"{result.stderr.decode()}\n{self.output()}"
            )

    def output(self) -> str:
        """Return the engine processes' output so far."""
        return "\n".join(
            f"--- {out.name}\n" + out.read_text(errors="replace") for _, out in self.processes
        )

    def wait(self, timeout: float) -> list[int]:
        """Wait for every started process to end; return their exit codes."""
        deadline = time.monotonic() + timeout
        codes = []
        for proc, _ in self.processes:
            try:
                codes.append(proc.wait(max(deadline - time.monotonic(), 0.1)))
            except subprocess.TimeoutExpired:
                codes.append(-999)  # hung: killed in stop()
        return codes

    def stop(self) -> None:
        """Kill whatever is left and fail if anything of the engine was left behind."""
        for proc, _ in self.processes:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        deadline = time.monotonic() + 10
        while True:
            left = _token_processes(self.token)
            if not left:
                return
            if time.monotonic() > deadline:
                described = []
                for leftover in left:
                    with contextlib.suppress(psutil.Error):
                        described.append(f"{leftover.pid} {leftover.cmdline()}")
                        leftover.kill()
                pytest.fail(f"processes left behind: {described}")
            time.sleep(0.1)

    def result(self, returncodes: list[int]) -> EngineRun:
        """Collect the marks and log records."""
        marks = self.marks.read_text().splitlines() if self.marks.exists() else []
        log = self.log.read_text() if self.log.exists() else ""
        return EngineRun(marks, log, returncodes, self.output())


# -- billiard on its own --------------------------------------------------------------

# A billiard pool (Celery's prefork pool without Celery) ended one way or
# another; every worker makes its state in the initializer. The parent
# marks each worker's real exit status as it reaps it. No span here: a
# BatchSpanProcessor's thread in a worker defeats the signal mask billiard
# puts around a worker's death report (SIGTERM goes to the other thread),
# and plain billiard then deadlocks its parent on the result queue's lock
# in about 3 of 4 runs that shrink the pool (measured). The Celery tests
# have spans.
BILLIARD_POOL = (
    """
import os, sys, time
import engine_state
if sys.argv[1] != "plain":
    import safeproc
    safeproc.install(safeproc.CleanupPolicy(sigterm=sys.argv[1]))
import billiard.popen_fork
from billiard.pool import Pool

"""
    + MARKING_POLL
    + """


def init():
    engine_state.make_finalizable_state("child", span=False)


def nap(seconds):
    time.sleep(seconds)
    return os.getpid()


def on_exit(pid, code):
    engine_state.mark("shutdown", "child", pid, code)


if __name__ == "__main__":
    engine_state.make_finalizable_state("parent", span=False)
    how = sys.argv[2]
    pool = Pool(
        2, initializer=init, on_process_exit=on_exit, threads=True,
        maxtasksperchild=1 if how == "recycle" else None,
        timeout=1 if how == "hard-limit" else None,
    )
    if how == "recycle":
        assert len(set(pool.map(nap, [0.1] * 4, chunksize=1))) == 4
    else:
        pool.map(nap, [0.2, 0.2])
    if how == "shrink":
        pool.shrink(1)
        time.sleep(1.5)
    elif how == "terminate":
        pool.apply_async(nap, (30,))
        time.sleep(0.5)
        pool.terminate()
        pool.join()
    elif how == "hard-limit":
        try:
            pool.apply_async(nap, (30,)).get(15)
        except Exception as exc:
            engine_state.mark("limit", "main", type(exc).__name__)
    if how != "terminate":
        pool.close()
        pool.join()
"""
)

#: How the pool ends its workers, and the policy: sigterm="cleanup" changes
#: only the endings by SIGTERM with a task running.
BILLIARD_ENDINGS = [
    *((how, "default") for how in ("recycle", "shrink", "close", "terminate", "hard-limit")),
    ("terminate", "cleanup"),
    ("hard-limit", "cleanup"),
]


def _run_billiard(tmp_path: Path, policy: str, how: str) -> EngineRun:
    tmp_path.mkdir()
    engine = Engine(tmp_path, {})
    (tmp_path / "pool.py").write_text(textwrap.dedent(BILLIARD_POOL))
    try:
        engine.start("pool", [sys.executable, "pool.py", policy, how])
        codes = engine.wait(60)
    finally:
        engine.stop()
    run = engine.result(codes)
    run.children = {m.split()[2] for m in run.marks if m.startswith("made child")}
    return run


@pytest.mark.parametrize(("how", "policy"), BILLIARD_ENDINGS)
def test_billiard_pool_workers_exit_as_their_own_program(
    tmp_path: Path, how: str, policy: str
) -> None:
    """Billiard pool workers recycled, shrunk, closed, terminated or past a
    hard time limit finalize what they created once, after on_exit, with
    plain's exit codes; plain, they finalize nothing."""
    __import__("billiard")  # nox -s engines installs it
    plain = _run_billiard(tmp_path / "plain", "plain", how)
    safe = _run_billiard(tmp_path / "safe", policy, how)
    for run in (plain, safe):
        explain = run.explain()
        assert run.returncodes == [0], explain
        assert len(run.children) >= 2, explain  # two workers at least
        shutdowns = collections.Counter(m.split()[2] for m in run.marks if m.startswith("shutdown"))
        assert all(shutdowns[pid] == 1 for pid in run.children), explain
        if how == "hard-limit":
            # (billiard hands the TimeLimitExceeded over wrapped)
            assert any(m.startswith("limit main") for m in run.marks), explain
    assert plain.kept() == 0, plain.explain()
    explain = safe.explain()
    for pid in safe.children:
        assert safe.events("child", pid) == ["atexit", "del", "finalize", "made"], explain
        assert safe.records("child", pid) == 1, explain
    parent = [m.split() for m in safe.marks if m.split()[1:2] == ["parent"]]
    assert len({words[2] for words in parent}) == 1, explain
    assert sum(m.startswith("atexit parent") for m in safe.marks) == 1, explain
    # As plain: 155 for recycled workers, 0 for closed ones, -15 for those
    # SIGTERM ended. Past a hard time limit plain's worker dies by whichever
    # comes first, the pool's answer to its death report (-15) or the
    # SIGKILL 0.1 s after the SIGTERM (-9): safe's always by SIGTERM.
    plain_codes = {
        -15 if code == -9 and how == "hard-limit" else code for code in _exit_codes(plain).values()
    }
    assert set(_exit_codes(safe).values()) == plain_codes, explain + f"\nplain: {plain_codes}"


def test_install_patches_billiard_only_once_it_is_imported(tmp_path: Path) -> None:
    """install() imports neither billiard nor its pool; a later ``import
    billiard`` is patched as it completes, and uninstall() restores it."""
    __import__("billiard")  # nox -s engines installs it
    program = textwrap.dedent(
        """
        import sys
        import safeproc
        safeproc.install()
        print("imported", "billiard" in sys.modules)
        import billiard.pool, billiard.process
        print("patched", hasattr(billiard.process.BaseProcess._bootstrap, "__wrapped__"),
              hasattr(billiard.pool.Worker._do_exit, "__wrapped__"))
        safeproc.uninstall()
        print("restored", hasattr(billiard.process.BaseProcess._bootstrap, "__wrapped__"),
              hasattr(billiard.pool.Worker._do_exit, "__wrapped__"))
        """
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
    assert result.stdout.split("\n")[:3] == [
        "imported False",
        "patched True True",
        "restored False False",
    ], result.stdout + result.stderr


# -- Redis and Celery -------------------------------------------------------------


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Run a throwaway Redis server on a free localhost port (Debian's redis-server)."""
    server = shutil.which("redis-server")
    if server is None:
        pytest.fail(
            "redis-server is not installed (.ci/run installs it: apt-get install redis-server)"
        )
    port = _free_port()
    workdir = tmp_path_factory.mktemp("redis")
    pidfile = workdir / "redis.pid"
    # Daemonized: not a child of the test runner, whose tests check that
    # they leave none; stopped by its pid below.
    subprocess.run(
        [
            server,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(workdir),
            "--daemonize",
            "yes",
            "--pidfile",
            str(pidfile),
            "--logfile",
            str(workdir / "redis.log"),
        ],
        check=True,
        timeout=30,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", port), 1) as s,
            ):
                s.sendall(b"PING\r\n")
                if s.recv(16).startswith(b"+PONG"):
                    break
            if time.monotonic() > deadline:
                pytest.fail("redis-server did not start")
            time.sleep(0.1)
        yield f"redis://127.0.0.1:{port}"
    finally:
        _stop_redis(pidfile)


def _stop_redis(pidfile: Path) -> None:
    deadline = time.monotonic() + 10
    while not pidfile.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    with contextlib.suppress(FileNotFoundError, ValueError, psutil.Error):
        proc = psutil.Process(int(pidfile.read_text()))
        if "redis-server" in proc.name():
            proc.terminate()
            proc.wait(30)


#: Tasks per run: each runs in its own pool child (--max-tasks-per-child 1).
TASKS = 10
_databases = iter(range(16))


def _run_celery(tmp_path: Path, redis_url: str, how: str) -> EngineRun:
    """Two prefork worker nodes on one broker, TASKS tasks, then a warm shutdown."""
    __import__("celery")  # nox -s engines installs it
    preamble = "import safeproc.celery" if how == "import" else ""
    (tmp_path / "app.py").write_text(textwrap.dedent(CELERY_APP.format(preamble=preamble)))
    engine = Engine(tmp_path, {"BROKER": f"{redis_url}/{next(_databases)}"})
    launcher = [sys.executable, "-m", "safeproc", "run"] if how == "run" else [sys.executable]
    try:
        for node in ("w1", "w2"):
            engine.start(
                node,
                [
                    *launcher,
                    *("-m", "celery", "-A", "app", "worker", "--pool", "prefork"),
                    *("--concurrency", "2", "--max-tasks-per-child", "1"),
                    *("-n", f"{node}@%h", "--loglevel", "INFO"),
                    *("--without-gossip", "--without-mingle", "--without-heartbeat"),
                ],
            )
        (tmp_path / "client.py").write_text(textwrap.dedent(CELERY_CLIENT))
        engine.run([sys.executable, "client.py", str(TASKS)])
        # Warm shutdown, as a deployment stops a worker: SIGTERM to the node.
        for proc, _ in engine.processes:
            proc.send_signal(signal.SIGTERM)
        codes = engine.wait(60)
    finally:
        engine.stop()
    run = engine.result(codes)
    run.children = {m.split()[2] for m in run.marks if m.startswith("made child")}
    return run


@pytest.fixture(scope="module")
def plain_celery(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> EngineRun:
    """Run Celery without safeproc once, for the tests that compare with it."""
    return _run_celery(tmp_path_factory.mktemp("celery-plain"), redis_url, "plain")


def _check_celery_run(run: EngineRun) -> None:
    """Check what holds plain and safe alike: the tasks ran, one per child, on both nodes."""
    explain = run.explain()
    tasks = [m.split() for m in run.marks if m.startswith("task ")]
    assert len(tasks) == TASKS, explain
    assert len({pid for _, _, pid in tasks}) == TASKS, explain  # one child per task
    assert len({node for _, node, _ in tasks}) == 2, explain  # both nodes
    assert len(run.children) == TASKS, explain
    assert run.returncodes == [0, 0], explain
    # Celery's worker_process_shutdown fired exactly once in each task child.
    shutdowns = collections.Counter(m.split()[2] for m in run.marks if m.startswith("shutdown"))
    assert all(shutdowns[pid] == 1 for pid in run.children), explain
    assert all(count == 1 for count in shutdowns.values()), explain


def _exit_codes(run: EngineRun) -> dict[str, int]:
    return {m.split()[2]: int(m.split()[3]) for m in run.marks if m.startswith("exit child")}


def _idle_exit_codes(run: EngineRun) -> set[int]:
    return {code for pid, code in _exit_codes(run).items() if pid not in run.children}


def test_celery_plain_prefork_children_lose_what_they_created(plain_celery: EngineRun) -> None:
    """Plain Celery prefork children, recycled after each task, finalize
    nothing they created: no atexit, finalizer, __del__, span or log record."""
    _check_celery_run(plain_celery)
    assert plain_celery.kept() == 0, plain_celery.explain()
    codes = _exit_codes(plain_celery)
    assert [codes.get(pid) for pid in plain_celery.children] == [155] * TASKS, (
        plain_celery.explain()
    )


@pytest.mark.parametrize("how", ["run", "import"])
def test_celery_safe_prefork_children_keep_everything(
    tmp_path: Path, redis_url: str, plain_celery: EngineRun, how: str
) -> None:
    """Under ``python -m safeproc run -m celery`` or ``import safeproc.celery``
    in the app module, every recycled task child delivers each of its five
    exit-time effects once, nothing of the parent's, with plain's exit codes."""
    run = _run_celery(tmp_path, redis_url, how)
    explain = run.explain()
    _check_celery_run(run)
    for pid in run.children:
        assert run.events("child", pid) == sorted(["made", *KEPT_MARKS]), explain
        assert run.records("child", pid) == 1, explain
    assert run.kept() == KEPT_PER_CHILD * TASKS, explain
    # Exit codes as plain: 155 for every recycled child, and plain's for the
    # idle children the warm shutdown ended (how many there are depends on
    # timing).
    codes = _exit_codes(run)
    assert [codes.get(pid) for pid in run.children] == [155] * TASKS, explain
    assert _idle_exit_codes(run) == _idle_exit_codes(plain_celery) == {0}, explain
    # The parents' state is finalized by the parents only, once each.
    nodes = {m.split()[2] for m in run.marks if m.startswith("node parent")}
    parent_marks = [m.split() for m in run.marks if m.split()[1:2] == ["parent"]]
    assert all(words[2] in nodes for words in parent_marks), explain
    assert sum(m.startswith("atexit parent") for m in run.marks) == 2, explain


# -- dask ---------------------------------------------------------------------------

DASK_METHODS = ("fork", "forkserver")
#: plain: ``dask worker`` as is. cli: ``dask worker --preload-nanny
#: safeproc.dask``. config: the nanny preload in the dask configuration (an
#: environment variable), nannies started by ``dask spec`` (as SpecCluster
#: deployments start them on other machines).
DASK_HOWS = ("plain", "cli", "config")
PRELOAD_ENV = "DASK_DISTRIBUTED__NANNY__PRELOAD"


def _run_dask(tmp_path: Path, method: str, how: str) -> EngineRun:
    """Run a scheduler and two nanny workers over TCP; the client sets up and shuts down."""
    __import__("distributed")  # nox -s engines installs it
    env = {"DASK_DISTRIBUTED__WORKER__MULTIPROCESSING_METHOD": method}
    if how in ("config", "config-dask-worker"):
        env[PRELOAD_ENV] = '["engine_state", "safeproc.dask"]'
    engine = Engine(tmp_path, env)
    port = _free_port()
    address = f"tcp://127.0.0.1:{port}"
    dask = [sys.executable, "-m", "dask"]
    if how == "config":
        spec = json.dumps(
            {
                "cls": "distributed.Nanny",
                "opts": {"nthreads": 1, "host": "127.0.0.1", "dashboard": False},
            }
        )
        worker = [*dask, "spec", address, "--spec", spec]
    else:
        preload = ["--preload-nanny", "engine_state"]
        if how == "cli":
            preload += ["--preload-nanny", "safeproc.dask"]
        elif how == "config-dask-worker":
            preload = []
        worker = [
            *dask,
            "worker",
            address,
            "--nanny",
            "--nworkers",
            "1",
            "--nthreads",
            "1",
            "--host",
            "127.0.0.1",
            "--no-dashboard",
            *preload,
        ]
    try:
        engine.start(
            "scheduler",
            [*dask, "scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"],
        )
        for n in (1, 2):
            engine.start(f"worker{n}", worker)
        (tmp_path / "client.py").write_text(textwrap.dedent(DASK_CLIENT))
        engine.run([sys.executable, "client.py", address])
        codes = engine.wait(60)
    finally:
        engine.stop()
    run = engine.result(codes)
    run.children = {m.split()[2] for m in run.marks if m.startswith("worker child")}
    return run


@pytest.mark.parametrize("how", DASK_HOWS)
@pytest.mark.parametrize("method", DASK_METHODS)
def test_dask_nanny_workers(tmp_path: Path, method: str, how: str) -> None:
    """Worker processes that nannies fork (or start by forkserver) finalize
    what they created when the cluster shuts down, once each, with the
    nanny preload given on the command line or in the dask configuration;
    plain, they lose all of it."""
    run = _run_dask(tmp_path, method, how)
    explain = run.explain()
    assert len(run.children) == 2, explain
    assert run.returncodes == [0, 0, 0], explain
    nannies = {m.split()[2] for m in run.marks if m.startswith("made parent")}
    assert len(nannies) == 2, explain
    if how == "plain":
        assert run.kept() == 0, explain
        return
    for pid in run.children:
        assert run.events("child", pid) == sorted(["made", *KEPT_MARKS]), explain
        assert run.records("child", pid) == 1, explain
    assert run.kept() == KEPT_PER_CHILD * 2, explain
    # The nannies' own state: finalized by each nanny's exit, never a worker's.
    parent_marks = [m.split() for m in run.marks if m.split()[1:2] == ["parent"]]
    assert all(words[2] in nannies for words in parent_marks), explain
    assert sum(m.startswith("atexit parent") for m in run.marks) == 2, explain


def test_dask_worker_cli_ignores_the_nanny_preload_config(tmp_path: Path) -> None:
    """``dask worker`` passes its (empty) --preload-nanny list to the nanny,
    which then ignores ``distributed.nanny.preload``: the docs say to give
    the preload on that command line. Fails the day dask reads the config."""
    run = _run_dask(tmp_path, "fork", "config-dask-worker")
    explain = run.explain()
    assert len(run.children) == 2, explain
    assert not any(m.startswith("made parent") for m in run.marks), explain
    assert run.kept() == 0, explain
