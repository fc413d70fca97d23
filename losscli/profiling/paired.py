"""Paired timing: a loss's cost as a ratio to a baseline measured pass by pass in the same run.

The one measuring implementation behind ``losscli profile`` and ``benchmarks/bench_losses.py``.
Timing a baseline once and each loss later (unpaired) lets background load, thread-pool and cache
state, and CPU frequency changes land on one side of a ratio: on a shared 2-core machine that
reported gce at 0.41x and focal at 3.85x cross-entropy's cost. Here:

- both sides are warmed up (``warmup`` passes each, interleaved) before anything is timed;
- timed passes alternate baseline, candidate, baseline, candidate, ... so each ratio compares two
  passes made a few milliseconds apart, under the same load;
- the ratio reported is the median of the per-pass ratios, with its p20/p80; ``spread`` is
  ``(p80 - p20) / median``. When it exceeds ``SPREAD_LIMIT`` the machine was too noisy during
  the measurement for the ratio to be trusted, and ``trusted`` is False (callers warn).
"""

from __future__ import annotations

from typing import Any, Callable

import torch

from losscli.profiling.timing import summarise, time_callable

#: (p80 - p20) / median of the per-pass ratios above which a ratio is not to be trusted
SPREAD_LIMIT = 0.25


class Timed:
    """One side of a pair: ``forward()`` returns a scalar to call ``backward()`` on; ``clear()``
    resets the inputs' gradients (outside the timed region)."""

    def __init__(self, forward: Callable[[], torch.Tensor], clear: Callable[[], None]):
        self.forward = forward
        self.clear = clear

    def once(self, device: torch.device) -> dict[str, float]:
        return time_callable(self.forward, self.clear, device, 1, 0)


def ratio_summary(ratios: list[float]) -> dict[str, Any]:
    """Median, p20, p80, min and spread of per-pass ratios, and whether the spread is small enough to trust."""
    r = summarise(ratios)
    spread = (r["p80"] - r["p20"]) / r["median"] if r["median"] > 0 else float("inf")
    return {"ratio": r["median"], "ratio_p20": r["p20"], "ratio_p80": r["p80"], "ratio_min": min(ratios),
            "ratio_spread": spread, "trusted": bool(spread <= SPREAD_LIMIT)}


def measure_paired(baseline: Timed, candidate: Timed, device: torch.device, repeats: int,
                   warmup: int) -> dict[str, Any]:
    """Interleaved, warmed, paired forward+backward timing of ``candidate`` against ``baseline``.

    Returns the candidate's forward/backward/total medians (with total p20/p80), the baseline's
    total median, and ``ratio_summary`` of the per-pass ratios candidate / baseline.
    """
    if repeats < 1 or warmup < 0:
        raise ValueError("repeats must be >= 1 and warmup >= 0")
    for _ in range(warmup):
        baseline.once(device)
        candidate.once(device)
    base_ms, cand, ratios = [], [], []
    for _ in range(repeats):
        a = baseline.once(device)
        b = candidate.once(device)
        base_ms.append(a["total_ms"])
        cand.append(b)
        ratios.append(b["total_ms"] / a["total_ms"] if a["total_ms"] > 0 else float("inf"))
    tot = summarise([t["total_ms"] for t in cand])
    return {
        "forward_ms": summarise([t["forward_ms"] for t in cand])["median"],
        "backward_ms": summarise([t["backward_ms"] for t in cand])["median"],
        "total_ms": tot["median"], "total_ms_p20": tot["p20"], "total_ms_p80": tot["p80"],
        "baseline_ms": summarise(base_ms)["median"],
        **ratio_summary(ratios),
    }


def spread_warning(rows: list[dict[str, Any]]) -> str | None:
    """One line naming the rows whose ratio spread is too wide to trust (None when every ratio is trusted)."""
    bad = [r for r in rows if r.get("ratio_trusted") is False]
    if not bad:
        return None
    shown = ", ".join(f"{r['loss']} n={r['n']} c={r['c']} ({r['overhead_p20']:.2f}-{r['overhead_p80']:.2f}x)"
                      for r in bad[:4])
    more = f" and {len(bad) - 4} more" if len(bad) > 4 else ""
    return (f"warning: {len(bad)} of {len(rows)} ratios vs ce vary too much between paired passes to trust "
            f"(p20-p80 wider than {SPREAD_LIMIT:.0%} of the median): {shown}{more}; rerun with more --repeats "
            "on a quieter machine")
