"""Started in every process of a conformance run that needs it (``PYTHONPATH``).

multiprocess's 3.13 suite imports ``test.support.subTests``, which CPython
added in a later 3.13 release than some installed ones (3.13.0). Spawned and
forkserver children import the suite before any code of the run's own, so
the backport must be there from interpreter start: ``conformance/run.py``
puts this directory on ``PYTHONPATH`` only when ``test.support`` lacks it.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable


def _backport_subtests() -> None:
    """Give ``test.support`` the ``subTests`` decorator of later 3.13 releases.

    multiprocess's 3.13 suite imports it; 3.13.0's ``test.support`` lacks it.
    This is CPython's implementation.
    """
    from test import support  # noqa: PLC0415

    if hasattr(support, "subTests"):
        return

    def subTests(  # noqa: N802 - CPython's name
        arg_names: str | list[str],
        arg_values: Any,  # noqa: ANN401 - any iterable, as CPython
        /,
        *,
        _do_cleanups: bool = False,
    ) -> Callable[[Callable[..., None]], Callable[..., None]]:
        single_param = False
        if isinstance(arg_names, str):
            arg_names = arg_names.replace(",", " ").split()
            single_param = len(arg_names) == 1
        values_list = tuple(arg_values)

        def decorator(func: Callable[..., None]) -> Callable[..., None]:
            @functools.wraps(func)
            def wrapper(self: Any, /, *args: Any, **kwargs: Any) -> None:  # noqa: ANN401
                for values in values_list:
                    subtest_kwargs = dict(
                        zip(arg_names, (values,) if single_param else values, strict=False)
                    )
                    with self.subTest(**subtest_kwargs):
                        func(self, *args, **kwargs, **subtest_kwargs)
                    if _do_cleanups:
                        self.doCleanups()

            return wrapper

        return decorator

    support.subTests = subTests  # type: ignore[attr-defined]


_backport_subtests()
