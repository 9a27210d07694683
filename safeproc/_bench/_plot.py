"""Cost against inherited heap size, drawn with matplotlib (the optional "plot" extra)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from safeproc._bench._config import BACKENDS
from safeproc._bench._format import fmt_heap

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ["plot"]


def _plot_panel(  # noqa: PLR0913 - one panel, its inputs
    ax: Any,  # noqa: ANN401 - a matplotlib Axes
    rows: list[dict[str, Any]],
    lines: Sequence[tuple[str, str, str, str]],
    *,
    heaps: list[int],
    scale: float,
    title: str,
    unit: str,
) -> None:
    """Draw one (key, method, style, label) line per backend against heap size."""
    for key, method, style, label in lines:
        for backend in BACKENDS:
            picked = sorted(
                (r for r in rows if r["method"] == method and r["backend"] == backend),
                key=lambda r: r["heap"],
            )
            if not picked:
                continue
            xs = [heaps.index(r["heap"]) for r in picked]  # evenly spaced sizes
            ys = [max((r[key]["median"] or 0.0) * scale, 0.01) for r in picked]
            ax.plot(xs, ys, style, label=f"{label} ({backend})")
    ax.set(yscale="log", xlabel="inherited heap, objects", ylabel=unit, title=title)
    ax.set_xticks(range(len(heaps)), [fmt_heap(h) for h in heaps])
    ax.legend(fontsize="small")


def plot(data: dict[str, Any], analysis: dict[str, Any], path: str) -> None:
    """Cost against inherited heap size, in a PNG (needs matplotlib)."""
    import matplotlib as mpl  # noqa: PLC0415 - optional extra "plot"

    mpl.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.5), constrained_layout=True)
    heaps = sorted({r["heap"] for r in analysis["latency"]})
    by_kind = [
        ("plain", "fork", "o-", "plain"),
        ("safe", "fork", "s-", "safe"),
        ("naive", "fork", "^--", "naive"),
    ]
    _plot_panel(
        axes[0],
        analysis["latency"],
        by_kind,
        heaps=heaps,
        scale=1e3,
        title="fork: start->join latency",
        unit="ms",
    )
    cleanup_lines = [
        ("safe_total", "fork", "s-", "safe fork"),
        ("naive_gc", "fork", "^--", "naive fork"),
        ("safe_total", "forkserver", "s:", "safe forkserver"),
        ("naive_gc", "forkserver", "^:", "naive forkserver"),
    ]
    _plot_panel(
        axes[1],
        analysis["cleanup"],
        cleanup_lines,
        heaps=heaps,
        scale=1e3,
        title="cleanup inside the child",
        unit="ms",
    )
    _plot_panel(
        axes[2],
        analysis["memory"],
        by_kind,
        heaps=heaps,
        scale=1 / 1024,
        title="fork: private memory added by exit",
        unit="MiB",
    )
    facts = data["facts"]
    fig.suptitle(
        f"safeproc bench, Python {facts['python_version']}, {facts['cpu_count']} CPUs,"
        f" {facts['date'][:10]} (medians)"
    )
    fig.savefig(path, dpi=100)
    plt.close(fig)
