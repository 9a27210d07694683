"""The backend test suite one conformance run loads, as an importable module.

The backends' suites are templates: ``install_tests_in_module_dict`` makes
the test classes for one start method in the module that calls it. This
module is that caller; spawned and forkserver children import it by name to
unpickle test methods, so it reads its parameters from the environment,
which they inherit: ``SAFEPROC_CONFORMANCE_SUITE`` (``cpython`` or
``multiprocess``) and ``SAFEPROC_CONFORMANCE_METHOD``.
"""

from __future__ import annotations

import os
import unittest
from typing import Any

SUITE = os.environ.get("SAFEPROC_CONFORMANCE_SUITE", "cpython")
METHOD = os.environ.get("SAFEPROC_CONFORMANCE_METHOD", "fork")
#: The test type the conformance runs cover ("processes": real children).
ONLY_TYPE = "processes"


if SUITE == "cpython":
    from test._test_multiprocessing import install_tests_in_module_dict
elif SUITE == "multiprocess":
    from multiprocess.tests import install_tests_in_module_dict
else:  # pragma: no cover - a wrong environment
    msg = f"SAFEPROC_CONFORMANCE_SUITE must be 'cpython' or 'multiprocess', not {SUITE!r}"
    raise ValueError(msg)


def _install(namespace: dict[str, Any]) -> None:
    try:
        install_tests_in_module_dict(namespace, METHOD, only_type=ONLY_TYPE)
    except TypeError:
        # 3.9 and 3.10 have no only_type: keep the "processes" classes only.
        install_tests_in_module_dict(namespace, METHOD)
        prefix = "With" + ONLY_TYPE.capitalize()
        for name in [n for n, v in namespace.items() if isinstance(v, type)]:
            value = namespace[name]
            if issubclass(value, unittest.TestCase) and not name.startswith(prefix):
                del namespace[name]


_install(globals())
