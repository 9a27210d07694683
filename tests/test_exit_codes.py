"""Exit codes equal the plain library's, and cleanup errors are visible but
never change them."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from conftest import RunScript

TARGETS = {
    "returns": "pass",
    "raises": "raise RuntimeError('boom')",
    "exit-3": "sys.exit(3)",
    "exit-msg": "sys.exit('bad thing')",
    "exit-none": "sys.exit(None)",
    "sigkill": "os.kill(os.getpid(), signal.SIGKILL)",
    "sigterm": "os.kill(os.getpid(), signal.SIGTERM)",
}


@pytest.mark.parametrize("case", list(TARGETS))
def test_exit_code_matches_plain(run_script: RunScript, case: str) -> None:
    """Every way a target can end gives the plain library's exit code and stderr."""
    body = f"""
        def child():
            {TARGETS[case]}

        if __name__ == "__main__":
            p = ctx().Process(target=child)
            p.start()
            p.join()
            mark(p.exitcode)
        """
    plain = run_script(body, plain=True)
    safe = run_script(body)
    assert safe.returncode == plain.returncode == 0, safe.explain()
    assert safe.marks == plain.marks, (safe.explain(), plain.explain())
    expected = {
        "returns": "0",
        "raises": "1",
        "exit-3": "3",
        "exit-msg": "1",
        "exit-none": "0",
        "sigkill": "-9",
        "sigterm": "-15",
    }[case]
    assert safe.marks == [expected]
    if case == "raises":
        assert "RuntimeError: boom" in safe.stderr
        assert "Process " in safe.stderr
    if case == "exit-msg":
        assert "bad thing" in safe.stderr


def test_cleanup_errors_are_reported_and_do_not_change_the_exit_code(
    run_script: RunScript,
) -> None:
    """A failing atexit handler, finalizer and __del__ are each printed like
    CPython prints them; the later steps still run; the exit code is 0."""
    run = run_script(
        """
        class Bad:
            def __init__(self):
                self.me = self
            def __del__(self):
                raise ValueError("del failed")

        class Target:
            pass

        def fail(what):
            raise KeyError(what)

        def child():
            atexit.register(mark, "atexit-after-error")
            atexit.register(fail, "atexit failed")
            global t
            t = Target()
            weakref.finalize(t, fail, "finalizer failed")
            Bad()

        if __name__ == "__main__":
            p = ctx().Process(target=child)
            p.start()
            p.join()
            mark("exitcode", p.exitcode)
        """
    )
    assert run.returncode == 0, run.explain()
    assert run.marks == ["atexit-after-error", "exitcode 0"], run.explain()
    assert "'atexit failed'" in run.stderr, run.explain()
    assert "'finalizer failed'" in run.stderr, run.explain()
    assert "ValueError: del failed" in run.stderr, run.explain()
    assert "Exception ignored in" in run.stderr, run.explain()
    assert "Exception ignored in atexit callback" in run.stderr, run.explain()


def test_exit_code_is_kept_when_cleanup_fails_after_an_error(run_script: RunScript) -> None:
    """sys.exit(7) in the target with a failing atexit handler still gives 7."""
    run = run_script(
        """
        def child():
            atexit.register(lambda: 1 / 0)
            sys.exit(7)

        if __name__ == "__main__":
            p = ctx().Process(target=child)
            p.start()
            p.join()
            mark(p.exitcode)
        """
    )
    assert run.marks == ["7"], run.explain()
    assert "ZeroDivisionError" in run.stderr, run.explain()
