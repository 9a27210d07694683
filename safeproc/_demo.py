"""``python -m safeproc demo``: the seed program, plain and safe, side by side."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import textwrap

__all__ = ["run_demo"]

SEED_PROGRAM = textwrap.dedent(
    """\
    import os, sys
    if os.environ["DEMO_LIBRARY"] == "plain-stdlib":
        import multiprocessing
    elif os.environ["DEMO_LIBRARY"] == "plain-multiprocess":
        import multiprocess as multiprocessing
    elif os.environ["DEMO_LIBRARY"] == "safe-stdlib":
        import safeproc.stdlib as multiprocessing
    else:
        import safeproc as multiprocessing

    class Foo():
        def __init__(self):
            self.b = []
        def __del__(self):
            print('del', flush=True)

    def foo():
        print('call foo', flush=True)
        f = Foo()
        a = [f]
        f.b.append(a)

    if __name__ == '__main__':
        multiprocessing.set_start_method(os.environ["DEMO_METHOD"])
        p = multiprocessing.Process(target=foo)
        p.start()
        p.join()
        print('exitcode', p.exitcode, flush=True)
    """
)

# The seed program picks its import from DEMO_LIBRARY: plain-<backend> or
# safe-<backend>.
_BACKENDS = ("stdlib", "multiprocess")


def _run(script: str, library: str, method: str) -> str:
    env = dict(os.environ, DEMO_LIBRARY=library, DEMO_METHOD=method)
    try:
        done = subprocess.run(  # noqa: S603 - our own interpreter and script
            [sys.executable, script],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return "hung (killed after 60 s)"
    lines = done.stdout.splitlines()
    exitcode = next((ln.split()[1] for ln in lines if ln.startswith("exitcode")), "?")
    words = [ln for ln in lines if not ln.startswith("exitcode")]
    return f"{', '.join(words) or '(nothing)'}  [exit {exitcode}]"


def run_demo(methods: list[str] | None = None) -> int:
    """Run the seed program under each library and start method; print a table."""
    import multiprocessing  # noqa: PLC0415 - only to list the start methods

    methods = methods or multiprocessing.get_all_start_methods()
    print("The seed program: the child builds a reference cycle holding an object")
    print("whose __del__ prints 'del'. A child that exits like a normal Python")
    print("program prints 'call foo' then 'del', once.\n")
    header = f"{'backend':<13} {'method':<11} {'plain library':<30} safeproc"
    print(header)
    print("-" * len(header))
    failures = 0
    with tempfile.TemporaryDirectory() as tmp:
        script = os.path.join(tmp, "seed.py")
        with open(script, "w", encoding="utf-8") as f:
            f.write(SEED_PROGRAM)
        for backend in _BACKENDS:
            for method in methods:
                plain = _run(script, f"plain-{backend}", method)
                safe = _run(script, f"safe-{backend}", method)
                if not safe.startswith("call foo, del  [exit 0]"):
                    failures += 1
                print(f"{backend:<13} {method:<11} {plain:<30} {safe}", flush=True)
    print()
    if failures:
        print(f"{failures} safeproc run(s) did not print 'del' exactly once.")
        return 1
    print("safeproc: every child finalized what it created, once; exit codes unchanged.")
    return 0
