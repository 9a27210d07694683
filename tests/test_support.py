"""The suite's own process search (testing/safeproc_testing.py), shared with faults/."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import uuid
from typing import TYPE_CHECKING

import pytest
from safeproc_testing import TEST_TOKEN_VARIABLE, assert_no_leftovers

if TYPE_CHECKING:
    from conftest import RunScript


def test_a_process_left_behind_fails_and_is_killed() -> None:
    """A live process carrying the token fails the check, which kills it; then the check passes."""
    token = uuid.uuid4().hex
    env = {**os.environ, TEST_TOKEN_VARIABLE: token}
    sleeper = subprocess.Popen(
        [sys.executable, "-c", "import time; print('ready', flush=True); time.sleep(60)"],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
    )
    try:
        # Popen returns once exec has begun, which is before the kernel has set
        # the new program's environment: until then /proc/PID/environ reads
        # empty. Wait for the program itself to run.
        assert sleeper.stdout is not None
        assert sleeper.stdout.readline() == b"ready\n"
        with pytest.raises(AssertionError, match=rf"processes left behind: \[['\"]{sleeper.pid} "):
            assert_no_leftovers(token, grace=0.2)
        assert sleeper.wait(timeout=10) < 0
        assert_no_leftovers(token, grace=0.2)
    finally:
        sleeper.kill()
        sleeper.wait()
        if sleeper.stdout is not None:
            sleeper.stdout.close()


@pytest.mark.parametrize("backend", ["stdlib"])
@pytest.mark.parametrize("start_method", ["fork"])
def test_a_hung_scenario_says_where_it_hung(run_script: RunScript) -> None:
    """A scenario that outlives its timeout fails with its marks, its
    processes and every thread's traceback, and leaves nothing behind."""
    body = """
def child():
    time.sleep(60)

if __name__ == "__main__":
    p = ctx().Process(target=child)
    p.start()
    mark("started", p.pid)
    p.join()
"""
    with pytest.raises(pytest.fail.Exception) as failure:
        run_script(body, timeout=3)
    message = str(failure.value)
    assert "scenario hung for 3s" in message, message
    assert re.search(r"--- marks\nstarted \d+\n--- processes\n", message), message
    # faulthandler's dump: the parent waits in join(), the child sleeps.
    assert re.search(r'File ".*scenario\.py", line \d+ in <module>', message), message
    assert re.search(r'File ".*scenario\.py", line \d+ in child', message), message
