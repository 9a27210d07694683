"""Output written during cleanup (here by ``__del__``) is not lost."""

import safeproc.stdlib as mp


class Noisy:
    def __init__(self):
        self.me = self  # a cycle: only the garbage collector frees it

    def __del__(self):
        print("child: __del__ of a cycle the child made")  # no flush=True


def work():
    Noisy()
    print("child: work done")


if __name__ == "__main__":
    p = mp.Process(target=work)
    p.start()
    p.join()
    print("exit code", p.exitcode)
