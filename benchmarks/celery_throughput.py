"""Task throughput of a recycling Celery prefork worker, plain and under safeproc.

Starts a throwaway ``redis-server`` on a free localhost port, then, in
alternating rounds, one Celery worker (``--pool prefork --concurrency 2
--max-tasks-per-child 1``: every task in a fresh pool child) started plain
(``python -m celery ...``) or safe (``python -m safeproc run -m celery
...``), and times how long it takes to run ``--tasks`` tasks from the
first submission to the last result. Each task makes one telemetry-like
object to finalize (an atexit handler, a buffered log record), as
instrumented tasks do. Prints tasks per second for each round, the
medians, and safe/plain::

    python benchmarks/celery_throughput.py --tasks 100 --rounds 3

Needs celery, redis (the client) and Debian's redis-server
(``nox -s engines`` installs the Python side).
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

APP = """
import atexit, logging, logging.handlers, os
from celery import Celery

app = Celery("bench", broker=os.environ["BROKER"], backend=os.environ["BROKER"])
app.conf.update(worker_prefetch_multiplier=1, broker_connection_retry_on_startup=True,
                worker_hijack_root_logger=False)


@app.task
def work(i):
    atexit.register(lambda: None)
    handler = logging.handlers.MemoryHandler(10, target=logging.NullHandler())
    logger = logging.getLogger(f"bench-{os.getpid()}")
    logger.propagate = False
    logger.addHandler(handler)
    logger.warning("task %s", i)
    return i
"""

CLIENT = """
import sys, time
from app import app, work

deadline = time.monotonic() + 60
while not app.control.inspect(timeout=1).ping():
    if time.monotonic() > deadline:
        sys.exit("the worker did not answer")
n = int(sys.argv[1])
work.delay(-1).get(timeout=60)  # warm: the first child is up
started = time.perf_counter()
results = [work.delay(i) for i in range(n)]
for result in results:
    result.get(timeout=300)
print(time.perf_counter() - started)
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _start_redis(workdir: Path) -> tuple[subprocess.Popen[bytes], str]:
    server = shutil.which("redis-server")
    if server is None:
        sys.exit("redis-server is not installed (apt-get install redis-server)")
    port = _free_port()
    proc = subprocess.Popen(
        [server, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        cwd=workdir,
        stdout=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), 1):
                return proc, f"redis://127.0.0.1:{port}"
        except OSError:
            time.sleep(0.1)
    proc.kill()
    sys.exit("redis-server did not start")


def run_round(workdir: Path, broker: str, *, safe: bool, tasks: int) -> float:
    """Start one worker, run *tasks* tasks through it; return tasks per second."""
    env = {**os.environ, "BROKER": broker, "PYTHONPATH": str(workdir)}
    launcher = [sys.executable, *(("-m", "safeproc", "run") if safe else ())]
    worker = subprocess.Popen(
        [
            *launcher,
            *("-m", "celery", "-A", "app", "worker", "--pool", "prefork"),
            *("--concurrency", "2", "--max-tasks-per-child", "1", "--loglevel", "WARNING"),
            *("--without-gossip", "--without-mingle", "--without-heartbeat"),
        ],
        cwd=workdir,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        out = subprocess.run(
            [sys.executable, "client.py", str(tasks)],
            cwd=workdir,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
            check=True,
        )
        return tasks / float(out.stdout.strip().splitlines()[-1])
    finally:
        worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait()


def main() -> int:
    """Run the interleaved rounds and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--tasks", type=int, default=100, help="tasks per round (default 100)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of each (default 3)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        (workdir / "app.py").write_text(textwrap.dedent(APP))
        (workdir / "client.py").write_text(textwrap.dedent(CLIENT))
        redis, broker = _start_redis(workdir)
        rates: dict[str, list[float]] = {"plain": [], "safe": []}
        try:
            for n in range(args.rounds):
                for name in ("plain", "safe") if n % 2 == 0 else ("safe", "plain"):
                    rate = run_round(workdir, broker, safe=name == "safe", tasks=args.tasks)
                    rates[name].append(rate)
                    print(f"round {n + 1} {name:5}: {rate:6.1f} tasks/s", flush=True)
        finally:
            redis.terminate()
            redis.wait(30)
    plain, safe = statistics.median(rates["plain"]), statistics.median(rates["safe"])
    print(
        f"median plain {plain:.1f} tasks/s, safe {safe:.1f} tasks/s, safe/plain {safe / plain:.2f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
