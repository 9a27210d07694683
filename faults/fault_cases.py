"""Fault cases for ``nox -s faults``: what a run draws, what it must give, what its child runs.

A case is drawn from ``random.Random(f"{seed}:{index}")`` alone, so any run
reproduces from the seed and its index (``run_faults.py --seed S --only I``)
whatever else runs beside it.

One case is one safe child (either backend, any start method, either
``sigterm`` mode, a short deadline) that registers cleanup handlers, maybe
starts and joins a grandchild, then ends its target in one way::

    driver (fault_driver.py)                 child (run_child, this module)
    ------------------------                 ------------------------------
    inherited markers armed                  "start"
    Process(target=run_child).start() -->    handlers registered ("ran" when run)
    [terminate() at the drawn moment]        [grandchild started, joined: "g-exit"]
    join(bound) <-- exit code -----------    "busy" / "done", then the target's end
    marker file, stderr file, psutil         cleanup by safeproc, under the deadline

The child is observed from outside: the lines it appends to its marker file,
its stderr file and its exit code. The expected exit code is the plain
library's for the same target (``sys.exit(3)`` gives 3, an exception 1,
``os._exit(5)`` 5, a signal N gives -N, ``terminate()`` -15): a cleanup
handler that hangs is stopped at the deadline and the child still ends
with the plain code, except that one stuck in a C call holding the GIL
(Python cannot run) is ended by SIGALRM (-14).

Hangs are drawn only where the deadline bounds them, in a step safeproc
adds on every version: the ``__del__`` of a cycle in a forked child. A
hang anywhere else (an atexit handler from 3.13, anything in a spawned
child) is the plain library's own exit work, which hangs plain too.
"""

from __future__ import annotations

import atexit
import faulthandler
import gc
import logging
import os
import random
import signal
import sys
import time
import weakref
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = [
    "BACKENDS",
    "DEADLINE_EXIT",
    "START_METHODS",
    "TERMINATED_EXIT",
    "Case",
    "Handler",
    "Program",
    "backend_module",
    "draw_case",
    "mark",
    "run_child",
]

BACKENDS = ("stdlib", "multiprocess")
START_METHODS = ("fork", "forkserver", "spawn")
#: Targets that end by themselves.
ENDING_TARGETS = ("return", "raise", "sys-exit", "os-exit", "signal")
#: Targets after which cleanup runs in a normal exit.
CLEAN_ENDINGS = ("return", "raise", "sys-exit")
#: Targets that never end: only terminate() ends them.
BUSY_TARGETS = ("busy-sleep", "busy-loop")
HANDLER_KINDS = ("atexit", "finalize", "cyclic-del", "logging")
HANGS = ("hang-loop", "hang-sleep", "hang-c")
#: Signals a target sends itself (SIGTERM runs the cleanup with sigterm="cleanup").
KILL_SIGNALS = (int(signal.SIGKILL), int(signal.SIGTERM), int(signal.SIGUSR1))
TERMINATE_MOMENTS = ("at-start", "after-delay", "while-busy", "in-cleanup")
SIGTERM_MODES = ("default", "cleanup")
TIMEOUTS = (0.5, 1.0)
#: safeproc's documented exit code for a cleanup that outlived its deadline.
DEADLINE_EXIT = -int(signal.SIGALRM)
TERMINATED_EXIT = -int(signal.SIGTERM)
#: Seconds the driver waits for a marker before it gives up on a moment.
MARKER_WAIT = 30.0


@dataclass(frozen=True)
class Handler:
    """One cleanup handler a process registers, and how it behaves when run."""

    kind: str
    behaviour: str


@dataclass(frozen=True)
class Program:
    """What one process (the child or the grandchild) does."""

    target: str
    #: The exit status for sys-exit and os-exit, the signal for signal.
    arg: int
    handlers: tuple[Handler, ...]

    @property
    def cleanup_hangs(self) -> bool:
        """Tell whether one of the handlers that run hangs."""
        return any(self.handlers[i].behaviour in HANGS for i in self.expected_runs())

    def expected_runs(self) -> frozenset[int]:
        """Return the handlers a complete cleanup runs, as a normal program's exit would.

        Every handler, except that ``logging.shutdown`` closes handlers newest
        first and stops at the first ``close()`` that raises (with
        ``logging.raiseExceptions``, the default): the logging handlers
        registered before that one are never closed.
        """
        runs = set(range(len(self.handlers)))
        logging_handlers = [i for i, h in enumerate(self.handlers) if h.kind == "logging"]
        for i in reversed(logging_handlers):
            if self.handlers[i].behaviour == "raise":
                runs -= {j for j in logging_handlers if j < i}
                break
        return frozenset(runs)

    def natural_exits(self) -> frozenset[int]:
        """Return the exit codes without terminate(): plain's, or -SIGALRM for a hang in C."""
        if self.target == "os-exit":
            return frozenset({self.arg})
        if self.target == "signal":
            # SIGTERM with sigterm="cleanup": a hung cleanup ends by SIGTERM too.
            plain = -self.arg
        else:
            plain = {"return": 0, "raise": 1, "sys-exit": self.arg}[self.target]
        stuck_in_c = any(self.handlers[i].behaviour == "hang-c" for i in self.expected_runs())
        return frozenset({plain, DEADLINE_EXIT} if stuck_in_c else {plain})


@dataclass(frozen=True)
class Case:
    """One drawn run: the child, its grandchild, the policy, the terminate moment."""

    seed: int
    index: int
    backend: str
    method: str
    sigterm: str
    timeout: float
    child: Program
    grandchild: Program | None
    #: None, or one of TERMINATE_MOMENTS.
    terminate: str | None
    #: Seconds the driver waits after the moment before terminate().
    terminate_delay: float

    def expected_exits(self) -> frozenset[int]:
        """Return the exit codes the plain library could give for this case."""
        natural = self.child.natural_exits() if self.child.target in ENDING_TARGETS else None
        if self.terminate is None:
            assert natural is not None
            return natural
        if natural is None:
            return frozenset({TERMINATED_EXIT})
        # terminate() may land before or after the child ended by itself.
        return natural | {TERMINATED_EXIT}

    def describe(self) -> str:
        """One line that says what the case does."""
        parts = [
            f"#{self.index} {self.backend}/{self.method}",
            f"sigterm={self.sigterm} timeout={self.timeout}",
            f"target={_describe_program(self.child)}",
        ]
        if self.grandchild is not None:
            parts.append(f"grandchild={_describe_program(self.grandchild)}")
        if self.terminate is not None:
            parts.append(f"terminate={self.terminate}+{self.terminate_delay:.3f}s")
        return " ".join(parts)


def _describe_program(program: Program) -> str:
    target = program.target
    if target in ("sys-exit", "os-exit"):
        target = f"{target}({program.arg})"
    elif target == "signal":
        target = f"signal({signal.Signals(program.arg).name})"
    handlers = ",".join(f"{h.kind}:{h.behaviour}" for h in program.handlers)
    return f"{target}[{handlers}]"


# -- drawing ------------------------------------------------------------------


def _draw_handlers(
    rng: random.Random, most: int, behaviours: tuple[str, ...], method: str
) -> tuple[Handler, ...]:
    handlers = []
    for _ in range(rng.randint(0, most)):
        kind, behaviour = rng.choice(HANDLER_KINDS), rng.choice(behaviours)
        if behaviour in HANGS:
            if method == "spawn":
                behaviour = "ok"  # the interpreter's own exit: unbounded, as plain
            else:
                kind = "cyclic-del"  # safeproc's garbage step: bounded everywhere
        handlers.append(Handler(kind, behaviour))
    return tuple(handlers)


def _draw_arg(rng: random.Random, target: str) -> int:
    if target in ("sys-exit", "os-exit"):
        return rng.randrange(10)
    if target == "signal":
        return rng.choice(KILL_SIGNALS)
    return 0


def draw_case(
    seed: int,
    index: int,
    backends: tuple[str, ...] = BACKENDS,
    methods: tuple[str, ...] = START_METHODS,
) -> Case:
    """Draw case *index* of the run seeded with *seed*."""
    rng = random.Random(f"{seed}:{index}")
    backend = rng.choice(backends)
    method = rng.choice(methods)
    terminate: str | None = rng.choice((None, None, *TERMINATE_MOMENTS))
    if terminate is None:
        target = rng.choice(ENDING_TARGETS)
    elif terminate == "in-cleanup":
        target = rng.choice(CLEAN_ENDINGS)
    elif terminate == "while-busy":
        target = rng.choice(BUSY_TARGETS)
    else:
        target = rng.choice(ENDING_TARGETS + BUSY_TARGETS)
    # Weighted: succeeding and raising handlers are as common as hanging ones.
    behaviours = ("ok", "ok", "raise", "raise", *HANGS)
    child = Program(target, _draw_arg(rng, target), _draw_handlers(rng, 3, behaviours, method))
    grandchild = None
    if rng.random() < 0.2:
        g_target = rng.choice(ENDING_TARGETS)
        grandchild = Program(
            g_target,
            _draw_arg(rng, g_target),
            _draw_handlers(rng, 2, ("ok", "raise", "ok", "raise", "hang-sleep", "hang-c"), method),
        )
    delay = {"at-start": 0.0, "after-delay": rng.uniform(0.0, 0.3)}.get(
        terminate or "", rng.uniform(0.0, 0.05)
    )
    return Case(
        seed=seed,
        index=index,
        backend=backend,
        method=method,
        sigterm=rng.choice(SIGTERM_MODES),
        timeout=rng.choice(TIMEOUTS),
        child=child,
        grandchild=grandchild,
        terminate=terminate,
        terminate_delay=0.0 if terminate is None else delay,
    )


def backend_module(backend: str) -> Any:
    """Return the safeproc namespace of *backend*."""
    if backend == "multiprocess":
        import safeproc  # noqa: PLC0415 - children import only what they use

        return safeproc
    import safeproc.stdlib  # noqa: PLC0415

    return safeproc.stdlib


# -- what the child and grandchild run -----------------------------------------


def mark(path: str, *words: object) -> None:
    """Append one line to the marker file *path*."""
    with open(path, "a") as f:
        f.write(" ".join(map(str, words)) + "\n")


#: Keeps the objects finalizers are attached to alive until cleanup.
_KEEP: list[object] = []


class _Target:
    """An object a ``weakref.finalize`` watches."""


class _Cycle:
    """Cyclic garbage whose ``__del__`` runs a handler."""

    def __init__(self, action: Callable[[], None]) -> None:
        self.me = self
        self.action = action

    def __del__(self) -> None:
        self.action()


class _FaultyLogHandler(logging.Handler):
    """A logging handler whose ``close()`` (run by logging.shutdown) runs a handler."""

    def __init__(self, action: Callable[[], None]) -> None:
        super().__init__()
        self.action = action

    def emit(self, record: logging.LogRecord) -> None:
        """Drop the record: only closing matters here."""

    def close(self) -> None:
        """Run the handler, then close as usual."""
        self.action()
        super().close()


def _behave(path: str, word: str, number: int, behaviour: str) -> None:
    mark(path, word, number, os.getpid())
    if behaviour == "raise":
        msg = f"injected cleanup fault {word} {number}"
        raise RuntimeError(msg)
    if behaviour == "hang-loop":
        while True:
            pass
    if behaviour == "hang-sleep":
        time.sleep(3600)
    if behaviour == "hang-c":
        sum(range(10**13))  # holds the GIL in C, never checks for signals


def _install_handlers(path: str, word: str, handlers: tuple[Handler, ...]) -> None:
    for number, handler in enumerate(handlers):

        def action(number: int = number, behaviour: str = handler.behaviour) -> None:
            _behave(path, word, number, behaviour)

        if handler.kind == "atexit":
            atexit.register(action)
        elif handler.kind == "finalize":
            keep = _Target()
            _KEEP.append(keep)
            weakref.finalize(keep, action)
        elif handler.kind == "cyclic-del":
            _Cycle(action)  # garbage at once; collected only at cleanup
        else:
            logger = logging.getLogger(f"safeproc-faults-{word}-{number}")
            logger.addHandler(_FaultyLogHandler(action))


def _end_target(path: str, program: Program) -> None:
    target = program.target
    mark(path, "busy" if target in BUSY_TARGETS else "done", os.getpid())
    if target == "raise":
        msg = "injected target fault"
        raise RuntimeError(msg)
    if target == "sys-exit":
        sys.exit(program.arg)
    if target == "os-exit":
        os._exit(program.arg)
    if target == "signal":
        os.kill(os.getpid(), program.arg)
        time.sleep(3600)  # the signal ends the process first
    elif target == "busy-sleep":
        time.sleep(3600)
    elif target == "busy-loop":
        while True:
            pass


def _prepare(stderr_path: str | None) -> None:
    # A hanging __del__ must hang in cleanup, not in a collection the
    # target's allocations happen to trigger: no allocation count reaches
    # this threshold. gc stays enabled: a spawned child's interpreter exit
    # collects early (while module globals still exist) only if it is.
    gc.enable()
    gc.set_threshold(2**31 - 1)
    if stderr_path is not None:
        fd = os.open(stderr_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.dup2(fd, 2)
        os.close(fd)
    # The driver asks a case it finds hung where it is stuck.
    faulthandler.register(signal.SIGUSR2, all_threads=True)


def run_grandchild(case: Case, path: str) -> None:
    """Be the grandchild: handlers, then the drawn end."""
    assert case.grandchild is not None
    _prepare(None)
    mark(path, "g-start", os.getpid())
    _install_handlers(path, "g-ran", case.grandchild.handlers)
    _end_target(path, case.grandchild)


def run_child(case: Case, path: str, stderr_path: str) -> None:
    """Be the child: handlers, the grandchild if any, then the drawn end."""
    _prepare(stderr_path)
    mark(path, "start", os.getpid())
    _install_handlers(path, "ran", case.child.handlers)
    if case.grandchild is not None:
        mp = backend_module(case.backend)
        grandchild = mp.get_context(case.method).Process(
            target=run_grandchild,
            args=(case, path),
            cleanup=mp.CleanupPolicy(timeout=case.timeout),
        )
        grandchild.start()
        grandchild.join(MARKER_WAIT + case.timeout)
        mark(path, "g-exit", grandchild.exitcode)
        if grandchild.exitcode is None:
            grandchild.kill()
            grandchild.join()
    _end_target(path, case.child)
