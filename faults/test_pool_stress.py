"""Pool terminate() stress: 200 rounds per backend and start method (``nox -s stress``).

Each parameter runs ``pool_stress_rounds.py`` as a fresh program under a
kill timer and an environment token, then checks every round: bounded,
workers ended by SIGTERM (or had already exited normally), and every worker
whose initializer completed ran its cleanup. Outside ``testpaths``: the
default ``pytest`` run never collects it. ``SAFEPROC_STRESS_ROUNDS`` changes
the number of rounds.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
from safeproc_testing import kill_and_describe, leftovers

HERE = Path(__file__).resolve().parent
ROUNDS = int(os.environ.get("SAFEPROC_STRESS_ROUNDS", "200"))
#: The kill timer of one program: 200 spawn rounds take about 50 s alone.
PROGRAM_BOUND = 900.0
#: terminate()+join() of one round: the deadline (2 s), the parent's
#: escalation margins, SafePool.terminate's own bound, and slack.
ROUND_BOUND = 15.0
TOKEN_VARIABLE = "SAFEPROC_STRESS_TOKEN"  # noqa: S105 - a variable name


def _run_rounds(tmp_path: Path, backend: str, method: str) -> list[dict[str, Any]]:
    marks = tmp_path / "marks"
    results = tmp_path / "results.jsonl"
    token = uuid.uuid4().hex
    env = {**os.environ, TOKEN_VARIABLE: token, "PYTHONFAULTHANDLER": "1"}
    program = [sys.executable, str(HERE / "pool_stress_rounds.py"), backend, method]
    proc = subprocess.Popen(
        [*program, str(ROUNDS), str(marks), str(results)],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        stdout, stderr = proc.communicate(timeout=PROGRAM_BOUND)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        stdout, stderr = proc.communicate()
    left = kill_and_describe(leftovers(TOKEN_VARIABLE, token))
    rounds = [json.loads(line) for line in results.read_text().splitlines()]
    explain = f"--- stdout\n{stdout.decode()}\n--- stderr\n{stderr.decode()[-8000:]}"
    assert proc.returncode == 0, f"exit {proc.returncode} after {len(rounds)} rounds\n{explain}"
    assert len(rounds) == ROUNDS, explain
    assert not left, f"processes left behind: {left}"
    return rounds


@pytest.mark.timeout(PROGRAM_BOUND + 60)
@pytest.mark.parametrize("method", ["fork", "forkserver", "spawn"])
@pytest.mark.parametrize("backend", ["stdlib", "multiprocess"])
def test_terminate_rounds(tmp_path: Path, backend: str, method: str) -> None:
    """terminate() at varied moments never hangs or leaves a process, workers
    die by SIGTERM or had exited, and every initialized worker runs its cleanup."""
    rounds = _run_rounds(tmp_path, backend, method)
    slow = [r for r in rounds if r["seconds"] > ROUND_BOUND]
    bad_codes = [
        (r["round"], r["moment"], w["pid"], w["exitcode"])
        for r in rounds
        for w in r["workers"]
        if w["exitcode"] not in (-signal.SIGTERM, 0)
    ]
    skipped = [
        (r["round"], r["moment"], r["task"], w["pid"], w["exitcode"], w["report"])
        for r in rounds
        for w in r["workers"]
        if w["ready"] and not w["atexit"]
    ]
    longest = max(r["seconds"] for r in rounds)
    print(f"{backend}/{method}: {len(rounds)} rounds, longest terminate+join {longest:.2f}s")
    assert not slow, f"rounds over {ROUND_BOUND}s: {slow}"
    assert not bad_codes, f"{len(bad_codes)} workers with unexpected exit codes: {bad_codes}"
    assert not skipped, f"{len(skipped)} initialized workers skipped cleanup: {skipped}"
