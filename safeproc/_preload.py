"""What a forkserver preloads for safe children: the exit sequence, ready.

Named in the forkserver's preload list by safe processes, so the server
imports it once and every child it forks inherits it (rather than importing
safeproc and :mod:`ctypes` each).
"""

from __future__ import annotations

from safeproc import _cleanup, _kernel  # noqa: F401 - imported for the children

_kernel.prepare()
