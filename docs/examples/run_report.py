"""A program that knows nothing of safeproc: two children, each leaving work behind."""

import atexit
import logging
import logging.handlers
import multiprocessing
import os


def work(number):
    atexit.register(print, f"child {number}: atexit handler ran", flush=True)
    log = logging.getLogger(f"work{number}")
    log.addHandler(logging.handlers.MemoryHandler(100, target=logging.StreamHandler()))
    log.warning("child %d: buffered log record", number)
    out = open(os.devnull, "w")  # left open on purpose
    out.write("buffered, never flushed by the child")
    globals()["out"] = out


if __name__ == "__main__":
    multiprocessing.set_start_method("fork")
    children = [multiprocessing.Process(target=work, args=(n,)) for n in (1, 2)]
    for child in children:
        child.start()
        child.join()
    print("exit codes:", [child.exitcode for child in children])
