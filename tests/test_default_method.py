"""The interpreter's default start method, never named: forkserver from 3.14
on Linux for the standard library (``multiprocess`` keeps fork).

Every other scenario names its start method; these run a program the way
most users write it, with no ``get_context()`` and no
``set_start_method()``, and compare it with the same program run plain.
"""

from __future__ import annotations

import multiprocessing
import sys
from typing import TYPE_CHECKING

import multiprocess
import pytest

if TYPE_CHECKING:
    from conftest import RunScript

# The start method fixture is not used: these programs never name one.
pytestmark = pytest.mark.parametrize("start_method", ["default"])

DEFAULT_METHOD_PROGRAM = """
CHILD = []

class Resource:
    def __init__(self, name):
        self.name = name
    def __del__(self):
        mark("del", self.name, bool(CHILD) and os.getpid() == CHILD[0])

# Module level: a forkserver child inherits it from the server (which
# imported this module), a spawned child creates it, a forked one inherits it.
IMPORTED = Resource("imported")

def child():
    CHILD.append(os.getpid())
    created = Resource("created")
    created.cycle = created
    atexit.register(mark, "atexit", "child")

if __name__ == "__main__":
    if sys.argv[-1] == "install":
        # The plain libraries' own names; made safe unless this is the plain run.
        if not os.environ.get("SAFEPROC_TEST_PLAIN"):
            safe_mp.install()
        mp = plain_mp
    mark("method", mp.get_start_method())
    p = mp.Process(target=child)
    p.start()
    p.join(30)
    mark("exitcode", p.exitcode)
"""

#: What safeproc adds in the child: what the child created, finalized.
ADDED = {"atexit child", "del created True"}


def _child_marks(marks: list[str]) -> set[str]:
    return {m for m in marks if m.endswith(" True") or m == "atexit child"}


@pytest.mark.parametrize("how", ["import", "install"])
def test_default_method_children_exit_as_their_own_program(
    run_script: RunScript, backend: str, how: str
) -> None:
    """Under the default start method, a child finalizes what it created
    (its cycle's ``__del__``, its atexit handler), and what it inherited
    (the module global, under fork and forkserver) exactly as plain does:
    plain's own child marks plus what safeproc adds, nothing else."""
    args_after = ("install",) if how == "install" else ()
    plain = run_script(DEFAULT_METHOD_PROGRAM, plain=True, args_after=args_after)
    safe = run_script(DEFAULT_METHOD_PROGRAM, args_after=args_after)
    default = (multiprocess if backend == "multiprocess" else multiprocessing).get_start_method()
    assert plain.marks[0] == f"method {default}", plain.explain()
    assert safe.marks[0] == plain.marks[0], safe.explain()
    if backend == "stdlib" and sys.version_info >= (3, 14):
        assert default == "forkserver"
    assert "exitcode 0" in plain.marks, plain.explain()
    assert "exitcode 0" in safe.marks, safe.explain()
    assert (plain.returncode, safe.returncode) == (0, 0), safe.explain()
    assert _child_marks(safe.marks) == _child_marks(plain.marks) | ADDED, safe.explain()
    # The parent's own exit is untouched.
    assert safe.marks.count("del imported False") == plain.marks.count("del imported False")
