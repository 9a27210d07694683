"""Run a function on a module right after a later ``import`` of it completes.

:func:`safeproc.install` patches ``multiprocess`` this way when a program
imports it after the call. :class:`OnImport` is a :data:`sys.meta_path`
finder (not derived from ``importlib.abc``, whose import would cost every
child more than this class does). It finds nothing itself: it asks the
finders after it for the real spec and gives it a loader that runs the real
one, then the function. The real loader (often shared: a zip importer loads
every module of its archive) is never changed.
"""

from __future__ import annotations

import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from importlib.machinery import ModuleSpec
    from types import ModuleType
    from typing import Any

__all__ = ["OnImport"]


class OnImport:
    """A finder that calls *then* with each module of *names* once it is imported."""

    def __init__(self, names: tuple[str, ...], then: Callable[[ModuleType], None]) -> None:
        self.names = names
        self.then = then

    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None,
        target: ModuleType | None = None,
    ) -> ModuleSpec | None:
        """Return the real spec of the module, with a loader that calls back."""
        if fullname not in self.names or fullname in sys.modules:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec: ModuleSpec | None = finder.find_spec(fullname, path, target)
            if spec is not None:
                break
        else:
            return None
        if spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        spec.loader = _CallingLoader(spec.loader, self.then)  # type: ignore[assignment]
        return spec


class _CallingLoader:
    """Loads a module with its real loader, then calls the function with it."""

    def __init__(self, loader: Any, then: Callable[[ModuleType], None]) -> None:  # noqa: ANN401 - any importlib loader
        self.loader = loader
        self.then = then

    def create_module(self, spec: ModuleSpec) -> ModuleType | None:
        """Let the real loader create the module, as it would."""
        create = getattr(self.loader, "create_module", None)
        return None if create is None else create(spec)

    def exec_module(self, module: ModuleType) -> None:
        """Run the module with the real loader back in place, then the function."""
        module.__loader__ = self.loader
        if module.__spec__ is not None:
            module.__spec__.loader = self.loader
        self.loader.exec_module(module)
        self.then(module)

    def __getattr__(self, name: str) -> Any:  # noqa: ANN401 - whatever the real loader has
        return getattr(self.loader, name)
