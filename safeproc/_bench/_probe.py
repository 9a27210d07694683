"""The child side: a module that imports only the standard library.

Written to a temporary directory and imported by name (by the fork parent,
and by the forkserver through its preload list). Kept as source text, not
a safeproc module: importing anything under safeproc would import safeproc
into plain children too and hide what its import costs.
"""

from __future__ import annotations

import os

from safeproc._bench._config import PROBE_MODULE

__all__ = ["PROBE_SOURCE", "write_probe"]

PROBE_SOURCE = '''\
"""Child-side probes of python -m safeproc bench (standard library only)."""
import gc
import os
import time

HEAP_SIZE = {heap_size}
FLAG_PATH = {flag_path!r}
HEAP = [[i] for i in range(HEAP_SIZE)]
gc.collect()
start_private_kib = -1


def private_kib():
    """This process's private dirty memory in KiB, or -1 if unknown."""
    for path in ("/proc/self/smaps_rollup", "/proc/self/smaps"):
        try:
            with open(path, "rb") as f:
                data = f.read()
        except OSError:
            continue
        return sum(
            int(line.split()[1]) for line in data.splitlines()
            if line.startswith(b"Private_Dirty:")
        )
    try:
        import psutil
    except ImportError:
        return -1
    return psutil.Process().memory_full_info().uss // 1024


def _after_fork_in_child():
    global start_private_kib
    if os.path.exists(FLAG_PATH):
        start_private_kib = private_kib()


os.register_at_fork(after_in_child=_after_fork_in_child)


class Node:
    def __init__(self, value):
        self.value = value
        self.peer = None


def child_work():
    """What a small task leaves behind: a few hundred objects and a cycle."""
    nodes = [Node(i) for i in range(200)]
    for a, b in zip(nodes, nodes[1:]):
        a.peer = b
    nodes[-1].peer = nodes[0]
    return {{"rows": [dict(n=i, s=str(i)) for i in range(100)]}}


def probe(result_path, naive):
    """Target of the memory and cleanup runs; records them at os._exit."""
    child_work()
    gc_seconds = -1.0
    if naive:
        started = time.perf_counter()
        gc.collect()
        gc_seconds = time.perf_counter() - started
    real_exit = os._exit

    def exit_with_probe(code):
        end = private_kib()
        with open(result_path, "w") as f:
            f.write("%d %d %r" % (start_private_kib, end, gc_seconds))
        real_exit(code)

    os._exit = exit_with_probe


def busy(seconds, marker_dir):
    """A CPU-bound Python task (checks signals between bytecodes)."""
    open(os.path.join(marker_dir, str(os.getpid())), "w").close()
    end = time.monotonic() + seconds
    n = 0
    while time.monotonic() < end:
        n += 1
    return n
'''


def write_probe(directory: str, heap: int) -> str:
    """Write the probe module for *heap* objects into *directory*; return *directory*."""
    os.makedirs(directory, exist_ok=True)
    source = PROBE_SOURCE.format(
        heap_size=heap, flag_path=os.path.join(directory, "measure-memory")
    )
    with open(os.path.join(directory, f"{PROBE_MODULE}.py"), "w", encoding="utf-8") as f:
        f.write(source)
    return directory
