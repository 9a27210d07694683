"""What the bench measures, how much of it, and the targets it judges."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "BACKENDS",
    "BIG_HEAP",
    "FULL",
    "METHODS",
    "NAIVE_COSTLY_HEAP",
    "POOL_TASKS",
    "POOL_WORKERS",
    "PROBE_MODULE",
    "QUICK",
    "TARGET_CLEANUP_4M_SECONDS",
    "TARGET_CLEANUP_NAIVE_FACTOR",
    "TARGET_EXTRA_PRIVATE_KIB",
    "TARGET_LATENCY_EMPTY",
    "TARGET_LATENCY_FORK_4M",
    "TARGET_POOL_THROUGHPUT",
    "TARGET_TERMINATE_MARGIN",
    "TERMINATE_DEADLINE",
    "TERMINATE_HANG",
    "Profile",
]

BACKENDS = ("stdlib", "multiprocess")
#: The start methods measured; ``forkserver+preload`` is forkserver with
#: safeproc in the server's preload list (the server imports it once, so
#: safe children do not import it each).
METHODS = ("fork", "forkserver", "forkserver+preload", "spawn")
PROBE_MODULE = "_safeproc_bench_probe"
POOL_TASKS = 10_000
POOL_WORKERS = 2
TERMINATE_DEADLINE = 1.0
#: How long a terminate() may take before the bench calls it hung.
TERMINATE_HANG = 10.0

# -- targets; never loosened ---------------------------------------------------

TARGET_LATENCY_EMPTY = {"fork": 1.05, "forkserver": 1.03, "spawn": 1.03}
TARGET_LATENCY_FORK_4M = 1.10
TARGET_CLEANUP_4M_SECONDS = 0.002
TARGET_CLEANUP_NAIVE_FACTOR = 300.0
TARGET_EXTRA_PRIVATE_KIB = 1024
TARGET_POOL_THROUGHPUT = 0.98
TARGET_TERMINATE_MARGIN = 0.100
BIG_HEAP = 4_000_000
#: From this heap size on, the naive variant (a second a run) gets fewer rounds.
NAIVE_COSTLY_HEAP = 1_000_000


@dataclass(frozen=True)
class Profile:
    """How much to measure."""

    name: str
    #: start method -> inherited heap sizes
    heaps: dict[str, tuple[int, ...]]
    #: start method -> measured latency rounds (after warm-up)
    rounds: dict[str, int]
    warmup: int
    #: rounds of the naive variant at heaps of a million objects and more
    naive_rounds_big: int
    #: memory and cleanup-phase runs per variant
    memory_rounds: int
    pool_methods: tuple[str, ...]
    pool_rounds: int
    #: rounds of Pool.map with chunksize=1 (one pipe round trip per task)
    chunk1_rounds: int
    lifecycle_rounds: int
    terminate_methods: tuple[str, ...]
    terminate_rounds: int


QUICK = Profile(
    name="quick",
    heaps={
        "fork": (0, BIG_HEAP),
        "forkserver": (0,),
        "forkserver+preload": (0,),
        "spawn": (0,),
    },
    rounds={"fork": 30, "forkserver": 15, "forkserver+preload": 15, "spawn": 8},
    warmup=2,
    naive_rounds_big=2,
    memory_rounds=3,
    pool_methods=("fork",),
    pool_rounds=100,
    chunk1_rounds=0,
    lifecycle_rounds=8,
    terminate_methods=("fork",),
    terminate_rounds=2,
)


FULL = Profile(
    name="full",
    heaps={
        "fork": (0, 100_000, 1_000_000, BIG_HEAP),
        "forkserver": (0, 100_000, 1_000_000, BIG_HEAP),
        "forkserver+preload": (0, BIG_HEAP),
        "spawn": (0, 100_000, 1_000_000, BIG_HEAP),
    },
    rounds={"fork": 100, "forkserver": 40, "forkserver+preload": 40, "spawn": 20},
    warmup=3,
    naive_rounds_big=5,
    memory_rounds=8,
    pool_methods=("fork", "forkserver", "spawn"),
    pool_rounds=300,
    chunk1_rounds=12,
    lifecycle_rounds=20,
    terminate_methods=("fork", "forkserver", "spawn"),
    terminate_rounds=5,
)
