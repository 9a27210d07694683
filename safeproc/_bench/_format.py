"""How figures are written: milliseconds, KiB, heap sizes, ratios and intervals."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ["fmt_ci", "fmt_heap", "fmt_kib", "fmt_ms", "fmt_ratio"]


def fmt_ms(seconds: float | None) -> str:
    if seconds is None:
        return "n/a"
    ms = seconds * 1e3
    if ms >= 100:  # noqa: PLR2004 - display precision
        return f"{ms:.0f}"
    if ms >= 10:  # noqa: PLR2004
        return f"{ms:.1f}"
    if ms >= 1:
        return f"{ms:.2f}"
    return f"{ms:.3f}"


def fmt_kib(value: float | None) -> str:
    return "n/a" if value is None else f"{value:,.0f}"


def fmt_heap(heap: int) -> str:
    if heap >= 1_000_000:  # noqa: PLR2004 - display units
        return f"{heap / 1e6:g}M"
    if heap >= 1_000:  # noqa: PLR2004
        return f"{heap / 1e3:g}k"
    return str(heap)


def fmt_ratio(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def fmt_ci(ci: Sequence[float] | None) -> str:
    return "n/a" if ci is None else f"{ci[0]:.2f}-{ci[1]:.2f}"
