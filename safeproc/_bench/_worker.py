"""The entry point of a bench worker interpreter (``python -c``)."""

from __future__ import annotations

import json
import sys
import warnings
from typing import TYPE_CHECKING

from safeproc._bench._pools import pool_cell, terminate_cell
from safeproc._bench._probes import failures, heap_cell
from safeproc._bench._progress import Progress

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ["run_worker"]


def run_worker(argv: Sequence[str] | None = None) -> int:
    """Entry point of a bench worker interpreter (``python -c``)."""
    args = sys.argv[1:] if argv is None else list(argv)
    with open(args[0], encoding="utf-8") as f:
        cfg = json.load(f)
    # Pool workers are forked while the pool's threads run: on 3.12+ each
    # fork warns, which every pool user sees too; it is noise here.
    warnings.filterwarnings("ignore", message=r"This process .* is multi-threaded")
    progress = Progress()
    progress.started = cfg["started"]
    kind = cfg["kind"]
    if kind == "heap":
        result = heap_cell(cfg, progress)
    elif kind == "pool":
        result = pool_cell(cfg, progress)
    else:
        result = terminate_cell(cfg, progress)
    result["failures"] = failures
    with open(cfg["result_path"], "w", encoding="utf-8") as f:
        json.dump(result, f)
    return 0
