"""Celery: ``import safeproc.celery`` in the app module makes every prefork pool child safe.

One line at the top of the module ``celery -A`` names, before the app is
made::

    import safeproc.celery  # noqa: F401 - pool children exit as their own program
    from celery import Celery

    app = Celery("proj", broker="redis://localhost:6379/0")

Every worker started from that module, however it is started (``celery
-A proj worker``, systemd, a container's command line), then runs each
prefork pool child's atexit handlers, ``weakref.finalize`` callbacks,
cyclic ``__del__`` methods and logging handlers when it is recycled
(``--max-tasks-per-child``, ``--max-memory-per-child``), shrunk
(``--autoscale``) or shut down warmly, before the child reports its exit
to the pool. Celery's ``worker_process_shutdown`` signal still fires once
per child, before safeproc's exit sequence, as a program's last lines run
before its exit handlers. Without changing the module,
``python -m safeproc run -m celery -A proj worker ...`` does the same.

Importing it calls :func:`safeproc.install` with the process-wide default
policy; to choose one, call :func:`safeproc.install` in the app module
instead, e.g. ``safeproc.install(safeproc.CleanupPolicy(sigterm="cleanup"))``
to also finish children ended by ``terminate()``, a revoke with
``terminate=True`` or a hard time limit.

.. versionadded:: 0.1
"""

from __future__ import annotations

from safeproc._install import install

__all__: list[str] = []

install()
