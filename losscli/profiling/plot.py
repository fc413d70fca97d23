"""Scaling plots for profile reports: time and peak memory against C (log axes)."""

from __future__ import annotations

import os
from typing import Any


def plot_scaling(report: dict[str, Any], path: str) -> str:
    """Two panels, total ms and peak MB against C, one line per (loss, N, dtype, compiled)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series: dict[tuple, list[dict]] = {}
    for r in report["rows"]:
        series.setdefault((r["loss"], r["n"], r["dtype"], r["compiled"]), []).append(r)
    multi_n = len({k[1] for k in series}) > 1
    multi_dt = len({k[2] for k in series}) > 1
    fig, (ax_t, ax_m) = plt.subplots(1, 2, figsize=(12, 5))
    for (loss, n, dt, comp), rows in sorted(series.items(), key=lambda kv: (str(kv[0][0]), kv[0][1], str(kv[0][2]), kv[0][3])):
        rows = sorted(rows, key=lambda r: r["c"])
        label = loss + (f" N={n}" if multi_n else "") + (f" {dt}" if multi_dt else "") + (" compiled" if comp else "")
        cs = [r["c"] for r in rows]
        ax_t.plot(cs, [r["total_ms"] for r in rows], marker="o", label=label)
        mem = [(r["c"], r["peak_mb"]) for r in rows if r.get("peak_mb")]
        if mem:
            ax_m.plot([m[0] for m in mem], [m[1] for m in mem], marker="o", label=label)
    device = report.get("env", {}).get("device_name", "")
    for ax, ylabel in ((ax_t, "forward+backward time (ms, median)"), (ax_m, "peak memory (MB)")):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("number of classes C")
        ax.set_ylabel(ylabel)
        ax.grid(True, which="both", alpha=0.3)
    ax_t.legend(fontsize=7, ncol=2)
    fig.suptitle(f"loss cost vs C ({device})")
    fig.tight_layout()
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
