"""CleanupPolicy: validated at construction, immutable, picklable, and
reaching every child."""

from __future__ import annotations

import math
import pickle
from typing import TYPE_CHECKING, Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import safeproc
import safeproc.stdlib
from safeproc import CleanupPolicy

if TYPE_CHECKING:
    from collections.abc import Callable

    from conftest import RunScript

BOOL_FIELDS = ("gc", "atexit", "finalizers", "logging", "files", "report")
CHOICES = {
    "stdio": ("auto", "flush", "line", "reopen", "none"),
    "sigterm": ("default", "cleanup"),
}

valid_policies = st.builds(
    CleanupPolicy,
    gc=st.booleans(),
    atexit=st.booleans(),
    finalizers=st.booleans(),
    logging=st.booleans(),
    files=st.booleans(),
    stdio=st.sampled_from(CHOICES["stdio"]),
    timeout=st.none() | st.floats(min_value=1e-3, max_value=1e6),
    sigterm=st.sampled_from(CHOICES["sigterm"]),
    report=st.booleans(),
)
anything = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text()
    | st.lists(st.integers(), max_size=2)
)


def test_defaults() -> None:
    """The documented defaults."""
    policy = CleanupPolicy()
    assert policy.as_dict() == {
        "gc": True,
        "atexit": True,
        "finalizers": True,
        "logging": True,
        "files": True,
        "stdio": "auto",
        "timeout": 2.0,
        "sigterm": "default",
        "report": False,
    }


@given(valid_policies)
def test_valid_policies_round_trip(policy: CleanupPolicy) -> None:
    """Every valid policy pickles, compares and hashes as a value."""
    clone = pickle.loads(pickle.dumps(policy))  # noqa: S301 - our own data
    assert clone == policy
    assert hash(clone) == hash(policy)
    assert CleanupPolicy(**policy.as_dict()) == policy
    assert eval(repr(policy), {"CleanupPolicy": CleanupPolicy}) == policy  # noqa: S307


@given(st.sampled_from(BOOL_FIELDS), anything)
def test_bool_fields_reject_non_bools(name: str, value: Any) -> None:
    """A boolean field rejects anything but True/False with a TypeError naming it."""
    fields: dict[str, Any] = {name: value}
    if isinstance(value, bool):
        assert getattr(CleanupPolicy(**fields), name) is value
        return
    with pytest.raises(TypeError, match=rf"CleanupPolicy\.{name} must be True or False"):
        CleanupPolicy(**fields)


@given(st.sampled_from(sorted(CHOICES)), anything)
def test_choice_fields_name_the_allowed_values(name: str, value: Any) -> None:
    """A choice field rejects other values, listing the allowed ones."""
    if value in CHOICES[name]:
        assert getattr(CleanupPolicy(**{name: value}), name) == value
        return
    error = ValueError if isinstance(value, str) else TypeError
    with pytest.raises(error) as info:
        CleanupPolicy(**{name: value})
    message = str(info.value)
    assert f"CleanupPolicy.{name}" in message
    for allowed in CHOICES[name]:
        assert repr(allowed) in message


@given(anything)
def test_timeout_accepts_positive_finite_numbers_or_none(value: Any) -> None:
    """Timeout is None or a finite number of seconds above zero."""
    ok = value is None or (
        isinstance(value, (int, float))
        and not isinstance(value, bool)
        and math.isfinite(value)
        and value > 0
    )
    if ok:
        policy = CleanupPolicy(timeout=value)
        assert policy.timeout == (None if value is None else float(value))
        return
    with pytest.raises((TypeError, ValueError), match=r"CleanupPolicy\.timeout"):
        CleanupPolicy(timeout=value)


@given(st.text(min_size=1).filter(lambda s: s.isidentifier() and s not in CleanupPolicy.FIELDS))
def test_unknown_fields_are_rejected_with_the_field_list(name: str) -> None:
    """An unknown field is a TypeError that lists the real fields."""
    fields: dict[str, Any] = {name: True}
    with pytest.raises(TypeError, match="unknown field") as info:
        CleanupPolicy(**fields)
    for field in CleanupPolicy.FIELDS:
        assert field in str(info.value)


def test_policy_is_immutable() -> None:
    """Fields cannot be assigned; replace() validates like the constructor."""
    policy = CleanupPolicy()
    with pytest.raises(AttributeError):
        policy.gc = False
    assert policy.replace(gc=False).gc is False
    with pytest.raises(ValueError, match="sigterm"):
        policy.replace(sigterm="never")


@pytest.mark.parametrize("module", [safeproc, safeproc.stdlib], ids=["multiprocess", "stdlib"])
def test_bad_cleanup_arguments_fail_in_the_parent(module: Any) -> None:
    """Process, Pool and get_context reject a non-policy cleanup= at once."""
    with pytest.raises(TypeError, match="cleanup must be a CleanupPolicy"):
        module.Process(target=print, cleanup={"gc": False})
    with pytest.raises(TypeError, match="cleanup must be a CleanupPolicy"):
        module.get_context("spawn", cleanup="flush")
    with pytest.raises(TypeError, match="cleanup must be a CleanupPolicy"):
        module.Pool(1, cleanup=True)
    with pytest.raises(ValueError, match="cannot find context"):
        module.get_context("teleport")


@pytest.mark.parametrize("module", [safeproc, safeproc.stdlib], ids=["multiprocess", "stdlib"])
def test_bad_cleanup_errors_name_what_the_user_called(module: Any) -> None:
    """A bad cleanup= names the public call (``Process(cleanup=...)``), never an
    internal class (SafeProcess, DillSafeForkProcess, SafePool ...)."""
    calls: list[tuple[str, Callable[[], object]]] = [
        ("Process", lambda: module.Process(target=print, cleanup=1)),
        ("Process", lambda: module.get_context("spawn").Process(target=print, cleanup=1)),
        ("Pool", lambda: module.Pool(1, cleanup=1)),
        ("Pool", lambda: module.get_context("fork").Pool(1, cleanup=1)),
        ("get_context", lambda: module.get_context("fork", cleanup=1)),
        ("get_context", lambda: module.get_context(cleanup=1)),
        ("install", lambda: module.install(1)),
    ]
    for name, call in calls:
        with pytest.raises(TypeError) as caught:
            call()
        message = str(caught.value)
        assert message.startswith(f"{name}(cleanup=...): cleanup must be a CleanupPolicy"), message
        assert "Safe" not in message, message


def test_default_policy_setter() -> None:
    """set_default_cleanup changes what new processes get; None restores it."""
    custom = CleanupPolicy(gc=False)
    try:
        safeproc.set_default_cleanup(custom)
        assert safeproc.get_default_cleanup() is custom
        assert safeproc.stdlib.Process(target=print).cleanup is custom
        assert safeproc.Process(target=print).cleanup is custom
        with pytest.raises(TypeError):
            safeproc.set_default_cleanup("gc=False")  # type: ignore[arg-type]
    finally:
        safeproc.set_default_cleanup(None)
    assert safeproc.get_default_cleanup() == CleanupPolicy()


def test_policy_precedence() -> None:
    """A process's own policy beats its context's, which beats the default."""
    ctx_policy = CleanupPolicy(timeout=5)
    own = CleanupPolicy(timeout=7)
    ctx = safeproc.stdlib.get_context("fork", cleanup=ctx_policy)
    assert ctx.cleanup == ctx_policy
    assert ctx.Process(target=print).cleanup == ctx_policy
    assert ctx.Process(target=print, cleanup=own).cleanup == own
    assert safeproc.stdlib.get_context("fork").Process(target=print).cleanup == CleanupPolicy()


def test_policy_reaches_the_child(run_script: RunScript) -> None:
    """The process's policy, pickled for spawn and forkserver, is the child's."""
    run = run_script(
        """
        def child():
            mark(repr(mp.current_process().cleanup))

        if __name__ == "__main__":
            policy = safe_mp.CleanupPolicy(gc=False, stdio="line", timeout=9)
            p = ctx().Process(target=child, cleanup=policy)
            p.start()
            p.join()
            mark(repr(policy))
            c = mp.get_context(METHOD, cleanup=policy)
            p = c.Process(target=child)
            p.start()
            p.join()
        """
    )
    assert run.returncode == 0, run.explain()
    assert len(run.marks) == 3, run.explain()
    assert run.marks[0] == run.marks[1] == run.marks[2], run.explain()


def test_gc_off_leaves_child_cycles_uncollected(run_script: RunScript, start_method: str) -> None:
    """gc=False leaves the cyclic-garbage step to the plain library."""
    run = run_script(
        """
        class Cycle:
            def __init__(self):
                self.me = self
            def __del__(self):
                mark("del")

        def child():
            gc.set_threshold(2**31 - 1)  # no collection an allocation count triggers
            Cycle()

        if __name__ == "__main__":
            p = ctx().Process(target=child, cleanup=safe_mp.CleanupPolicy(gc=False))
            p.start()
            p.join()
        """
    )
    assert run.returncode == 0, run.explain()
    # A spawned child's own interpreter exit still collects it.
    assert run.marks == (["del"] if start_method == "spawn" else []), run.explain()
