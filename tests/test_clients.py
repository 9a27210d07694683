"""Real clients, untouched: under install(), torch DataLoader workers and
dask.distributed worker processes finalize what they created, and nothing of
their parent's (``nox -s clients`` installs torch and distributed)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from typing import TYPE_CHECKING

import pytest

pytestmark = pytest.mark.clients

if TYPE_CHECKING:
    from pathlib import Path

METHODS = ("fork", "forkserver")

# The child's side: one of each thing a normal exit finalizes. The parent
# makes the same before it starts workers; those must never run in a worker.
COMMON = """
import atexit, gc, logging, logging.handlers, os, sys, weakref

MARK = {mark!r}
LOG = {log!r}
METHOD = {method!r}


def mark(*words):
    with open(MARK, "a") as f:
        f.write(" ".join(map(str, words)) + "\\n")


class Cycle:
    def __init__(self, who):
        self.me, self.who = self, who
    def __del__(self):
        mark("del", self.who, os.getpid())


class Target:
    pass


def make_finalizable_state(who):
    pid = os.getpid()
    atexit.register(mark, "atexit", who, pid)
    target = Target()
    globals().setdefault("KEEP", []).append(target)
    weakref.finalize(target, mark, "finalize", who, pid)
    Cycle(who)
    handler = logging.handlers.MemoryHandler(100, target=logging.FileHandler(LOG))
    logger = logging.getLogger(f"{{who}}-{{pid}}")
    logger.propagate = False
    logger.addHandler(handler)
    logger.warning("record %s %s", who, pid)
    mark("made", who, pid)
"""

TORCH = """
import safeproc
safeproc.install()
import torch.utils.data


class Numbers(torch.utils.data.Dataset):
    def __len__(self):
        return 8
    def __getitem__(self, i):
        return i


def init_worker(worker_id):
    make_finalizable_state("child")


if __name__ == "__main__":
    make_finalizable_state("parent")
    loader = torch.utils.data.DataLoader(
        Numbers(), batch_size=2, num_workers=2,
        multiprocessing_context=METHOD, worker_init_fn=init_worker,
    )
    assert sorted(int(x) for batch in loader for x in batch) == list(range(8))
    mark("parent-pid", "main", os.getpid())
"""

DASK = """
import safeproc
safeproc.install()
import dask
from distributed import Client, LocalCluster


def setup():
    make_finalizable_state("child")
    return os.getpid()


if __name__ == "__main__":
    make_finalizable_state("parent")
    dask.config.set({{"distributed.worker.multiprocessing-method": METHOD}})
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address=None) as cluster, Client(cluster) as client:
        pids = client.run(setup)
        assert len(pids) == 2, pids
    mark("parent-pid", "main", os.getpid())
"""


def _run_client(tmp_path: Path, program: str, method: str) -> tuple[list[str], str]:
    mark, log = tmp_path / "marks", tmp_path / "log"
    script = tmp_path / "client.py"
    script.write_text(
        textwrap.dedent(COMMON.format(mark=str(mark), log=str(log), method=method)) + program
    )
    result = subprocess.run(
        [sys.executable, str(script)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
        env={**os.environ, "PYTHONFAULTHANDLER": "1"},
    )
    explain = f"rc={result.returncode}\n{result.stdout}\n{result.stderr}"
    assert result.returncode == 0, explain
    marks = mark.read_text().splitlines() if mark.exists() else []
    records = log.read_text().splitlines() if log.exists() else []
    return marks, explain + "\n" + "\n".join(marks) + "\n--- log\n" + "\n".join(records)


def _check(marks: list[str], explain: str, workers: int) -> None:
    parent_pid = next(m.split()[2] for m in marks if m.startswith("parent-pid"))
    child_pids = {m.split()[2] for m in marks if m.startswith("made child")}
    assert len(child_pids) == workers, explain
    for pid in child_pids:
        events = sorted(m.split()[0] for m in marks if m.split()[1:] == ["child", pid])
        assert events == ["atexit", "del", "finalize", "made"], explain
        assert f"record child {pid}" in explain, explain
    # The parent's own state is finalized by the parent's exit only.
    parent_marks = [m for m in marks if m.split()[1:2] == ["parent"]]
    assert all(m.split()[2] == parent_pid for m in parent_marks), explain
    # Handlers carry the parent's pid as an argument: a copy run in a worker
    # would show up as a second mark.
    assert sum(m.startswith("atexit parent") for m in marks) == 1, explain
    assert sum(m.startswith("finalize parent") for m in marks) == 1, explain
    assert explain.count("record parent") == 1, explain


@pytest.mark.parametrize("method", METHODS)
def test_torch_dataloader_workers_finalize_what_they_created(tmp_path: Path, method: str) -> None:
    """Torch DataLoader workers run their atexit handlers, finalizers, cyclic
    __del__ and flush buffered log records; the parent's state is left alone."""
    __import__("torch")  # the clients session installs it
    marks, explain = _run_client(tmp_path, TORCH, method)
    _check(marks, explain, workers=2)


@pytest.mark.parametrize("method", METHODS)
def test_dask_local_cluster_workers_finalize_what_they_created(tmp_path: Path, method: str) -> None:
    """dask.distributed LocalCluster worker processes finalize what they
    created when the cluster closes; the parent's state is left alone."""
    __import__("distributed")  # the clients session installs it
    marks, explain = _run_client(tmp_path, DASK.replace("{{", "{").replace("}}", "}"), method)
    _check(marks, explain, workers=2)
