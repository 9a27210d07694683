"""What a normal interpreter exit does to the objects a forked child made.

A normal exit collects cyclic garbage, then tears the modules down: every
module global is released, so objects with ``__del__`` run it, archives and
compressed streams write their trailers, temporary files are removed, a
database connection rolls its open transaction back, and buffered files are
flushed and closed. A forked child's inherited heap is frozen, so
:func:`gc.get_objects` lists only what the child made: this module does the
same to those objects, and only to them.

Never to inherited objects, and never to an object only because it is
reachable from an inherited one: a child-made object held by an inherited
container (other than a module's globals) is flushed if it is a file, and
otherwise left as the plain library leaves it.
"""

from __future__ import annotations

import builtins
import gc
import io
import sys
import types

from safeproc._errors import report_unraisable

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = [
    "close_and_flush_child_files",
    "close_child_closables",
    "flush_child_files",
    "release_child_globals",
]

#: Objects a normal exit finalizes with effects beyond freeing memory, and
#: that closing finalizes the same way: (module, class) pairs, looked up only
#: where the module is imported.
_CLOSE_AT_EXIT = (
    ("gzip", "GzipFile"),
    ("bz2", "BZ2File"),
    ("lzma", "LZMAFile"),
    ("compression.zstd", "ZstdFile"),
    ("zipfile", "ZipFile"),
    ("tarfile", "TarFile"),
    ("tempfile", "_TemporaryFileWrapper"),
    ("sqlite3", "Connection"),
)


def _std_stream_ids() -> set[int]:
    streams = (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__, sys.stdin, sys.__stdin__)
    ids = {id(s) for s in streams}
    ids |= {id(getattr(s, "buffer", None)) for s in streams}
    ids |= {id(getattr(getattr(s, "buffer", None), "raw", None)) for s in streams}
    ids.discard(id(None))
    return ids


def _has_python_del(cls: type) -> bool:
    """Tell whether *cls*'s ``__del__`` is written in Python.

    The one its instances' finalization calls: the first in the MRO, found
    through the type's attribute cache. (C types expose their finalizers as
    ``__del__`` too: files, generators, sockets. Those are not released
    here; files are closed or flushed by their own step.) Walking the MRO's
    dictionaries instead writes to each inherited class object it visits,
    which in a forked child copies a page per class.
    """
    return isinstance(getattr(cls, "__del__", None), types.FunctionType)


def release_child_globals(*, main_only: bool = False) -> int:
    """Release the module globals that hold child-made objects with ``__del__``.

    As module teardown does: the binding goes, and the object is finalized if
    nothing else holds it. Inherited bindings, modules, functions and
    classes stay. With *main_only*, only the main module's namespaces are
    looked at. Returns how many bindings were released.
    """
    candidates = _child_objects_with_del()
    if not candidates:
        return 0
    skip = _std_stream_ids()
    namespaces = _module_namespaces(main_only=main_only)
    return sum(_release_from(ns, candidates, skip) for ns in namespaces)


def _module_namespaces(*, main_only: bool) -> list[dict[str, Any]]:
    """Return the global namespaces a normal exit tears down, newest module first.

    The modules' dictionaries, and the one the main module's functions really
    use: a spawned or forkserver child runs the main module with
    :func:`runpy.run_path` and copies the result into a new module, so its
    functions' globals are runpy's dictionary, in no module.
    """
    seen: set[int] = set()
    namespaces: list[dict[str, Any]] = []

    def add(namespace: object) -> None:
        if isinstance(namespace, dict) and id(namespace) not in seen:
            seen.add(id(namespace))
            namespaces.append(namespace)

    mains = ("__main__", "__mp_main__")
    for name, module in reversed(list(sys.modules.items())):
        if main_only and name not in mains:
            continue
        if module is not None and module is not sys and module is not builtins:
            add(getattr(module, "__dict__", None))
    for name in mains:
        for value in list(getattr(sys.modules.get(name), "__dict__", {}).values()):
            if isinstance(value, types.FunctionType):
                add(value.__globals__)
    return namespaces


def _child_objects_with_del() -> set[int]:
    """Return the ids of child-made objects whose class has a Python ``__del__``."""
    kinds: dict[type, bool] = {}
    candidates: set[int] = set()
    for obj in gc.get_objects():
        cls = type(obj)
        kind = kinds.get(cls)
        if kind is None:
            kind = kinds[cls] = not issubclass(cls, type) and _has_python_del(cls)
        if kind:
            candidates.add(id(obj))
    # Only ids leave here: no strong reference of ours keeps them alive.
    return candidates


def _release_from(namespace: dict[str, Any], candidates: set[int], skip: set[int]) -> int:
    released = 0
    for name in list(namespace):
        value = namespace.get(name)
        value_id = id(value)
        del value  # no reference of ours may keep it alive
        if value_id not in candidates or value_id in skip:
            continue
        try:
            del namespace[name]
        except BaseException:  # noqa: BLE001 - its __del__ failed: reported as CPython does
            report_unraisable("Exception ignored while releasing a module global", name)
        released += 1
    return released


def _close_classes() -> tuple[type, ...]:
    classes = []
    for module_name, class_name in _CLOSE_AT_EXIT:
        module = sys.modules.get(module_name)
        cls = getattr(module, class_name, None)
        if isinstance(cls, type):
            classes.append(cls)
    return tuple(classes)


#: What :func:`_scan_files` files an object under, by its class.
_CLOSABLE, _TEXT, _BINARY, _OTHER = 0, 1, 2, 3


def _scan_files() -> tuple[list[Any], list[Any]]:
    """Return the child's closables and its buffered files (text layers first).

    One pass over :func:`gc.get_objects`, deciding once per class: the
    archive and temporary-file classes derive from :mod:`io`'s abstract
    classes, whose ``isinstance`` check is slow enough to cost tens of
    milliseconds over a spawned child's whole heap.
    """
    closable = _close_classes()
    kinds: dict[type, int] = {}
    closables: list[Any] = []
    files: tuple[list[Any], list[Any]] = ([], [])
    for obj in gc.get_objects():
        cls = type(obj)
        kind = kinds.get(cls)
        if kind is None:
            kind = kinds[cls] = _file_kind(cls, closable)
        if kind == _CLOSABLE:
            closables.append(obj)
        elif kind != _OTHER:
            files[kind - 1].append(obj)
    return closables, [*files[0], *files[1]]


def _file_kind(cls: type, closable: tuple[type, ...]) -> int:
    if issubclass(cls, type):
        return _OTHER  # a class, even one whose metaclass is a file's
    if closable and issubclass(cls, closable):
        return _CLOSABLE
    if issubclass(cls, io.TextIOWrapper):
        return _TEXT
    if issubclass(cls, (io.BufferedWriter, io.BufferedRandom)):
        return _BINARY
    return _OTHER


def close_and_flush_child_files() -> int:
    """Close the child's closables (:func:`close_child_closables`), then flush its files.

    Returns how many were closed or flushed.
    """
    closables, files = _scan_files()
    closed = close_child_closables(closables)
    del closables
    return closed + flush_child_files(files)


def close_child_closables(found: list[Any] | None = None) -> int:
    """Close the child's archives, compressed streams, temporary files and database connections.

    Outermost first (a tar archive before the gzip stream under it), as
    reference counting orders it at a normal exit. *found* is what
    :func:`_scan_files` found (scanned here when ``None``). Returns how many
    were closed. Errors are reported as CPython reports errors in ``__del__``.
    """
    if found is None:
        found = _scan_files()[0]
    closed = 0
    for obj in _outermost_first(found):
        if getattr(obj, "closed", False) is True:
            continue
        try:
            obj.close()  # sqlite3 rolls an open transaction back, as on dealloc
        except Exception:  # noqa: BLE001 - reported like CPython does
            report_unraisable("Exception ignored while closing", obj)
        closed += 1
    return closed


def _outermost_first(objects: list[Any]) -> list[Any]:
    """Order *objects* so that each comes before the ones it holds (two levels deep)."""
    ids = {id(o): o for o in objects}
    inner: dict[int, set[int]] = {}
    for obj in objects:
        held: set[int] = set()
        for ref in gc.get_referents(obj):
            if id(ref) in ids:
                held.add(id(ref))
            elif isinstance(ref, (dict, list, tuple)):
                held.update(id(r) for r in gc.get_referents(ref) if id(r) in ids)
        held.discard(id(obj))
        inner[id(obj)] = held
    ordered: list[Any] = []
    placed: set[int] = set()

    def place(key: int, visiting: set[int]) -> None:
        if key in placed or key in visiting:
            return
        visiting.add(key)
        # Whoever holds this object goes first.
        for other, held in inner.items():
            if key in held:
                place(other, visiting)
        placed.add(key)
        ordered.append(ids[key])

    for obj in objects:
        place(id(obj), set())
    return ordered


def flush_child_files(files: list[Any] | None = None) -> int:
    """Flush buffered files the child opened and still holds; text layers first.

    ``gc.get_objects()`` excludes the frozen (inherited) heap, so an
    inherited file, whose buffer holds the parent's bytes, is never touched.
    *files* is what :func:`_scan_files` found (scanned here when ``None``).
    A flush that fails is silent, as a normal exit's implicit close is
    outside development mode (``-X dev``).
    """
    if files is None:
        files = _scan_files()[1]
    std = _std_stream_ids()
    return sum(_flush_one(f) for f in files if id(f) not in std)


def _flush_one(f: Any) -> int:  # noqa: ANN401 - a buffered or text file
    """Flush *f* if it is open for writing; return 1 if it was flushed."""
    try:
        if f.closed or not f.writable():
            return 0
    except ValueError:
        return 0  # still being constructed (a signal interrupted open())
    try:
        f.flush()
    except RuntimeError:
        return 0  # "reentrant call": a signal interrupted a write to it
    except (OSError, ValueError):
        # What a normal exit does with a file whose flush fails while it is
        # finalized: says so in dev mode only, and always from 3.13 (io's
        # finalizer logs close() errors since then).
        if sys.flags.dev_mode or sys.version_info >= (3, 13):
            report_unraisable("Exception ignored while flushing file", f)
        return 0
    return 1
