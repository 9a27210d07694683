"""Statistics: medians and spreads of samples, ratios of medians and their intervals."""

from __future__ import annotations

import math
import random
import statistics
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ["quantile", "ratio", "ratio_ci", "relative_spread", "summarize"]


def quantile(sorted_values: Sequence[float], q: float) -> float:
    """Linear-interpolated quantile of already sorted values."""
    if not sorted_values:
        return math.nan
    pos = (len(sorted_values) - 1) * q
    low = math.floor(pos)
    high = math.ceil(pos)
    return sorted_values[low] + (sorted_values[high] - sorted_values[low]) * (pos - low)


def summarize(samples: Sequence[float]) -> dict[str, Any]:
    """Median, spread and the samples themselves."""
    ordered = sorted(samples)
    if not ordered:
        return {"n": 0, "median": None, "p25": None, "p75": None, "min": None, "max": None}
    return {
        "n": len(ordered),
        "median": statistics.median(ordered),
        "p25": quantile(ordered, 0.25),
        "p75": quantile(ordered, 0.75),
        "min": ordered[0],
        "max": ordered[-1],
        "samples": list(samples),
    }


def ratio(numerator: dict[str, Any] | None, denominator: dict[str, Any] | None) -> float | None:
    if not numerator or not denominator:
        return None
    top, bottom = numerator.get("median"), denominator.get("median")
    if top is None or bottom is None or bottom <= 0:
        return None
    return float(top) / float(bottom)


def ratio_ci(
    numerator: dict[str, Any], denominator: dict[str, Any], resamples: int = 1000
) -> tuple[float, float] | None:
    """95% bootstrap interval of the ratio of medians: how far noise reaches."""
    top, bottom = numerator.get("samples"), denominator.get("samples")
    if not top or not bottom:
        return None
    rng = random.Random(0)  # noqa: S311 - resampling, not cryptography
    ratios = []
    for _ in range(resamples):
        low = statistics.median(rng.choices(bottom, k=len(bottom)))
        if low > 0:
            ratios.append(statistics.median(rng.choices(top, k=len(top))) / low)
    ratios.sort()
    return (quantile(ratios, 0.025), quantile(ratios, 0.975))


def relative_spread(stats: dict[str, Any]) -> float | None:
    if not stats.get("median"):
        return None
    return float(stats["p75"] - stats["p25"]) / float(stats["median"])
