"""Fault injection over the never-worse corpus: part of ``nox -s faults``.

``python faults/corpus_faults.py [--seed S] [--runs N] [--only I]``. Each
case is drawn from ``random.Random(f"corpus:{seed}:{index}")`` alone: one
program of the corpus (``PROGRAMS`` in tests/test_never_worse.py), a
backend, a start method, a way to turn safeproc on (the import swap,
``install()``, ``python -m safeproc run``), a cleanup policy (any
deadline, stdio mode, SIGTERM mode, steps on or off, reports) and a fault
that every child of the program makes at the start of its work and meets
at its exit:

- ``atexit-raises``: an atexit handler that raises;
- ``del-raises``: a reference cycle whose ``__del__`` raises;
- ``del-hangs``: the same, hanging once the child is exiting (drawn only
  under fork and forkserver with a deadline: there only safeproc's
  collection reaches it, and the deadline bounds it);
- ``flush-raises``: a logging handler whose ``flush`` raises;
- ``none``.

The program runs plain and then safe, with the same fault, each under a
kill timer and an environment token. The safe run must leave the plain
run's marks (the data delivered to the parent, the exit codes), end with
its exit status, not hang and leave no process behind: whatever the policy
and whatever cleanup meets, it may only add cleanup. A case whose *plain*
run fails is counted apart and not compared.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import importlib.util
import os
import random
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fault_driver import TOKEN_VARIABLE

# The process search shared with the suite (testing/, on the suite's
# pythonpath; this script, run by path, through sys.path).
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "testing"))
from safeproc_testing import kill_and_describe, leftovers

if TYPE_CHECKING:
    from types import ModuleType

HERE = Path(__file__).resolve().parent
TESTS = HERE.parent / "tests"
SEED_VARIABLE = "SAFEPROC_FAULTS_SEED"
#: Seconds one run of a program may take before it counts as a hang.
RUN_BOUND = 90.0

FAULTS = ("none", "atexit-raises", "del-raises", "del-hangs", "flush-raises")
SAFE_MODES = ("swap", "install", "run")
TIMEOUTS: tuple[float | None, ...] = (0.01, 0.3, 2.0, None)
STDIO = ("auto", "flush", "line", "reopen", "none")

FAULT_CODE = """
FAULT = {fault!r}
import logging as _logging

def _injected():
    exiting = []
    atexit.register(exiting.append, True)  # runs first at exit: LIFO
    if FAULT == "atexit-raises":
        def _raise():
            raise RuntimeError("injected atexit fault")
        atexit.register(_raise)
        exiting.clear()
        atexit.register(exiting.append, True)
    elif FAULT in ("del-raises", "del-hangs"):
        class _Cycle:
            def __del__(self):
                if FAULT == "del-hangs" and exiting:
                    time.sleep(60)
                raise RuntimeError("injected __del__ fault")
        cycle = _Cycle()
        cycle.self = cycle
        del cycle
    elif FAULT == "flush-raises":
        class _Failing(_logging.Handler):
            def emit(self, record):
                pass
            def flush(self):
                raise RuntimeError("injected flush fault")
        _logging.getLogger("injected").addHandler(_Failing())

# Every child of the program starts its work with the fault (a Process
# subclass that overrides run() goes without): spawned children patch on
# their own import of this module, forked ones inherit the patch.
_plain_run = plain_mp.process.BaseProcess.run

def _run_with_fault(self):
    _injected()
    return _plain_run(self)

plain_mp.process.BaseProcess.run = _run_with_fault
"""


def _load(name: str, path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


CONFTEST = _load("safeproc_corpus_conftest", TESTS / "conftest.py")
NEVER_WORSE = _load("safeproc_corpus_never_worse", TESTS / "test_never_worse.py")
PROGRAMS: dict[str, str] = NEVER_WORSE.PROGRAMS


@dataclass(frozen=True)
class CorpusCase:
    """One drawn case: a program, how it runs, its policy and its fault."""

    index: int
    program: str
    backend: str
    method: str
    mode: str
    policy: dict[str, Any]
    fault: str

    def describe(self) -> str:
        """One line: everything the case drew."""
        fields = ", ".join(f"{k}={v!r}" for k, v in self.policy.items())
        return (
            f"#{self.index} {self.program} {self.backend}/{self.method} mode={self.mode} "
            f"fault={self.fault} CleanupPolicy({fields})"
        )


def draw(seed: int, index: int) -> CorpusCase:
    """Draw case *index* of *seed*, from those two alone."""
    rng = random.Random(f"corpus:{seed}:{index}")
    program = rng.choice(sorted(PROGRAMS))
    backend = rng.choice(CONFTEST.BACKENDS)
    method = rng.choice(CONFTEST.START_METHODS)
    mode = rng.choice(SAFE_MODES)
    faults = [f for f in FAULTS if f != "del-hangs" or method != "spawn"]
    fault = rng.choice(faults)
    timeouts = [t for t in TIMEOUTS if fault != "del-hangs" or (t is not None and t < 1)]
    policy: dict[str, Any] = {
        "timeout": rng.choice(timeouts),
        "stdio": rng.choice(STDIO),
        "sigterm": rng.choice(("default", "cleanup")),
        "report": rng.random() < 0.3,
    }
    for step in ("gc", "atexit", "finalizers", "logging", "files"):
        policy[step] = rng.random() < 0.85
    return CorpusCase(index, program, backend, method, mode, policy, fault)


@dataclass
class Outcome:
    """What one run of a program left."""

    returncode: int | None
    marks: list[str]
    stderr: str
    leftovers: list[str]


def _run(case: CorpusCase, workdir: Path, *, plain: bool) -> Outcome:
    mode = "plain" if plain else case.mode
    marks_path = workdir / f"marks-{mode}"
    script = workdir / "program.py"
    script.write_text(
        CONFTEST.SCRIPT_HEADER.format(
            backend=case.backend,
            method=case.method,
            mark=str(marks_path),
            dill_note=CONFTEST.DILL_NOTE,
        )
        + FAULT_CODE.format(fault=case.fault)
        + f"\nif SAFE:\n    safe_mp.set_default_cleanup(safe_mp.CleanupPolicy(**{case.policy!r}))\n"
        + textwrap.dedent(PROGRAMS[case.program])
    )
    token = uuid.uuid4().hex
    env = dict(os.environ, SAFEPROC_TEST_MODE=mode, **{TOKEN_VARIABLE: token})
    env.pop("PYTHONUNBUFFERED", None)
    proc = subprocess.Popen(
        [sys.executable, *CONFTEST.RUNNER[mode], str(script)],
        cwd=workdir,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        _, stderr = proc.communicate(timeout=RUN_BOUND)
        returncode: int | None = proc.returncode
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        _, stderr = proc.communicate()
        returncode = None
    left = kill_and_describe(leftovers(TOKEN_VARIABLE, token))
    marks = marks_path.read_text().splitlines() if marks_path.exists() else []
    return Outcome(returncode, marks, stderr.decode(errors="replace"), left)


def run_case(case: CorpusCase, out: Path) -> dict[str, Any]:
    """Run *case* plain and safe; return its result (problems empty if never worse)."""
    with tempfile.TemporaryDirectory(dir=out, prefix=f"case-{case.index}-") as tmp:
        workdir = Path(tmp)
        plain = _run(case, workdir, plain=True)
        result: dict[str, Any] = {"index": case.index, "case": case.describe(), "problems": []}
        if plain.returncode != 0 or plain.leftovers or not plain.marks:
            result["plain_failed"] = True
            result["stderr"] = plain.stderr[-2000:]
            return result
        safe = _run(case, workdir, plain=False)
    problems = result["problems"]
    if safe.returncode is None:
        problems.append(f"the safe run hung (killed after {RUN_BOUND:.0f}s)")
    elif safe.returncode != plain.returncode:
        problems.append(f"exit status {safe.returncode}, plain {plain.returncode}")
    if safe.marks != plain.marks:
        problems.append(f"marks {safe.marks}, plain {plain.marks}")
    if safe.leftovers:
        problems.append(f"processes left: {safe.leftovers}")
    if problems:
        result["stderr"] = safe.stderr[-3000:]
    return result


def self_check(out: Path) -> str | None:
    """Check that a fault reaches the children: None, or what went wrong.

    A forked child's raising atexit handler is skipped plain and run safe:
    if the injection ever stopped reaching children, every case would pass
    without testing anything.
    """
    case = CorpusCase(-1, "exit-codes", "stdlib", "fork", "swap", {}, "atexit-raises")
    with tempfile.TemporaryDirectory(dir=out, prefix="self-check-") as tmp:
        plain = _run(case, Path(tmp), plain=True)
        safe = _run(case, Path(tmp), plain=False)
    # Four children; the one killed by SIGKILL never exits on its own.
    error = "RuntimeError: injected atexit fault"
    counts = (plain.stderr.count(error), safe.stderr.count(error))
    if counts != (0, 3):
        return f"the injected atexit fault ran (plain, safe) = {counts} times, expected (0, 3)"
    return None


def main(argv: list[str] | None = None) -> int:
    """Draw and run the cases; return 1 if any safe run was worse than plain."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--runs", type=int, default=60, help="cases to draw (default 60)")
    parser.add_argument("--only", type=int, action="append", help="run only this case index")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--out", type=Path, default=HERE.parent / "build" / "corpus-faults")
    args = parser.parse_args(argv)
    if args.seed is None:
        from_env = os.environ.get(SEED_VARIABLE)
        args.seed = int(from_env) if from_env else random.SystemRandom().randrange(2**32)
    indices = args.only or list(range(args.runs))
    cases = [draw(args.seed, i) for i in indices]
    print(
        f"safeproc corpus faults: seed {args.seed}, {len(cases)} cases of {len(PROGRAMS)} "
        f"programs (reproduce one: --seed {args.seed} --only I)",
        flush=True,
    )
    args.out.mkdir(parents=True, exist_ok=True)
    problem = self_check(args.out)
    if problem:
        print(f"self-check FAILED: {problem}")
        return 1
    started = time.monotonic()
    results = []
    with concurrent.futures.ThreadPoolExecutor(args.jobs) as pool:
        for result in pool.map(lambda c: run_case(c, args.out), cases):
            results.append(result)
            if len(results) % 10 == 0:
                print(
                    f"  {len(results)}/{len(cases)}, {time.monotonic() - started:.0f}s", flush=True
                )
    drawn: Counter[str] = Counter()
    for case in cases:
        drawn[f"fault {case.fault}"] += 1
        drawn[f"mode {case.mode}"] += 1
        drawn[case.method] += 1
    print("drawn: " + ", ".join(f"{k}: {v}" for k, v in sorted(drawn.items())))
    failures = [r for r in results if r["problems"]]
    plain_failed = [r for r in results if r.get("plain_failed")]
    for result in plain_failed:
        print(f"\nnot compared (the plain run failed): {result['case']}")
    for result in failures:
        print(f"\nFAILED {result['case']}")
        for problem in result["problems"]:
            print(f"  - {problem}")
        rerun = f"--seed {args.seed} --only {result['index']}"
        print(f"  reproduce: python faults/corpus_faults.py {rerun}")
        for line in result.get("stderr", "").splitlines()[-40:]:
            print(f"    {line}")
    print(
        f"\nsafeproc corpus faults: {len(cases)} cases in {time.monotonic() - started:.0f}s, "
        f"{len(failures)} worse than plain, {len(plain_failed)} not compared (seed {args.seed})"
    )
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
