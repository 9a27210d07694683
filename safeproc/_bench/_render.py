"""The report: tables and verdicts as text, and everything as JSON."""

from __future__ import annotations

import textwrap
from typing import TYPE_CHECKING, Any

from safeproc._bench._config import (
    POOL_TASKS,
    POOL_WORKERS,
    TARGET_CLEANUP_4M_SECONDS,
    TARGET_CLEANUP_NAIVE_FACTOR,
    TARGET_EXTRA_PRIVATE_KIB,
    TARGET_LATENCY_EMPTY,
    TARGET_LATENCY_FORK_4M,
    TARGET_POOL_THROUGHPUT,
    TARGET_TERMINATE_MARGIN,
    TERMINATE_DEADLINE,
)
from safeproc._bench._format import fmt_heap, fmt_kib, fmt_ms, fmt_ratio

if TYPE_CHECKING:
    from collections.abc import Sequence

    from safeproc._bench._verdicts import Verdict

__all__ = ["WIDTH", "render", "to_json"]

#: No line of the report is wider: a wider table is split into column
#: groups (each repeating the columns that name a row), longer text wraps.
WIDTH = 120
#: Where a verdict's text starts, after its right-aligned status.
_VERDICT_INDENT = " " * 14


def _spread_ms(stats: dict[str, Any]) -> str:
    if stats.get("median") is None:
        return "n/a"
    return f"{fmt_ms(stats['median'])} [{fmt_ms(stats['p25'])}-{fmt_ms(stats['p75'])}]"


def _table(
    headers: Sequence[str], rows: Sequence[Sequence[str]], *, keys: int, width: int = WIDTH
) -> str:
    """Align *rows* under *headers*; the first *keys* columns name a row.

    A table wider than *width* is printed as several, one after the other,
    each with the naming columns and as many of the others as fit.
    """
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    groups: list[list[int]] = [[]]
    used = sum(widths[:keys]) + 2 * (keys - 1)
    for column in range(keys, len(headers)):
        if groups[-1] and used + 2 + widths[column] > width:
            groups.append([])
            used = sum(widths[:keys]) + 2 * (keys - 1)
        groups[-1].append(column)
        used += 2 + widths[column]
    blocks = []
    for group in groups:
        columns = [*range(keys), *group]
        lines = ["  ".join(headers[i].ljust(widths[i]) for i in columns)]
        lines.append("  ".join("-" * widths[i] for i in columns))
        lines.extend("  ".join(row[i].rjust(widths[i]) for i in columns) for row in rows)
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


def _wrap(text: str, width: int, indent: str) -> list[str]:
    """Wrap one line to *width*; continuation lines start with *indent*."""
    if len(text) <= width:
        return [text]
    return textwrap.wrap(
        text, width, subsequent_indent=indent, break_on_hyphens=False, break_long_words=True
    )


def _glance(verdicts: Sequence[Verdict], width: int) -> list[str]:
    """One line per target: status, target, the deciding figure and its limit."""
    name_width = max((len(v.name) for v in verdicts), default=0)
    indent = " " * (2 + 12 + 2 + name_width + 2)
    lines = []
    for v in verdicts:
        line = f"  {v.status.upper():<12}  {v.name:<{name_width}}  {v.measured}"
        lines += _wrap(line, width, indent)
    return lines


def render(data: dict[str, Any], analysis: dict[str, Any], width: int = WIDTH) -> str:
    """Render the human-readable report, no line wider than *width*."""
    facts = data["facts"]
    out = [
        f"safeproc bench ({facts['profile']} profile), {facts['date']}",
        f"Python {facts['python_version']} ({facts['implementation']}), {facts['platform']},"
        f" {facts['cpu_count']} CPUs ({facts['cpu_model']}),"
        f" load average {facts['load_average_start'][0]:.2f} -> {facts['load_average_end'][0]:.2f}"
        if facts.get("load_average_start")
        else f"Python {facts['python_version']}, {facts['platform']}",
        "versions: " + ", ".join(f"{k} {v}" for k, v in facts["versions"].items() if v),
        (
            "medians [25th-75th percentile] of rounds interleaved in this run;"
            " ratios are ratios of medians"
        ),
        "",
        "Start->join latency of one process, ms (naive = plain + gc.collect() in the target)",
    ]
    rows = [
        [
            r["method"],
            fmt_heap(r["heap"]),
            r["backend"],
            _spread_ms(r["plain"]),
            _spread_ms(r["safe"]),
            _spread_ms(r["naive"]),
            fmt_ratio(r["safe_over_plain"]),
            fmt_ratio(r["naive_over_safe"]),
        ]
        for r in analysis["latency"]
    ]
    out.append(
        _table(
            ["method", "heap", "backend", "plain", "safe", "naive", "safe/plain", "naive/safe"],
            rows,
            keys=3,
            width=width,
        )
    )
    out += ["", "Cleanup phase inside the child, ms (safe: CleanupReport steps; naive: gc.collect)"]
    rows = [
        [
            r["method"],
            fmt_heap(r["heap"]),
            r["backend"],
            _spread_ms(r["safe_start"]),
            _spread_ms(r["safe_exit"]),
            _spread_ms(r["safe_gc_step"]),
            _spread_ms(r["safe_total"]),
            _spread_ms(r["naive_gc"]),
            fmt_ratio(r["naive_over_safe"]),
        ]
        for r in analysis["cleanup"]
    ]
    out.append(
        _table(
            [
                "method",
                "heap",
                "backend",
                "safe start",
                "safe exit steps",
                "(gc step)",
                "safe total",
                "naive gc",
                "naive/safe",
            ],
            rows,
            keys=3,
            width=width,
        )
    )
    names = ("start", "atexit", "finalizers", "gc", "logging", "files", "stdio")
    out += ["", "safe cleanup, median ms per CleanupReport step"]
    rows = [
        [
            r["method"],
            fmt_heap(r["heap"]),
            r["backend"],
            *(fmt_ms(r["safe_steps"][n]["median"]) if n in r["safe_steps"] else "-" for n in names),
        ]
        for r in analysis["cleanup"]
    ]
    out.append(_table(["method", "heap", "backend", *names], rows, keys=3, width=width))
    out += ["", "Private memory the child added between fork and os._exit, KiB (Private_Dirty)"]
    rows = [
        [
            r["method"],
            fmt_heap(r["heap"]),
            r["backend"],
            fmt_kib(r["plain"].get("median")),
            fmt_kib(r["safe"].get("median")),
            fmt_kib(r["naive"].get("median")),
            "n/a" if r["safe_minus_plain"] is None else f"{r['safe_minus_plain']:+,.0f}",
        ]
        for r in analysis["memory"]
    ]
    headers = ["method", "heap", "backend", "plain", "safe", "naive", "safe-plain"]
    out.append(_table(headers, rows, keys=3, width=width))
    if analysis["pool"]:
        out += [
            "",
            (
                f"Pool({POOL_WORKERS}).map(abs, range({POOL_TASKS:,})), ms: on a warm pool"
                " (default chunksize; chunksize=1), and a pool's whole life"
                " (start, map, close, join); tput = throughput"
            ),
        ]
        rows = [
            [
                r["method"],
                r["backend"],
                _spread_ms(r["plain_map"]),
                _spread_ms(r["safe_map"]),
                fmt_ratio(r["throughput_safe_over_plain"]),
                _spread_ms(r["plain_map_chunksize1"]),
                _spread_ms(r["safe_map_chunksize1"]),
                fmt_ratio(r["chunk1_safe_over_plain"]),
                _spread_ms(r["plain_lifecycle"]),
                _spread_ms(r["safe_lifecycle"]),
                fmt_ratio(r["lifecycle_safe_over_plain"]),
            ]
            for r in analysis["pool"]
        ]
        out.append(
            _table(
                [
                    "method",
                    "backend",
                    "plain map",
                    "safe map",
                    "tput safe/plain",
                    "plain chunk=1",
                    "safe chunk=1",
                    "tput safe/plain",
                    "plain life",
                    "safe life",
                    "life safe/plain",
                ],
                rows,
                keys=2,
                width=width,
            )
        )
    if analysis["terminate"]:
        out += [
            "",
            (
                "terminate() of a pool whose workers are busy, ms"
                f" (safe: sigterm='cleanup', deadline {fmt_ms(TERMINATE_DEADLINE)} ms)"
            ),
        ]
        rows = [
            [
                r["method"],
                r["backend"],
                r["kind"],
                _spread_ms(r["seconds"]),
                fmt_ms(r["seconds"].get("max")),
                " ".join(map(str, r["exitcodes"])),
                f"{r['sigterm_reports']}/{r['workers']}" if r["kind"] == "safe" else "-",
                str(r["hung"]),
            ]
            for r in analysis["terminate"]
        ]
        out.append(
            _table(
                [
                    "method",
                    "backend",
                    "pool",
                    "terminate()",
                    "max",
                    "exit codes",
                    "cleanup ran",
                    "hung",
                ],
                rows,
                keys=3,
                width=width,
            )
        )
    out += ["", "Targets, with the figures behind each verdict:"]
    for verdict in analysis["verdicts"]:
        out += _wrap(verdict.line(), width, _VERDICT_INDENT)
    out += ["", "Targets at a glance:", *_glance(analysis["verdicts"], width)]
    if data["errors"]:
        out += ["", "Errors:", *(f"  {e}" for e in data["errors"])]
    # Tables and verdicts fit already; this wraps the rest (machine facts, titles, errors).
    return "\n".join(
        wrapped for line in "\n".join(out).split("\n") for wrapped in _wrap(line, width, "    ")
    )


def to_json(data: dict[str, Any], analysis: dict[str, Any]) -> dict[str, Any]:
    """Everything: facts, raw samples, rows with ratios, verdicts (seconds, KiB)."""
    return {
        "facts": data["facts"],
        "units": {"time": "seconds", "memory": "KiB"},
        "targets": {
            "latency_empty_heap_safe_over_plain_max": TARGET_LATENCY_EMPTY,
            "latency_fork_4M_safe_over_plain_max": TARGET_LATENCY_FORK_4M,
            "cleanup_4M_seconds_max": TARGET_CLEANUP_4M_SECONDS,
            "cleanup_4M_naive_over_safe_min": TARGET_CLEANUP_NAIVE_FACTOR,
            "extra_private_kib_max": TARGET_EXTRA_PRIVATE_KIB,
            "pool_throughput_safe_over_plain_min": TARGET_POOL_THROUGHPUT,
            "terminate_over_deadline_seconds_max": TARGET_TERMINATE_MARGIN,
        },
        **{k: v for k, v in analysis.items() if k != "verdicts"},
        "verdicts": [
            {
                "target": v.target,
                "name": v.name,
                "status": v.status,
                "measured": v.measured,
                "detail": v.detail,
            }
            for v in analysis["verdicts"]
        ],
        "errors": data["errors"],
        # What the workers measured, before analysis: enough to redo it.
        "raw": {k: v for k, v in data.items() if k != "facts"},
    }
