"""Dask: a nanny preload that makes every worker process a nanny starts safe.

Give it to the nannies, on every host, in either way dask reads preloads::

    dask worker tcp://scheduler:8786 --nanny --preload-nanny safeproc.dask

or in the dask configuration (``~/.config/dask/distributed.yaml``, or the
``DASK_DISTRIBUTED__NANNY__PRELOAD='["safeproc.dask"]'`` environment
variable, as dask-jobqueue and dask-kubernetes deployments pass settings)::

    distributed:
      nanny:
        preload: ["safeproc.dask"]

The nanny imports the module when it is created, before it starts its
worker process: the import calls :func:`safeproc.install`, so the worker
process (forked, started by a forkserver, or spawned, as
``distributed.worker.multiprocessing-method`` says) runs its atexit
handlers, finalizers, cyclic ``__del__`` methods and logging handlers when
the nanny stops or restarts it.

A policy other than the default comes from the dask configuration key
``safeproc.cleanup``, ``FIELD=VALUE[,...]`` as ``python -m safeproc run
--cleanup`` takes it::

    safeproc:
      cleanup: "timeout=5,sigterm=cleanup"

(or ``DASK_SAFEPROC__CLEANUP=timeout=5``). A bad value stops the nanny at
its start with an error naming the field and the allowed values.

As a *worker* preload (``--preload``, ``distributed.worker.preload``) it
comes too late: the worker process is already running when it is
imported. :func:`dask_setup` then logs a warning naming the nanny preload.

.. versionadded:: 0.1
"""

from __future__ import annotations

import importlib
import logging

from safeproc._cleanup import running_child
from safeproc._install import install
from safeproc._run import parse_cleanup

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from safeproc._policy import CleanupPolicy

__all__ = ["CONFIG_KEY", "configured_policy", "dask_setup"]

#: The dask configuration key of the policy (``FIELD=VALUE[,...]``).
CONFIG_KEY = "safeproc.cleanup"

logger = logging.getLogger(__name__)


def configured_policy() -> CleanupPolicy | None:
    """Return the policy :data:`CONFIG_KEY` names in the dask configuration, if any.

    :raises ValueError: the value is malformed, or a field's value is not allowed.
    :raises TypeError: the value is not a string, or names an unknown field.
    """
    config: Any = importlib.import_module("dask.config")
    spec = config.get(CONFIG_KEY, None)
    if spec is None:
        return None
    if not isinstance(spec, str):
        msg = f"dask config {CONFIG_KEY!r} must be a string of FIELD=VALUE pairs, not {spec!r}"
        raise TypeError(msg)
    return parse_cleanup([spec])


def dask_setup(server: Any) -> None:  # noqa: ANN401 - a dask Server
    """Warn when loaded as a worker preload, where it comes too late.

    Called by dask with the nanny, worker or scheduler that loaded the
    preload; the import itself already installed safeproc.
    """
    if type(server).__name__ == "Worker" and running_child() is None:
        logger.warning(
            "safeproc.dask was loaded as a worker preload: this worker process "
            "was started before it, and exits as plain multiprocessing would. "
            "Give it to the nanny instead: --preload-nanny safeproc.dask, or "
            "distributed.nanny.preload in the dask configuration."
        )


install(configured_policy())
