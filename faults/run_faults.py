"""Seeded fault injection over safeproc children: ``nox -s faults``.

Draws ``--runs`` cases (default 1,000) from ``--seed`` (default: the
``SAFEPROC_FAULTS_SEED`` environment variable, else a fresh random seed,
printed first) and runs them in batches, each batch in one driver
interpreter (``fault_driver.py``), ``--jobs`` drivers at a time. Each driver
runs under a kill timer and an environment token; once it has exited, no
process carrying its token may be left. Any failing case is printed with
the line that reproduces it alone (``--seed S --only I``), its markers and
the tail of its stderr; the exit status is 1 if any case failed.

What a case draws and what it must give: see ``fault_cases.py``.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

from fault_cases import BACKENDS, START_METHODS, draw_case
from fault_driver import JOIN_SLACK, TOKEN_VARIABLE

# The process search shared with the test suite (pytest finds it through
# pyproject's pythonpath; this script, run by path, through sys.path).
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "testing"))
from safeproc_testing import kill_and_describe, leftovers

HERE = Path(__file__).resolve().parent
SEED_VARIABLE = "SAFEPROC_FAULTS_SEED"
#: A driver's kill timer: this many seconds per case it runs (most take < 1 s).
SECONDS_PER_CASE_BOUND = JOIN_SLACK + 10.0


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--seed",
        type=int,
        default=None,
        help=f"the run's seed (default: ${SEED_VARIABLE}, else random)",
    )
    parser.add_argument("--runs", type=int, default=1000, help="cases to draw (default 1000)")
    parser.add_argument(
        "--only", type=int, action="append", help="run only this case index (repeatable)"
    )
    parser.add_argument(
        "--jobs", type=int, default=os.cpu_count() or 1, help="drivers at a time (default: CPUs)"
    )
    parser.add_argument("--batch", type=int, default=20, help="cases per driver (default 20)")
    parser.add_argument("--backends", default=",".join(BACKENDS))
    parser.add_argument("--methods", default=",".join(START_METHODS))
    parser.add_argument(
        "--out",
        type=Path,
        default=HERE.parent / "build" / "faults",
        help="results, and the files of failing batches (default build/faults)",
    )
    args = parser.parse_args(argv)
    if args.seed is None:
        from_env = os.environ.get(SEED_VARIABLE)
        args.seed = int(from_env) if from_env else random.SystemRandom().randrange(2**32)
    return args


def _run_batch(args: argparse.Namespace, number: int, indices: list[int]) -> list[dict[str, Any]]:
    """Run one driver over *indices*; return its results, with driver-level failures added."""
    token = uuid.uuid4().hex
    workdir = args.out / f"batch-{number}"
    results_path = workdir / "results.jsonl"
    shutil.rmtree(workdir, ignore_errors=True)  # files of an earlier run
    workdir.mkdir(parents=True)
    env = dict(os.environ)
    env[TOKEN_VARIABLE] = token
    command = [
        sys.executable,
        str(HERE / "fault_driver.py"),
        *("--seed", str(args.seed), "--indices", ",".join(map(str, indices))),
        *("--backends", args.backends, "--methods", args.methods),
        *("--workdir", str(workdir), "--results", str(results_path)),
    ]
    bound = SECONDS_PER_CASE_BOUND * len(indices)
    with open(workdir / "driver.log", "w+b") as log:
        driver = subprocess.Popen(
            command,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            returncode = driver.wait(bound)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(driver.pid, signal.SIGKILL)
            returncode = driver.wait()
        log.seek(0)
        driver_log = log.read().decode(errors="replace")
    results = []
    if results_path.exists():
        results = [json.loads(line) for line in results_path.read_text().splitlines()]
    done = {r["index"] for r in results}
    for index in indices:
        if index not in done:
            results.append(
                {
                    "index": index,
                    "case": draw_case(args.seed, index, *_filters(args)).describe(),
                    "problems": [
                        (
                            f"the driver ended (exit {returncode}, kill timer {bound:.0f}s) "
                            "before this case finished"
                        )
                    ],
                    "stderr": driver_log[-4000:],
                }
            )
            break  # the cases after it never started
    left = kill_and_describe(leftovers(TOKEN_VARIABLE, token))
    if left:
        results.append(
            {
                "index": indices[-1],
                "case": f"batch {number} (cases {indices[0]}..{indices[-1]})",
                "problems": [f"processes left after the driver exited: {left}"],
            }
        )
    if returncode != 0 and not any(r["problems"] for r in results):
        results.append(
            {
                "index": indices[-1],
                "case": f"batch {number}",
                "problems": [f"driver exited with {returncode}"],
                "stderr": driver_log[-4000:],
            }
        )
    if not any(r["problems"] for r in results):
        shutil.rmtree(workdir, ignore_errors=True)
    return results


def _filters(args: argparse.Namespace) -> tuple[tuple[str, ...], tuple[str, ...]]:
    return tuple(args.backends.split(",")), tuple(args.methods.split(","))


def _print_failure(seed: int, result: dict[str, Any]) -> None:
    print(f"\nFAILED {result['case']}")
    for problem in result["problems"]:
        print(f"  - {problem}")
    print(f"  reproduce: python faults/run_faults.py --seed {seed} --only {result['index']}")
    if result.get("marks"):
        print("  markers: " + " | ".join(result["marks"]))
    if result.get("stderr"):
        print("  stderr (tail):")
        for line in result["stderr"].splitlines():
            print(f"    {line}")


def main(argv: list[str] | None = None) -> int:
    """Run the session; return the exit status."""
    args = _parse_args(argv)
    indices = args.only or list(range(args.runs))
    print(
        f"safeproc faults: seed {args.seed}, {len(indices)} runs, {args.jobs} drivers "
        f"(reproduce: --seed {args.seed}, or {SEED_VARIABLE}={args.seed})",
        flush=True,
    )
    args.out.mkdir(parents=True, exist_ok=True)
    batches = [indices[i : i + args.batch] for i in range(0, len(indices), args.batch)]
    started = time.monotonic()
    results: list[dict[str, Any]] = []
    with concurrent.futures.ThreadPoolExecutor(args.jobs) as pool:
        futures = [pool.submit(_run_batch, args, n, batch) for n, batch in enumerate(batches)]
        for future in concurrent.futures.as_completed(futures):
            results.extend(future.result())
            finished = len({r["index"] for r in results})
            print(
                f"  {finished}/{len(indices)} runs, {time.monotonic() - started:.0f}s", flush=True
            )
    failures = sorted((r for r in results if r["problems"]), key=lambda r: r["index"])
    kinds: Counter[str] = Counter()
    for index in indices:
        case = draw_case(args.seed, index, *_filters(args))
        kinds[f"{case.backend}/{case.method}"] += 1
        kinds[f"target {case.child.target}"] += 1
        kinds[f"terminate {case.terminate or 'none'} sigterm={case.sigterm}"] += 1
        kinds["nested" if case.grandchild else "not nested"] += 1
        kinds["cleanup hangs" if case.child.cleanup_hangs else "cleanup ends"] += 1
    print("drawn: " + ", ".join(f"{k}: {v}" for k, v in sorted(kinds.items())))
    for failure in failures:
        _print_failure(args.seed, failure)
    (args.out / f"results-{args.seed}.json").write_text(json.dumps(results, indent=1))
    elapsed = time.monotonic() - started
    print(
        f"\nsafeproc faults: {len(indices)} runs in {elapsed:.0f}s, "
        f"{len({f['index'] for f in failures})} failed (seed {args.seed})"
    )
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
