"""ProcessPoolExecutor workers from a safe context finalize what they created."""

import atexit
import concurrent.futures
import os
import tempfile

import safeproc.stdlib as mp


def init(marks):
    open(os.path.join(marks, f"started-{os.getpid()}"), "w").close()
    atexit.register(open, os.path.join(marks, f"finalized-{os.getpid()}"), "w")


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as marks:
        ctx = mp.get_context("forkserver")
        with concurrent.futures.ProcessPoolExecutor(
            2, mp_context=ctx, initializer=init, initargs=(marks,)
        ) as executor:
            print(list(executor.map(abs, [-1, -2, 3])))
        names = os.listdir(marks)
        started = {n.split("-")[1] for n in names if n.startswith("started")}
        finalized = {n.split("-")[1] for n in names if n.startswith("finalized")}
        print("every worker finalized:", bool(started) and started == finalized)
