"""Pool workers finalize what their initializer created."""

import atexit
import os
import sys
import tempfile
import time

import safeproc.stdlib as mp


def init(marks):
    # Where a real program sets up a telemetry exporter or a database client.
    atexit.register(open, os.path.join(marks, f"finalized-{os.getpid()}"), "w")
    open(os.path.join(marks, f"started-{os.getpid()}"), "w").close()


def square(x):
    return x * x


def count(marks, prefix):
    return sum(name.startswith(prefix) for name in os.listdir(marks))


if __name__ == "__main__":
    ending = sys.argv[1] if len(sys.argv) > 1 else "close"
    with tempfile.TemporaryDirectory() as marks:
        if ending == "close":
            pool = mp.Pool(2, initializer=init, initargs=(marks,))
            print(pool.map(square, range(5)))
            pool.close()
            pool.join()
        else:  # leave a with block, which calls terminate()
            policy = mp.CleanupPolicy(sigterm="cleanup")
            with mp.Pool(2, initializer=init, initargs=(marks,), cleanup=policy) as pool:
                print(pool.map(square, range(5)))
                while count(marks, "started") < 2:  # both initializers done
                    time.sleep(0.01)
        print("workers started:", count(marks, "started"))
        print("workers finalized:", count(marks, "finalized"))
