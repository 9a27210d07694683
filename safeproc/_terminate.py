"""``Pool.terminate()`` that never hangs in the parent, for safe and installed pools.

The stock ``Pool._terminate_pool`` can block on a lock a worker holds:
``inqueue._rlock`` in ``_help_stuff_finish``, and ``outqueue._wlock`` in
``outqueue.put(None)`` (its own, or the task handler's that it joins) when a
worker died while sending a result. design.md measured 2 hangs in
100 rounds on 3.9; a pool whose workers send large results hangs more often.

:func:`bounded_terminate` runs the stock terminate in a helper thread; if it
has not finished after a second and is not merely draining results (some
pending, the result handler alive, every worker alive: then it waits as
plain, up to 30 seconds), it signals the workers itself (those the stock code has not),
waits for them to die (their cleanup deadline bounds that), and then
releases those two locks, whose holders are dead by then.
:class:`~safeproc.SafePool` uses it, and :func:`safeproc.install` puts it
under the plain ``Pool.terminate`` of each backend.

Only the standard library's threading and time here: ``install()`` imports
this module in every child it reaches, pools or not.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
import warnings

from safeproc._policy import DEFAULT_TIMEOUT
from safeproc._sigterm import ESCALATION_MARGIN, KILL_MARGIN, has_ended

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    from safeproc._policy import CleanupPolicy

__all__ = ["bounded_terminate", "make_bounded_terminate"]

#: Seconds the stock terminate may take before safeproc signals workers itself.
STUCK_AFTER = 1.0
#: How long a terminate whose results are still draining may take as plain.
DRAINING_BOUND = 30.0
#: Beyond the deadline: the parent's escalation margins, then some slack.
WORKERS_DEAD_AFTER = ESCALATION_MARGIN + KILL_MARGIN + 1.0
#: Once every worker is dead, how long the stock terminate gets to finish.
SETTLE = 0.2


def bounded_terminate(
    pool: Any,  # noqa: ANN401 - a Pool of either backend
    stock_terminate: Callable[[], None],
    timeout: float | None,
    connection: Any,  # noqa: ANN401 - the backend's connection module
) -> None:
    """Run *stock_terminate* (the pool's plain terminate), bounded; see the module doc.

    :param timeout: the workers' cleanup deadline (``None``: the default's).
    """
    runner = threading.Thread(target=stock_terminate, name="safeproc-pool-terminate", daemon=True)
    runner.start()
    runner.join(STUCK_AFTER)
    # Slow is not stuck: while results are pending, the result handler
    # reads and every worker lives, the stock terminate is waiting for them
    # to drain (large ones, a loaded machine), as plain. Stopping a worker then would cut
    # the result it is writing and leave the handler blocked in recv().
    end = time.monotonic() + DRAINING_BOUND
    while runner.is_alive() and _draining(pool) and time.monotonic() < end:
        runner.join(0.1)
    if not runner.is_alive():
        return
    workers = _live_workers(pool)
    # Stuck before signalling a worker: do it here (once per worker).
    for worker in workers:
        if not getattr(worker, "_safeproc_terminate_sent", False):
            worker.terminate()
    deadline = (DEFAULT_TIMEOUT if timeout is None else timeout) + WORKERS_DEAD_AFTER
    sentinels = [w.sentinel for w in workers]
    end = time.monotonic() + deadline
    while sentinels and runner.is_alive() and time.monotonic() < end:
        done = connection.wait(sentinels, timeout=0.1)
        sentinels = [s for s in sentinels if s not in done]
    runner.join(SETTLE)
    if runner.is_alive():
        # Every worker is dead: a lock the stock code waits for is held by
        # one of them and will never be released otherwise.
        for lock in (
            getattr(pool._inqueue, "_rlock", None),
            getattr(pool._outqueue, "_wlock", None),
        ):
            _release_if_held(lock)
        runner.join(STUCK_AFTER)
    end = time.monotonic() + STUCK_AFTER
    while runner.is_alive() and time.monotonic() < end:
        _unblock_result_stream(pool)
        runner.join(0.05)
    if runner.is_alive():
        warnings.warn(
            "Pool.terminate(): the pool's internal threads are still blocked; "
            "its worker processes have ended",
            RuntimeWarning,
            stacklevel=3,
        )


def make_bounded_terminate(
    original: Callable[[Any], None],
    connection: Any,  # noqa: ANN401 - the backend's connection module
    installed_policy: Callable[[], CleanupPolicy | None],
) -> Callable[[Any], None]:
    """Wrap a plain ``Pool.terminate`` for :func:`safeproc.install`, bounded as SafePool's.

    :param installed_policy: the installed policy, or ``None`` once
        uninstalled (the wrapper then passes through).
    """

    def terminate(self: Any) -> None:  # noqa: ANN401 - a Pool of either backend
        policy = installed_policy()
        if policy is None or getattr(type(self), "_safeproc_bounded_terminate", False):
            original(self)  # uninstalled, or a SafePool, which bounds its own
            return
        bounded_terminate(self, lambda: original(self), policy.timeout, connection)

    terminate.__wrapped__ = original  # type: ignore[attr-defined]
    return terminate


def _draining(pool: Any) -> bool:  # noqa: ANN401 - a Pool of either backend
    """Return whether results may still be draining.

    Some are pending, the result handler is alive and no worker has ended.
    """
    handler = getattr(pool, "_result_handler", None)
    if handler is None or not handler.is_alive() or not getattr(pool, "_cache", None):
        return False
    return all(w._popen is not None and not has_ended(w._popen) for w in list(pool._pool))


def _unblock_result_stream(pool: Any) -> None:  # noqa: ANN401 - a Pool of either backend
    """Unblock the two ends of the result queue a terminated pool can hang on.

    The stock terminate writes its sentinel into the result pipe after the
    result handler may have exited, with workers' results filling the pipe:
    the write (its own, or the task handler's, holding the lock) then blocks
    for ever. Results are discarded at terminate: the parent reads the pipe
    empty. And a worker stopped while writing a result leaves a live result
    handler waiting in recv() for the rest: once the parent's copy of the
    writing end is closed, and every worker's died with it, that recv()
    ends (EOFError, which the handler takes as its cue to exit).
    """
    handler = getattr(pool, "_result_handler", None)
    if handler is None:
        return
    if not handler.is_alive():
        reader = getattr(pool._outqueue, "_reader", None)
        with contextlib.suppress(OSError, ValueError):
            while reader is not None and reader.poll(0):
                if not os.read(reader.fileno(), 1 << 16):
                    break  # end of file: no writer left
        return
    writer = getattr(pool._outqueue, "_writer", None)
    if writer is not None and not _live_workers(pool):
        with contextlib.suppress(OSError):
            writer.close()


def _live_workers(pool: Any) -> list[Any]:  # noqa: ANN401 - a Pool of either backend
    """Return the workers that have not ended; never reap one (the pool's threads do)."""
    workers = list(pool._pool)
    return [w for w in workers if w._popen is not None and not has_ended(w._popen)]


def _release_if_held(lock: Any) -> None:  # noqa: ANN401 - a SemLock or None
    """Release a multiprocessing Lock if it is held (any holder may release)."""
    if lock is None:
        return
    if lock.acquire(block=False):
        lock.release()
        return
    with contextlib.suppress(ValueError, OSError):
        lock.release()
