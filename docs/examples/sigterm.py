"""terminate() runs the child's cleanup with sigterm="cleanup"."""

import atexit
import time

import safeproc.stdlib as mp


def work(ready):
    atexit.register(print, "child: atexit handler ran", flush=True)
    ready.set()
    time.sleep(60)


if __name__ == "__main__":
    ready = mp.Event()
    p = mp.Process(target=work, args=(ready,), cleanup=mp.CleanupPolicy(sigterm="cleanup"))
    p.start()
    ready.wait()
    p.terminate()
    p.join()
    print("exit code", p.exitcode)
