"""A cleanup step that hangs is ended by the deadline."""

import atexit
import time

import safeproc.stdlib as mp


def hang_at_exit():
    time.sleep(60)


def work():
    atexit.register(hang_at_exit)


if __name__ == "__main__":
    p = mp.Process(target=work, cleanup=mp.CleanupPolicy(timeout=0.5))
    started = time.monotonic()
    p.start()
    p.join()
    print("exit code", p.exitcode)
    print("joined within 2 s:", time.monotonic() - started < 2)
