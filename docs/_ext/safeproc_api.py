"""API reference helpers: one directive per public namespace, and a check.

``.. safeproc-namespace:: safeproc.stdlib`` documents every name in the
module's ``__all__``, generated from the objects themselves:

* safeproc's own classes and functions through autodoc (their docstrings);
* a second name for the same object (``Process`` for ``SafeProcess``) or an
  object already documented under ``safeproc`` as a short entry that links
  to the full one;
* the names the backend offers (``Queue``, ``Lock`` ...), which safeproc
  takes from its safe default context, as an entry with the signature, the
  backend's own docstring summary and a link to the Python documentation.

Because the list comes from ``__all__``, a new public name is documented
without anyone editing the page. The ``env-check-consistency`` check fails the
build (a warning, an error under ``-W``) if a public name has no entry, and
type hints that name a private module (``safeproc._policy.CleanupPolicy``)
resolve to the public entry.
"""

from __future__ import annotations

import importlib
import inspect
from typing import TYPE_CHECKING, Any

from docutils import nodes
from docutils.statemachine import StringList
from sphinx.util import logging
from sphinx.util.docutils import SphinxDirective

if TYPE_CHECKING:
    import types

    from docutils.nodes import Element
    from sphinx.addnodes import pending_xref
    from sphinx.application import Sphinx
    from sphinx.environment import BuildEnvironment

__all__ = ["API_MODULES", "setup"]

logger = logging.getLogger(__name__)

#: The public namespaces, the first one primary for objects both export.
API_MODULES = ("safeproc", "safeproc.stdlib")

#: The plain library each namespace mirrors, and its Python documentation.
BACKENDS = {"safeproc": "multiprocess", "safeproc.stdlib": "multiprocessing"}

#: Backend names documented elsewhere than ``multiprocessing.<name>``.
PYTHON_DOC_NAMES = {
    "RawArray": "multiprocessing.sharedctypes.RawArray",
    "RawValue": "multiprocessing.sharedctypes.RawValue",
}

#: Backend names the Python documentation does not describe.
UNDOCUMENTED_UPSTREAM = {"allow_connection_pickling", "reducer"}


def _is_own(obj: object) -> bool:
    module = getattr(obj, "__module__", None) or ""
    return module == "safeproc" or module.startswith("safeproc.")


def _plain_signature(obj: Any) -> str:  # noqa: ANN401 - any callable
    """Return ``(a, b=1, *, c=None)``: the signature without annotations."""
    target = obj.__init__ if inspect.isclass(obj) else obj
    try:
        sig = inspect.signature(target)
    except (TypeError, ValueError):
        return "(...)"
    params = list(sig.parameters.values())
    if inspect.isclass(obj) and params and params[0].name == "self":
        params = params[1:]
    params = [p.replace(annotation=inspect.Parameter.empty) for p in params]
    return str(sig.replace(parameters=params, return_annotation=inspect.Signature.empty))


def _escape(text: str) -> str:
    for char in ("\\", "*", "`", "|", "_"):
        text = text.replace(char, "\\" + char)
    return text


def _summary(obj: object) -> str:
    doc = inspect.getdoc(obj) or ""
    first = doc.strip().split("\n\n")[0]
    return _escape(" ".join(first.split()))


def _primary_name(module: types.ModuleType, names: list[str]) -> str:
    """Of several public names for one object, the one safeproc documents fully."""
    backend = importlib.import_module(BACKENDS[module.__name__])
    own = [n for n in names if n not in getattr(backend, "__all__", ())]
    return min(own or names)


def _renamed_class_rst(modname: str, name: str, cls: type) -> list[str]:
    """Document *cls* under its public *name*: docstring, then its own members."""
    lines = [f".. py:class:: {name}{_plain_signature(cls)}", ""]
    doc = inspect.getdoc(cls) or ""
    lines += [f"   {line}" if line else "" for line in doc.splitlines()]
    plain = [c.__name__ for c in cls.__mro__ if not _is_own(c) and c is not object]
    lines += ["", f"   Bases: the backend's ``{'``, ``'.join(plain)}``.", ""]
    seen: set[str] = set()
    for klass in cls.__mro__:
        if not _is_own(klass):
            continue
        for member, value in vars(klass).items():
            if member.startswith("_") or member in seen:
                continue
            seen.add(member)
            if isinstance(value, property):
                kind = "autoproperty"
            elif inspect.isfunction(value) or isinstance(value, (classmethod, staticmethod)):
                kind = "automethod"
            else:
                continue
            if not inspect.getdoc(getattr(cls, member)):
                continue
            lines += [f"   .. {kind}:: {modname}.{name}.{member}", ""]
    return lines


def _own_rst(module: types.ModuleType, name: str, names_of_obj: list[str]) -> list[str]:
    """Document one of safeproc's own names (autodoc, or a link to its entry)."""
    modname = module.__name__
    obj = getattr(module, name)
    primary = _primary_name(module, names_of_obj)
    kind = "class" if inspect.isclass(obj) else "function"
    role = "class" if kind == "class" else "func"
    primary_module = importlib.import_module(API_MODULES[0])
    if name != primary:
        text = f"The same {kind} as :py:{role}:`{primary}`, under the plain library's name."
        return [f".. py:{kind}:: {name}{_plain_signature(obj)}", "", f"   {text}", ""]
    if modname != API_MODULES[0] and getattr(primary_module, name, None) is obj:
        text = f"The same object as :py:{role}:`{API_MODULES[0]}.{name}`."
        return [f".. py:{kind}:: {name}{_plain_signature(obj)}", "", f"   {text}", ""]
    if inspect.isclass(obj) and obj.__name__ != name:
        # autodoc would render a class under another name as "alias of".
        return _renamed_class_rst(modname, name, obj)
    if inspect.isclass(obj):
        lines = [f".. autoclass:: {modname}.{name}{_plain_signature(obj)}", "   :members:"]
        plain = sorted({c.__name__ for c in obj.__mro__ if not _is_own(c) and c is not object})
        if plain:
            lines.append(f"   :inherited-members: {', '.join(plain)}")
        return [*lines, ""]
    if inspect.ismethod(obj):
        # autodoc drops the first parameter of a bound method once more.
        return [f".. autofunction:: {modname}.{name}{_plain_signature(obj)}", ""]
    return [f".. autofunction:: {modname}.{name}", ""]


def _mirrored_rst(modname: str, name: str, obj: object) -> list[str]:
    """Document a name the backend offers, linking to the Python docs."""
    backend = BACKENDS[modname]
    upstream = PYTHON_DOC_NAMES.get(name, f"multiprocessing.{name}")
    if name in UNDOCUMENTED_UPSTREAM:
        see = f"As ``{backend}.{name}`` (not described in the Python documentation)."
    elif backend == "multiprocessing":
        see = f"As :py:obj:`{upstream}`."
    else:
        see = f"As ``multiprocess.{name}``, which mirrors :py:obj:`{upstream}`."
    is_exception = isinstance(obj, type) and issubclass(obj, BaseException)
    if is_exception:
        directive = f".. py:exception:: {name}"
    elif callable(obj):
        directive = f".. py:function:: {name}{_plain_signature(obj)}"
    else:
        directive = f".. py:data:: {name}"
        see += f" The value is ``{_escape(getattr(obj, '__name__', repr(obj)))}``."
    lines = [directive, "", f"   {see}"]
    summary = _summary(obj) if callable(obj) and not is_exception else ""
    if summary:
        lines += ["", f"   Backend docstring: {summary}"]
    return [*lines, ""]


def namespace_rst(modname: str) -> list[str]:
    """Return the reST that documents every public name of *modname*."""
    module = importlib.import_module(modname)
    names = sorted(module.__all__)
    by_id: dict[int, list[str]] = {}
    for name in names:
        by_id.setdefault(id(getattr(module, name)), []).append(name)
    own = [n for n in names if _is_own(getattr(module, n))]
    mirrored = [n for n in names if n not in own]

    lines = [f".. py:module:: {modname}", "", ".. rubric:: safeproc's own names", ""]
    for name in own:
        lines += _own_rst(module, name, by_id[id(getattr(module, name))])
    lines += [
        ".. rubric:: The multiprocessing API",
        "",
        (
            f"These names behave as :py:mod:`{BACKENDS[modname]}`'s own. The callables are "
            "bound to safeproc's safe default context, so processes they start (a "
            "``Manager``'s server, for one) are safe processes; classes and exceptions are "
            "the backend's."
        ),
        "",
    ]
    for name in mirrored:
        lines += _mirrored_rst(modname, name, getattr(module, name))
    return lines


class SafeprocNamespace(SphinxDirective):
    """``.. safeproc-namespace:: <module>``."""

    required_arguments = 1
    has_content = False

    def run(self) -> list[nodes.Node]:
        modname = self.arguments[0]
        lines = namespace_rst(modname)
        container = nodes.section()
        container.document = self.state.document
        self.state.nested_parse(StringList(lines, source=f"<{modname} namespace>"), 0, container)
        return list(container.children)


def _public_targets() -> dict[str, str]:
    """Map ``safeproc._x.Name`` (an object's own path) to its public name."""
    targets: dict[str, str] = {}
    for modname in reversed(API_MODULES):  # the primary module wins
        module = importlib.import_module(modname)
        for name in module.__all__:
            obj = getattr(module, name)
            if _is_own(obj) and inspect.isclass(obj):
                targets[f"{obj.__module__}.{obj.__qualname__}"] = f"{modname}.{name}"
    # Process/Pool are the same objects as SafeProcess/SafePool: prefer Safe*.
    for modname in reversed(API_MODULES):
        module = importlib.import_module(modname)
        for name in ("SafeProcess", "SafePool"):
            obj = getattr(module, name)
            targets[f"{obj.__module__}.{obj.__qualname__}"] = f"{modname}.{name}"
    return targets


def _resolve_private(
    app: Sphinx, env: BuildEnvironment, node: pending_xref, contnode: Element
) -> Element | None:
    if node.get("refdomain") != "py":
        return None
    target = node.get("reftarget", "")
    public = _public_targets().get(target)
    if public is None:
        return None
    domain = env.get_domain("py")
    return domain.resolve_xref(
        env, node.get("refdoc", ""), app.builder, node["reftype"], public, node, contnode
    )


def _check_coverage(app: Sphinx, env: BuildEnvironment) -> None:  # noqa: ARG001
    documented = set(env.get_domain("py").objects)
    for modname in API_MODULES:
        module = importlib.import_module(modname)
        for name in module.__all__:
            if f"{modname}.{name}" not in documented:
                logger.warning("public name %s.%s has no API reference entry", modname, name)


def setup(app: Sphinx) -> dict[str, Any]:
    """Register the directive, the private-path resolver and the check."""
    app.add_directive("safeproc-namespace", SafeprocNamespace)
    app.connect("missing-reference", _resolve_private)
    app.connect("env-check-consistency", _check_coverage)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
