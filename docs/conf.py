"""Sphinx configuration for the safeproc documentation.

Built by ``nox -s docs`` (and by Read the Docs, ``.readthedocs.yaml``):
nitpicky, warnings as errors, then the doctest builder. The support table
uses the results of ``nox -s tests`` where present, else those committed in
``_data/test-results/`` (``_ext/support_results.py``). No network: the
Python inventory for intersphinx is written locally by
``_ext/python_inventory.py``.
"""

from __future__ import annotations

import sys
import typing
from pathlib import Path

import typing_extensions

DOCS = Path(__file__).resolve().parent
sys.path.insert(0, str(DOCS / "_ext"))

from python_inventory import BASE_URL, write_inventory  # noqa: E402

import safeproc  # noqa: E402 - after the path set-up above
from safeproc import _policy  # noqa: E402

# _policy declares its typing names for the type checker only (a spawned
# child imports it, and typing with it would cost every child milliseconds):
# the reference shows the annotations as the checker sees them.
_policy.__dict__.update(
    Any=typing.Any,
    ClassVar=typing.ClassVar,
    Never=typing_extensions.Never,
    Self=typing_extensions.Self,
    StdioMode=typing.Literal[_policy._CHOICES["stdio"]],
    SigtermMode=typing.Literal[_policy._CHOICES["sigterm"]],
)

project = "safeproc"
author = "safeproc developers"
copyright = "safeproc developers"
release = safeproc.__version__
version = ".".join(release.split(".")[:2])

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.doctest",
    "sphinx.ext.intersphinx",
    "myst_parser",
    "safeproc_api",
    "support_table",
]
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
exclude_patterns = ["_build", "_inventories", "examples", "Thumbs.db", ".DS_Store"]
root_doc = "index"
nitpicky = True
nitpick_ignore_regex = [
    # multiprocess publishes no API reference (it mirrors multiprocessing's):
    # names of the dill backend stay plain text.
    ("py:.*", r"multiprocess(\..*)?"),
    # Docstrings may point at a private module's source for the mechanism;
    # private modules are not part of the reference.
    ("py:mod", r"safeproc\._\w+"),
]

# -- intersphinx: a local inventory, real docs.python.org links -------------------
intersphinx_mapping = {
    "python": (BASE_URL, str(write_inventory(DOCS / "_inventories" / "python.inv"))),
}
intersphinx_timeout = 5

# -- autodoc ------------------------------------------------------------------------
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_typehints_description_target = "documented_params"
autodoc_preserve_defaults = True

# -- doctest ------------------------------------------------------------------------
# Examples that start processes are real programs under docs/examples/: the
# pages show them with literalinclude and the doctests run them.
doctest_global_setup = f"""
import sys as _sys
_sys.path.insert(0, {str(DOCS / "examples")!r})
from _runner import example_result, run_example
from safeproc import CleanupPolicy, CleanupReport, StepReport  # docstring examples
"""

# -- HTML ---------------------------------------------------------------------------
html_theme = "furo"
html_title = f"safeproc {release}"
html_static_path = ["_static"]
myst_enable_extensions = ["colon_fence"]
