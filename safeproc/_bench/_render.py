"""The report: tables and verdicts as text, and everything as JSON."""

from __future__ import annotations

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

__all__ = ["render", "to_json"]


def _spread_ms(stats: dict[str, Any]) -> str:
    if stats.get("median") is None:
        return "n/a"
    return f"{fmt_ms(stats['median'])} [{fmt_ms(stats['p25'])}-{fmt_ms(stats['p75'])}]"


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=False))]
    lines.append("  ".join("-" * w for w in widths))
    lines.extend("  ".join(c.rjust(w) for c, w in zip(row, widths, strict=False)) for row in rows)
    return "\n".join(lines)


def render(data: dict[str, Any], analysis: dict[str, Any]) -> str:
    """Render the human-readable report."""
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
    out.append(_table(["method", "heap", "backend", *names], rows))
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
    out.append(_table(["method", "heap", "backend", "plain", "safe", "naive", "safe-plain"], rows))
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
            )
        )
    out += ["", "Targets (issue 6):"]
    out += [v.line() for v in analysis["verdicts"]]
    if data["errors"]:
        out += ["", "Errors:", *(f"  {e}" for e in data["errors"])]
    return "\n".join(out)


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
            {"target": v.target, "status": v.status, "detail": v.detail}
            for v in analysis["verdicts"]
        ],
        "errors": data["errors"],
        # What the workers measured, before analysis: enough to redo it.
        "raw": {k: v for k, v in data.items() if k != "facts"},
    }
