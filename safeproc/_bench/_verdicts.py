"""Verdicts: each target met, missed, or not measured, and by how much."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from safeproc._bench._config import (
    BIG_HEAP,
    TARGET_CLEANUP_4M_SECONDS,
    TARGET_CLEANUP_NAIVE_FACTOR,
    TARGET_EXTRA_PRIVATE_KIB,
    TARGET_LATENCY_EMPTY,
    TARGET_LATENCY_FORK_4M,
    TARGET_POOL_THROUGHPUT,
    TARGET_TERMINATE_MARGIN,
)
from safeproc._bench._format import fmt_ci, fmt_heap, fmt_kib, fmt_ms, fmt_ratio

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ["Verdict", "judge"]


@dataclass
class Verdict:
    """One target: met, missed, or not measured in this run."""

    target: str
    status: str  # "met", "missed", "not measured", "not verified"
    detail: str
    #: A few words naming the target, for the summary.
    name: str = ""
    #: The figure that decided the verdict, and the limit, in a few words.
    measured: str = "-"

    def line(self) -> str:
        """Return the verdict with every figure behind it, on one line."""
        return f"{self.status.upper():>12}  {self.target}: {self.detail}"


def _noise_note(
    estimates: Sequence[tuple[float | None, Sequence[float] | None]], limit: float, *, upper: bool
) -> str:
    """Say when noise alone could flip a verdict (a 95% CI reaching the limit).

    *upper*: the limit is a maximum (ratios must stay below it).
    """
    flips = []
    for value, ci in estimates:
        if value is None or ci is None:
            continue
        missed = value > limit if upper else value < limit
        reaches = ci[0] <= limit if upper else ci[1] >= limit
        if missed and reaches:
            flips.append("a miss")
        reaches = ci[1] >= limit if upper else ci[0] <= limit
        if not missed and reaches:
            flips.append("a pass")
    if not flips:
        return ""
    kinds = " and ".join(sorted(set(flips)))
    return f"; noise: {kinds} whose 95% CI reaches the limit"


def judge(a: dict[str, Any]) -> list[Verdict]:  # noqa: C901, PLR0912, PLR0915 - one per target
    verdicts: list[Verdict] = []

    def latency_target(method: str, heap: int, limit: float, label: str) -> None:
        rows = [r for r in a["latency"] if r["method"] == method and r["heap"] == heap]
        target = f"latency safe/plain, {label} <= {limit:.2f}"
        name = f"start->join, {label}"
        if not rows:
            verdicts.append(Verdict(target, "not measured", "not in this profile", name))
            return
        worst = max((r["safe_over_plain"] or math.inf) for r in rows)
        parts = ", ".join(
            f"{r['backend']} {fmt_ratio(r['safe_over_plain'])}"
            f" (95% CI {fmt_ci(r['safe_over_plain_ci95'])};"
            f" {fmt_ms(r['safe']['median'])} vs {fmt_ms(r['plain']['median'])} ms)"
            for r in rows
        )
        note = _noise_note(
            [(r["safe_over_plain"], r["safe_over_plain_ci95"]) for r in rows], limit, upper=True
        )
        measured = f"safe/plain {fmt_ratio(worst)}; target <= {limit:.2f}"
        if worst <= limit:
            verdicts.append(Verdict(target, "met", parts + note, name, measured))
        else:
            detail = f"{parts}; over by {worst - limit:.3f}{note}"
            verdicts.append(Verdict(target, "missed", detail, name, measured))

    for method in ("fork", "forkserver", "spawn"):
        latency_target(method, 0, TARGET_LATENCY_EMPTY[method], f"{method}, empty heap")
    latency_target("fork", BIG_HEAP, TARGET_LATENCY_FORK_4M, "fork, 4M objects")

    rows = [r for r in a["cleanup"] if r["heap"] == BIG_HEAP and r["method"] == "fork"]
    target = (
        f"cleanup in the child at 4M objects (fork) <= {TARGET_CLEANUP_4M_SECONDS * 1e3:.0f} ms"
        f" and >= {TARGET_CLEANUP_NAIVE_FACTOR:.0f}x below naive gc.collect()"
    )
    name = "cleanup in the child, fork, 4M objects"
    if not rows:
        verdicts.append(Verdict(target, "not measured", "not in this profile", name))
    else:
        ok = True
        parts = []
        for r in rows:
            total, factor = r["safe_total"]["median"], r["naive_over_safe"]
            ok = ok and total is not None and total <= TARGET_CLEANUP_4M_SECONDS
            ok = ok and factor is not None and factor >= TARGET_CLEANUP_NAIVE_FACTOR
            parts.append(
                f"{r['backend']} {fmt_ms(total)} ms (start {fmt_ms(r['safe_start']['median'])},"
                f" exit steps {fmt_ms(r['safe_exit']['median'])}, gc step"
                f" {fmt_ms(r['safe_gc_step']['median'])})"
                f" vs naive {fmt_ms(r['naive_gc']['median'])} ms = {fmt_ratio(factor)}x"
            )
        slowest = max((r["safe_total"]["median"] or math.inf) for r in rows)
        least = min((r["naive_over_safe"] or 0.0) for r in rows)
        measured = (
            f"{fmt_ms(slowest)} ms, {least:.0f}x below naive; target"
            f" <= {TARGET_CLEANUP_4M_SECONDS * 1e3:.0f} ms, >= {TARGET_CLEANUP_NAIVE_FACTOR:.0f}x"
        )
        status = "met" if ok else "missed"
        verdicts.append(Verdict(target, status, "; ".join(parts), name, measured))

    target = f"extra private memory per child (safe - plain) <= {TARGET_EXTRA_PRIVATE_KIB} KiB"
    mem = [r for r in a["memory"] if r["safe_minus_plain"] is not None]
    name = "extra private memory per child"
    if not mem:
        verdicts.append(Verdict(target, "not measured", "no /proc and no psutil", name))
    else:
        parts = []
        for method in dict.fromkeys(r["method"] for r in mem):
            row = max(
                (r for r in mem if r["method"] == method), key=lambda r: r["safe_minus_plain"]
            )
            parts.append(
                f"{method} worst {row['safe_minus_plain']:+,.0f} KiB"
                f" (heap {fmt_heap(row['heap'])}, {row['backend']};"
                f" naive {fmt_kib(row['naive']['median'])} KiB)"
            )
        worst = max(r["safe_minus_plain"] for r in mem)
        status = "met" if worst <= TARGET_EXTRA_PRIVATE_KIB else "missed"
        measured = f"safe-plain {worst:+,.0f} KiB; target <= {TARGET_EXTRA_PRIVATE_KIB:,} KiB"
        verdicts.append(Verdict(target, status, "; ".join(parts), name, measured))

    target = f"Pool.map throughput safe/plain >= {TARGET_POOL_THROUGHPUT:.2f}"
    name = "Pool.map throughput"
    if not a["pool"]:
        verdicts.append(Verdict(target, "not measured", "the pool worker failed", name))
    else:
        measures = [
            (r, size, r[f"{key}_safe_over_plain"], r[f"{key}_safe_over_plain_ci95"])
            for r in a["pool"]
            for key, size in (("throughput", "default chunksize"), ("chunk1", "chunksize=1"))
        ]
        measures = [m for m in measures if m[2] is not None]
        worst = min((m[2] for m in measures), default=0.0)
        detail = ", ".join(
            f"{r['method']} {r['backend']} {size} {fmt_ratio(ratio)} (95% CI {fmt_ci(ci)})"
            for r, size, ratio, ci in measures
        )
        detail += _noise_note([(m[2], m[3]) for m in measures], TARGET_POOL_THROUGHPUT, upper=False)
        status = "met" if worst >= TARGET_POOL_THROUGHPUT else "missed"
        measured = f"safe/plain {fmt_ratio(worst)}; target >= {TARGET_POOL_THROUGHPUT:.2f}"
        verdicts.append(Verdict(target, status, detail, name, measured))

    target = (
        f'busy-pool terminate() with sigterm="cleanup" returns within deadline'
        f" + {TARGET_TERMINATE_MARGIN * 1e3:.0f} ms"
    )
    safe_rows = [r for r in a["terminate"] if r["kind"] == "safe"]
    name = 'terminate() of a busy pool, sigterm="cleanup"'
    if not safe_rows:
        verdicts.append(Verdict(target, "not measured", "the terminate worker failed", name))
    else:
        parts = []
        status = "met"
        for r in safe_rows:
            limit = r["deadline"] + TARGET_TERMINATE_MARGIN
            slowest = r["seconds"].get("max")
            parts.append(
                f"{r['method']} {r['backend']} max {fmt_ms(slowest)} ms (limit {fmt_ms(limit)}),"
                f" exit codes {r['exitcodes']}, cleanup ran in"
                f" {r['sigterm_reports']}/{r['workers']} workers"
            )
            if r["busy_workers"] < r["workers"]:
                parts.append(f"only {r['busy_workers']}/{r['workers']} workers were busy")
            if r["hung"] or slowest is None or slowest > limit:
                status = "missed"
            elif r["sigterm_reports"] == 0 and status == "met":
                status = "not verified"
        if status == "not verified":
            parts.append("no worker reported a SIGTERM cleanup: is sigterm='cleanup' in place?")
        slowest = max((r["seconds"].get("max") or math.inf) for r in safe_rows)
        limit = max(r["deadline"] for r in safe_rows) + TARGET_TERMINATE_MARGIN
        measured = f"slowest {fmt_ms(slowest)} ms; target <= {fmt_ms(limit)} ms"
        verdicts.append(Verdict(target, status, "; ".join(parts), name, measured))
    return verdicts
