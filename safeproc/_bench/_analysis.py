"""Analysis: raw worker results turned into table rows with ratios, then verdicts."""

from __future__ import annotations

from typing import Any

from safeproc._bench._config import BACKENDS, POOL_TASKS
from safeproc._bench._stats import ratio, ratio_ci, relative_spread
from safeproc._bench._verdicts import judge

__all__ = ["analyse"]


def analyse(data: dict[str, Any]) -> dict[str, Any]:
    """Turn raw worker results into table rows, ratios and verdicts."""
    latency_rows: list[dict[str, Any]] = []
    cleanup_rows: list[dict[str, Any]] = []
    memory_rows: list[dict[str, Any]] = []
    for heap_result in data["heaps"]:
        heap = heap_result["heap"]
        for method, cell in heap_result["methods"].items():
            lat = cell["latency"]
            for backend in BACKENDS:
                plain, safe, naive = (lat[f"{backend}/{k}"] for k in ("plain", "safe", "naive"))
                latency_rows.append(
                    {
                        "method": method,
                        "heap": heap,
                        "backend": backend,
                        "plain": plain,
                        "safe": safe,
                        "naive": naive,
                        "safe_over_plain": ratio(safe, plain),
                        "safe_over_plain_ci95": ratio_ci(safe, plain),
                        "naive_over_safe": ratio(naive, safe),
                        "plain_spread": relative_spread(plain),
                    }
                )
                if "cleanup_seconds" not in cell:
                    continue
                cs = cell["cleanup_seconds"]
                cleanup_rows.append(
                    {
                        "method": method,
                        "heap": heap,
                        "backend": backend,
                        "safe_start": cs[f"{backend}/start"],
                        "safe_exit": cs[f"{backend}/exit"],
                        "safe_gc_step": cs[f"{backend}/gc"],
                        "safe_total": cs[f"{backend}/total"],
                        "naive_gc": cs[f"{backend}/naive"],
                        "naive_over_safe": ratio(cs[f"{backend}/naive"], cs[f"{backend}/total"]),
                        "safe_steps": {
                            label.split("/", 1)[1]: value
                            for label, value in cell.get("step_seconds", {}).items()
                            if label.startswith(f"{backend}/")
                        },
                    }
                )
                mem = cell["memory_kib"]
                row = {
                    "method": method,
                    "heap": heap,
                    "backend": backend,
                    "plain": mem[f"{backend}/plain"],
                    "safe": mem[f"{backend}/safe"],
                    "safe_report": mem[f"{backend}/safe-report"],
                    "naive": mem[f"{backend}/naive"],
                }
                p, s = row["plain"].get("median"), row["safe"].get("median")
                row["safe_minus_plain"] = None if p is None or s is None else s - p
                memory_rows.append(row)
    pool_rows: list[dict[str, Any]] = []
    for method, cell in (data.get("pool") or {}).items():
        for backend in BACKENDS:
            plain_map, safe_map = (cell["map_seconds"][f"{backend}/{k}"] for k in ("plain", "safe"))
            plain_one, safe_one = (
                cell["map_chunksize1_seconds"][f"{backend}/{k}"] for k in ("plain", "safe")
            )
            plain_life, safe_life = (
                cell["lifecycle_seconds"][f"{backend}/{k}"] for k in ("plain", "safe")
            )
            plain_tput = safe_tput = None
            if plain_map.get("median") and safe_map.get("median"):
                plain_tput = POOL_TASKS / plain_map["median"]
                safe_tput = POOL_TASKS / safe_map["median"]
            pool_rows.append(
                {
                    "method": method,
                    "backend": backend,
                    "plain_map": plain_map,
                    "safe_map": safe_map,
                    "plain_tasks_per_second": plain_tput,
                    "safe_tasks_per_second": safe_tput,
                    "throughput_safe_over_plain": ratio(plain_map, safe_map),
                    "throughput_safe_over_plain_ci95": ratio_ci(plain_map, safe_map),
                    "plain_map_chunksize1": plain_one,
                    "safe_map_chunksize1": safe_one,
                    "chunk1_safe_over_plain": ratio(plain_one, safe_one),
                    "chunk1_safe_over_plain_ci95": ratio_ci(plain_one, safe_one),
                    "plain_lifecycle": plain_life,
                    "safe_lifecycle": safe_life,
                    "lifecycle_safe_over_plain": ratio(safe_life, plain_life),
                }
            )
    terminate_rows: list[dict[str, Any]] = []
    term = data.get("terminate") or {}
    for key, value in term.items():
        if key == "deadline":
            continue
        method, backend, kind = key.split("/")
        runs = value["runs"]
        terminate_rows.append(
            {
                "method": method,
                "backend": backend,
                "kind": kind,
                "deadline": term.get("deadline"),
                "seconds": value["seconds"],
                "hung": sum(bool(r.get("hung")) for r in runs),
                "runs": len(runs),
                "exitcodes": sorted({c for r in runs for c in r["exitcodes"] if c is not None}),
                "workers": sum(len(r["exitcodes"]) for r in runs),
                "busy_workers": sum(r.get("busy_workers", 0) for r in runs),
                "reports": sum(r.get("reports", 0) for r in runs),
                "sigterm_reports": sum(r.get("sigterm_reports", 0) for r in runs),
            }
        )
    analysis: dict[str, Any] = {
        "latency": latency_rows,
        "cleanup": cleanup_rows,
        "memory": memory_rows,
        "pool": pool_rows,
        "terminate": terminate_rows,
    }
    analysis["verdicts"] = judge(analysis)
    return analysis
