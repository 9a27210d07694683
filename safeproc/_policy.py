"""The :class:`CleanupPolicy` value object and the process-wide default."""

from __future__ import annotations

import math
import threading

from safeproc import _forks

TYPE_CHECKING = False  # not typing's: a child imports this module (see _compat)
if TYPE_CHECKING:
    from typing import Any, ClassVar, Literal, TypeAlias

    from typing_extensions import Never, Self

    StdioMode: TypeAlias = Literal["auto", "flush", "line", "reopen", "none"]
    SigtermMode: TypeAlias = Literal["default", "cleanup"]

__all__ = [
    "DEFAULT_TIMEOUT",
    "CleanupPolicy",
    "get_default_cleanup",
    "set_default_cleanup",
]

#: Default cleanup deadline in seconds: well inside the kill windows of the
#: clients that terminate slow workers (torch's DataLoader 5 s, dask's nanny
#: about 4 s), long enough for a telemetry exporter's final flush.
DEFAULT_TIMEOUT = 2.0

_BOOL_FIELDS = ("gc", "atexit", "finalizers", "logging", "files", "report")
#: The allowed values of the choice fields (the Literal types above, as data).
_CHOICES: dict[str, tuple[str, ...]] = {
    "stdio": ("auto", "flush", "line", "reopen", "none"),
    "sigterm": ("default", "cleanup"),
}


class CleanupPolicy:
    """What a safeproc child does when it exits. Immutable and validated.

    Every field is keyword-only. A boolean field set to ``False`` leaves that
    step to the plain library (which, for forked children, usually means it
    does not happen).

    :param gc: collect the cyclic garbage the child created, so ``__del__``
        methods run. Inherited objects are never collected in the child.
    :param atexit: run the ``atexit`` handlers the child registered, last
        registered first. Inherited handlers never run in the child.
    :param finalizers: run the child's ``weakref.finalize(..., atexit=True)``
        callbacks, newest first. Inherited finalizers never run in the child.
    :param logging: flush and close the logging handlers the child created,
        as :func:`logging.shutdown` would, and flush (never close) inherited
        ones the child logged through.
    :param files: flush buffered files the child opened and still holds.
    :param stdio: how ``sys.stdout``/``sys.stderr`` are handled. ``"flush"``
        flushes them at exit. ``"reopen"`` flushes them at exit too, and
        first re-arms a forked child's streams at child start: their
        buffered layer (and, for the interpreter's own streams, the text
        layer over it) is initialised again in place, on the same file, with
        a fresh lock and an empty buffer. The parent's pending bytes are
        never written twice and a lock a parent thread held at fork never
        hangs the child. The stream objects stay the same and no file
        descriptor is closed or opened, so references saved before the fork
        keep working. ``"line"`` re-arms a forked child's streams too, then
        line-buffers them, and flushes them at exit. ``"none"`` leaves them
        alone. ``"auto"`` (the default) is ``"reopen"`` in every forked child
        (fork, forkserver) and ``"flush"`` in a spawned child.
    :param timeout: deadline in seconds for what safeproc adds to the
        child's exit; ``None`` for no deadline. The clock starts when
        safeproc's own steps start. It never covers the plain library's own
        exit work: the join of non-daemon threads and child processes,
        multiprocessing's own finalizers, and from Python 3.13 the atexit
        handlers the plain launcher runs. A spawned child's normal exit is
        not bounded either, as plain. When the deadline expires, cleanup
        stops, the child prints every thread's traceback (naming the step)
        to stderr, and ends with the exit code the plain library would have
        given (or by ``SIGTERM`` after ``terminate()``). Only a child whose
        main thread cannot run Python (stuck in a C call that holds the
        GIL) is ended by ``SIGALRM``, one second after the deadline
        (``exitcode == -14``).
    :param sigterm: ``"default"`` keeps the plain library's behaviour on
        :meth:`~multiprocessing.Process.terminate`; ``"cleanup"`` runs the same
        cleanup, bounded by *timeout*, and still dies by ``SIGTERM``
        (``exitcode == -15``). The parent sends a second SIGTERM 0.1 s after
        the deadline and SIGKILL (``-9``) one second later if the child
        still runs (its main thread stuck in a C call).
    :param report: record a :class:`CleanupReport` and deliver it to the
        parent.
    :raises TypeError: a field has the wrong type or is unknown.
    :raises ValueError: a field has a value outside its allowed set.

    .. versionadded:: 0.1
    """

    __slots__ = (
        "atexit",
        "files",
        "finalizers",
        "gc",
        "logging",
        "report",
        "sigterm",
        "stdio",
        "timeout",
    )
    #: The field names, in a stable order.
    FIELDS: ClassVar[tuple[str, ...]] = (
        "gc",
        "atexit",
        "finalizers",
        "logging",
        "files",
        "stdio",
        "timeout",
        "sigterm",
        "report",
    )

    gc: bool
    atexit: bool
    finalizers: bool
    logging: bool
    files: bool
    stdio: StdioMode
    timeout: float | None
    sigterm: SigtermMode
    report: bool

    def __init__(  # noqa: PLR0913 - one keyword per documented field
        self,
        *,
        gc: bool = True,
        atexit: bool = True,
        finalizers: bool = True,
        logging: bool = True,
        files: bool = True,
        stdio: StdioMode = "auto",
        timeout: float | None = DEFAULT_TIMEOUT,
        sigterm: SigtermMode = "default",
        report: bool = False,
        **unknown: Never,
    ) -> None:
        if unknown:
            name = min(unknown)
            msg = (
                f"CleanupPolicy got an unknown field {name!r}; "
                f"the fields are: {', '.join(self.FIELDS)}"
            )
            raise TypeError(msg)
        values: dict[str, Any] = {
            "gc": gc,
            "atexit": atexit,
            "finalizers": finalizers,
            "logging": logging,
            "files": files,
            "stdio": stdio,
            "timeout": timeout,
            "sigterm": sigterm,
            "report": report,
        }
        for name, value in values.items():
            object.__setattr__(self, name, _validated(name, value))

    def replace(self, **changes: Any) -> Self:  # noqa: ANN401 - validated below
        """Return a copy with *changes* applied, validated like the constructor.

        >>> CleanupPolicy().replace(timeout=None).timeout is None
        True
        """
        values = self.as_dict()
        values.update(changes)
        return type(self)(**values)

    def as_dict(self) -> dict[str, Any]:
        """Return the fields as a plain dictionary, in :attr:`FIELDS` order."""
        return {name: getattr(self, name) for name in self.FIELDS}

    def __setattr__(self, name: str, value: object) -> None:
        msg = f"CleanupPolicy is immutable; use .replace({name}=...)"
        raise AttributeError(msg)

    def __delattr__(self, name: str) -> None:
        msg = "CleanupPolicy is immutable"
        raise AttributeError(msg)

    def __reduce__(self) -> tuple[Any, ...]:
        return (_policy_from_items, (tuple(self.as_dict().items()),))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, CleanupPolicy):
            return NotImplemented
        return self.as_dict() == other.as_dict()

    def __hash__(self) -> int:
        return hash(tuple(self.as_dict().items()))

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={v!r}" for k, v in self.as_dict().items())
        return f"CleanupPolicy({fields})"


def _policy_from_items(items: tuple[tuple[str, Any], ...]) -> CleanupPolicy:
    return CleanupPolicy(**dict(items))


def _validated(name: str, value: object) -> object:
    if name in _BOOL_FIELDS:
        if not isinstance(value, bool):
            msg = f"CleanupPolicy.{name} must be True or False, not {value!r}"
            raise TypeError(msg)
        return value
    if name in _CHOICES:
        allowed = _CHOICES[name]
        if not isinstance(value, str):
            msg = (
                f"CleanupPolicy.{name} must be a string, one of "
                f"{', '.join(map(repr, allowed))}; got {value!r}"
            )
            raise TypeError(msg)
        if value not in allowed:
            msg = (
                f"CleanupPolicy.{name} must be one of "
                f"{', '.join(map(repr, allowed))}; got {value!r}"
            )
            raise ValueError(msg)
        return value
    # timeout
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        msg = f"CleanupPolicy.timeout must be a number of seconds or None, not {value!r}"
        raise TypeError(msg)
    if not math.isfinite(value) or value <= 0:
        msg = (
            "CleanupPolicy.timeout must be a finite number of seconds "
            f"greater than 0, or None; got {value!r}"
        )
        raise ValueError(msg)
    return float(value)


_default_lock = _forks.reinit_after_fork(threading.Lock())
_default_policy = CleanupPolicy()


def set_default_cleanup(policy: CleanupPolicy | None) -> None:
    """Set the policy used where no process, pool or context names one.

    ``None`` restores the built-in default, ``CleanupPolicy()``. The policy is
    resolved when a process object is created.

    .. versionadded:: 0.1
    """
    global _default_policy  # noqa: PLW0603 - the process-wide default
    if policy is None:
        policy = CleanupPolicy()
    if not isinstance(policy, CleanupPolicy):
        msg = f"set_default_cleanup() takes a CleanupPolicy or None, not {policy!r}"
        raise TypeError(msg)
    with _default_lock:
        _default_policy = policy


def get_default_cleanup() -> CleanupPolicy:
    """Return the process-wide default policy.

    .. versionadded:: 0.1
    """
    return _default_policy


def check_policy(policy: object, where: str) -> CleanupPolicy | None:
    """Validate a ``cleanup=`` argument: a :class:`CleanupPolicy` or ``None``.

    *where* is the public name the user called (``"Process"``, ``"Pool"``,
    ``"get_context"``), never an internal class name.
    """
    if policy is None or isinstance(policy, CleanupPolicy):
        return policy
    msg = f"{where}(cleanup=...): cleanup must be a CleanupPolicy or None, not {policy!r}"
    raise TypeError(msg)
