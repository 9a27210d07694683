"""The orchestrator: one worker interpreter per measurement, and the facts of the machine."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import platform
import random
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from safeproc._bench._config import METHODS, POOL_TASKS, POOL_WORKERS, Profile
from safeproc._bench._probe import write_probe

if TYPE_CHECKING:
    from collections.abc import Iterator

    from safeproc._bench._progress import Progress

__all__ = ["measure"]


@dataclass
class _Run:
    profile: Profile
    workdir: str
    progress: Progress
    seed: int
    errors: list[str] = field(default_factory=list)
    counter: int = 0

    def worker(self, cfg: dict[str, Any], timeout: float) -> dict[str, Any] | None:
        """Run one worker interpreter; return its results, or None on failure."""
        self.counter += 1
        cfg = {
            **cfg,
            "seed": self.seed + self.counter,
            "started": self.progress.started,
            "workdir": self.workdir,
            "result_path": os.path.join(self.workdir, f"result-{self.counter}.json"),
        }
        cfg_path = os.path.join(self.workdir, f"config-{self.counter}.json")
        with open(cfg_path, "w", encoding="utf-8") as f:
            json.dump(cfg, f)
        code = "import sys; from safeproc._bench import run_worker; sys.exit(run_worker())"
        # A new session: on a timeout the whole group (pool workers,
        # forkservers, children) goes, and nothing else.
        env = dict(os.environ)
        if "probe_dir" in cfg:
            # Through the environment, so the forkservers find the probe
            # module too (3.11's forkserver imports its preload list before
            # it applies the parent's sys.path).
            env["PYTHONPATH"] = os.pathsep.join(
                p for p in (cfg["probe_dir"], env.get("PYTHONPATH")) if p
            )
        with subprocess.Popen(  # noqa: S603 - this interpreter, a fixed program
            [sys.executable, "-c", code, cfg_path], start_new_session=True, env=env
        ) as worker:
            try:
                returncode = worker.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(worker.pid, signal.SIGKILL)
                worker.wait()
                self.errors.append(f"worker {cfg['kind']} timed out after {timeout:.0f} s")
                return None
            except BaseException:
                os.killpg(worker.pid, signal.SIGKILL)
                raise
            finally:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(worker.pid, signal.SIGKILL)  # forkservers left behind
        if returncode != 0:
            self.errors.append(f"worker {cfg['kind']} failed with exit code {returncode}")
            return None
        with open(cfg["result_path"], encoding="utf-8") as f:
            result: dict[str, Any] = json.load(f)
        failures = result.pop("failures", [])
        if failures:
            self.errors.append(f"{len(failures)} child(ren) failed, left out of the figures:")
            self.errors.extend(f"  {line}" for line in failures[:20])
        return result


def _heap_groups(profile: Profile) -> Iterator[tuple[int, bool, tuple[str, ...]]]:
    """(heap, preload safeproc in the forkserver, methods) per worker."""
    heaps = sorted({h for hs in profile.heaps.values() for h in hs})
    for heap in heaps:
        methods = tuple(
            m for m in METHODS if m != "forkserver+preload" and heap in profile.heaps.get(m, ())
        )
        if methods:
            yield heap, False, methods
        if heap in profile.heaps.get("forkserver+preload", ()):
            yield heap, True, ("forkserver+preload",)


def _versions() -> dict[str, str | None]:
    from importlib import metadata  # noqa: PLC0415

    versions: dict[str, str | None] = {}
    for name in ("safeproc", "multiprocess", "dill", "psutil", "matplotlib"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def _machine_facts(profile: Profile) -> dict[str, Any]:
    cpu_model = platform.processor() or None
    with contextlib.suppress(OSError), open("/proc/cpuinfo", encoding="utf-8") as f:
        for line in f:
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    mem_total_kib = None
    with contextlib.suppress(OSError), open("/proc/meminfo", encoding="utf-8") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                mem_total_kib = int(line.split()[1])
                break
    return {
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "profile": profile.name,
        "python": sys.version,
        "python_version": platform.python_version(),
        "implementation": platform.python_implementation(),
        "executable": sys.executable,
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_model": cpu_model,
        "cpu_count": os.cpu_count(),
        "mem_total_kib": mem_total_kib,
        "load_average_start": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "versions": _versions(),
        "heap_objects": "N one-element lists, [[i] for i in range(N)], all gc-tracked",
        "pool_workers": POOL_WORKERS,
        "pool_tasks": POOL_TASKS,
    }


def measure(profile: Profile, progress: Progress) -> dict[str, Any]:
    """Run every worker of *profile*; return the raw results and facts."""
    data: dict[str, Any] = {"facts": _machine_facts(profile), "heaps": [], "errors": []}
    common = {
        "warmup": profile.warmup,
        "rounds": profile.rounds,
        "naive_rounds_big": profile.naive_rounds_big,
        "memory_rounds": profile.memory_rounds,
    }
    with tempfile.TemporaryDirectory(prefix="safeproc-bench-") as workdir:
        run = _Run(profile, workdir, progress, seed=random.SystemRandom().randrange(1 << 30))
        data["facts"]["seed"] = run.seed
        for heap, preload, methods in _heap_groups(profile):
            probe_dir = write_probe(os.path.join(workdir, f"probe-{heap}-{preload}"), heap)
            result = run.worker(
                {
                    **common,
                    "kind": "heap",
                    "heap": heap,
                    "methods": methods,
                    "probe_dir": probe_dir,
                },
                timeout=1800,
            )
            if result is not None:
                data["heaps"].append(result)
        progress.line("pools")
        data["pool"] = run.worker(
            {
                "kind": "pool",
                "pool_methods": profile.pool_methods,
                "pool_rounds": profile.pool_rounds,
                "chunk1_rounds": profile.chunk1_rounds,
                "lifecycle_rounds": profile.lifecycle_rounds,
            },
            timeout=1200,
        )
        data["terminate"] = run.worker(
            {
                "kind": "terminate",
                "terminate_methods": profile.terminate_methods,
                "terminate_rounds": profile.terminate_rounds,
                "probe_dir": write_probe(os.path.join(workdir, "probe-terminate"), 0),
            },
            timeout=600,
        )
        data["errors"] = run.errors
    data["facts"]["load_average_end"] = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    data["facts"]["seconds"] = time.monotonic() - progress.started
    return data
