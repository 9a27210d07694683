"""The cleanup deadline: a kernel timer whose signal kills the child.

Nothing that runs inside the child's interpreter can be relied on to end a
cleanup step that hangs: a Python signal handler or a watchdog thread never
runs while the main thread holds the GIL in a C call. A kernel interval timer
(``setitimer``) delivering ``SIGALRM`` at its default action ends the process
whatever it is doing; ``faulthandler`` first prints every thread's traceback
from its C-level handler, so stderr shows the step that hung (the cleanup
step functions are named after their steps) and the line it hung on.
``faulthandler.dump_traceback_later`` is not used: a watchdog a parent had
armed at fork leaves its lock held in the child, and arming one there hangs.
"""

from __future__ import annotations

import faulthandler
import signal
import sys

__all__ = ["DEADLINE_SIGNAL", "arm_deadline"]

#: The signal a child dies by when its cleanup deadline expires.
DEADLINE_SIGNAL = signal.SIGALRM


def arm_deadline(seconds: float | None) -> None:
    """Kill this process by ``SIGALRM`` in *seconds*.

    The timer is never disarmed: the process ends before it fires unless
    its cleanup hangs.
    """
    if seconds is None:
        return
    signal.signal(DEADLINE_SIGNAL, signal.SIG_DFL)
    stderr = sys.__stderr__ if sys.stderr is None else sys.stderr
    try:
        if stderr is not None:
            faulthandler.register(DEADLINE_SIGNAL, file=stderr, all_threads=True, chain=True)
    except (AttributeError, ValueError, OSError, RuntimeError):
        pass  # no usable stderr: the timer still ends the child, silently
    signal.setitimer(signal.ITIMER_REAL, seconds)
