"""The suite's own process search (testing/safeproc_testing.py), shared with faults/."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid

import pytest
from safeproc_testing import TEST_TOKEN_VARIABLE, assert_no_leftovers


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
