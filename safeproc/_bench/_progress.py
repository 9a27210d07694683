"""Progress of a bench run, on stderr."""

from __future__ import annotations

import sys
import time

__all__ = ["Progress"]


class Progress:
    """One updating line on a terminal, milestone lines elsewhere (stderr)."""

    def __init__(self) -> None:
        self.tty = sys.stderr.isatty()
        self.started = time.monotonic()

    def step(self, label: str, done: int, total: int) -> None:
        if self.tty:
            elapsed = time.monotonic() - self.started
            sys.stderr.write(f"\r\x1b[K[{elapsed:5.1f}s] {label} {done}/{total}")
            sys.stderr.flush()

    def line(self, text: str) -> None:
        elapsed = time.monotonic() - self.started
        prefix = "\r\x1b[K" if self.tty else ""
        sys.stderr.write(f"{prefix}[{elapsed:5.1f}s] {text}\n")
        sys.stderr.flush()
