"""A cleanup step that hangs is ended by the deadline."""

import time

import safeproc.stdlib as mp


class Connection:
    """Stands for a client whose close() can hang (a dead server, say)."""

    def __init__(self):
        self.me = self  # a reference cycle: only the garbage step frees it

    def __del__(self):
        time.sleep(60)


def work():
    Connection()


if __name__ == "__main__":
    p = mp.Process(target=work, cleanup=mp.CleanupPolicy(timeout=0.5))
    started = time.monotonic()
    p.start()
    p.join()
    print("exit code", p.exitcode)
    print("joined within 2 s:", time.monotonic() - started < 2)
