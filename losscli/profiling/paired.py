"""Paired timing: a loss's cost as a ratio to a baseline measured pass by pass in the same run.

The one measuring implementation behind ``losscli profile``, ``benchmarks/bench_losses.py`` and
compare's step and loss time columns (``app/compare/step_cost.py`` times whole training steps with
``interleaved``).
Timing a baseline once and each loss later (unpaired) lets background load, thread-pool and cache
state, and CPU frequency changes land on one side of a ratio: on a shared 2-core machine that
reported gce at 0.41x and focal at 3.85x cross-entropy's cost. Here:

- both sides are warmed up (``warmup`` passes each, interleaved) before anything is timed;
- timed rounds alternate baseline, candidate, candidate, baseline, ... so each ratio compares two
  rounds made a few milliseconds apart, under the same load (and a load that rises or falls during
  the measurement lands on both sides alike); a round is one pass, or several where one pass takes
  less than ``ROUND_MS`` (small shapes, where a single pass is at the mercy of the timer);
- the ratio reported is the median of the per-round ratios, with its p20/p80; ``spread`` is
  ``(p80 - p20) / median``. When it exceeds ``SPREAD_LIMIT`` the machine was too noisy during
  the measurement for the ratio to be trusted, and ``trusted`` is False (callers warn).
"""

from __future__ import annotations

import math
from typing import Any, Callable

import torch

from losscli.profiling.timing import summarise, time_callable

#: (p80 - p20) / median of the per-pass ratios above which a ratio is not to be trusted
SPREAD_LIMIT = 0.25


#: a timed round lasts at least this long: at small shapes one pass takes ~0.1 ms, where a single pass's
#: ratio is at the mercy of the timer, the allocator and the scheduler, so a round repeats the pass
ROUND_MS = 2.0
MAX_PASSES = 64


class Timed:
    """One side of a pair: ``forward()`` returns a scalar to call ``backward()`` on; ``clear()``
    resets the inputs' gradients (outside the timed region)."""

    def __init__(self, forward: Callable[[], torch.Tensor], clear: Callable[[], None]):
        self.forward = forward
        self.clear = clear

    def once(self, device: torch.device) -> dict[str, float]:
        return time_callable(self.forward, self.clear, device, 1, 0)

    def run(self, device: torch.device, passes: int) -> dict[str, float]:
        """Forward, backward and total milliseconds per pass, averaged over ``passes`` passes."""
        times = [self.once(device) for _ in range(passes)]
        return {k: sum(t[k] for t in times) / passes for k in ("forward_ms", "backward_ms", "total_ms")}


def ratio_summary(ratios: list[float]) -> dict[str, Any]:
    """Median, p20, p80, min and spread of per-pass ratios, and whether the spread is small enough to trust."""
    r = summarise(ratios)
    spread = (r["p80"] - r["p20"]) / r["median"] if r["median"] > 0 else float("inf")
    return {"ratio": r["median"], "ratio_p20": r["p20"], "ratio_p80": r["p80"], "ratio_min": min(ratios),
            "ratio_spread": spread, "trusted": bool(spread <= SPREAD_LIMIT)}


def interleaved(run_a: Callable[[int], dict], run_b: Callable[[int], dict], repeats: int, warmup: int,
                round_ms: float = ROUND_MS) -> tuple[list[dict], list[dict], int]:
    """The paired design itself: ``warmup`` untimed single units of each side, then ``repeats`` rounds
    of ``k`` units each (``run(k)`` returns ``{"total_ms": ..., ...}`` per unit), ``k`` chosen so a round
    lasts ``round_ms``; the rounds go a, b, b, a, a, b, ... (a load that rises or falls during the
    measurement lands on both sides alike). Returns both sides' rounds and ``k``."""
    if repeats < 1 or warmup < 0:
        raise ValueError("repeats must be >= 1 and warmup >= 0")
    for _ in range(warmup):
        run_a(1)
        run_b(1)
    k = 1  # round_ms <= 0: one unit per round
    if round_ms > 0:
        one = min(run_a(1)["total_ms"], run_b(1)["total_ms"])
        k = max(1, min(MAX_PASSES, math.ceil(round_ms / max(one, 1e-3))))
    a_rounds, b_rounds = [], []
    for i in range(repeats):
        if i % 2 == 0:
            a_rounds.append(run_a(k))
            b_rounds.append(run_b(k))
        else:
            b_rounds.append(run_b(k))
            a_rounds.append(run_a(k))
    return a_rounds, b_rounds, k


def measure_paired(baseline: Timed, candidate: Timed, device: torch.device, repeats: int,
                   warmup: int, round_ms: float = ROUND_MS) -> dict[str, Any]:
    """Interleaved, warmed, paired forward+backward timing of ``candidate`` against ``baseline``
    (``interleaved``: rounds of one pass, or of several where one pass is shorter than ``round_ms``).

    Returns the candidate's per-pass forward/backward/total medians (with total p20/p80), the
    baseline's total median, ``passes`` per round, and ``ratio_summary`` of the per-round ratios
    candidate / baseline.
    """
    base, cand, k = interleaved(lambda n: baseline.run(device, n), lambda n: candidate.run(device, n),
                                repeats, warmup, round_ms)
    ratios = [b["total_ms"] / a["total_ms"] if a["total_ms"] > 0 else float("inf") for a, b in zip(base, cand)]
    tot = summarise([t["total_ms"] for t in cand])
    return {
        "forward_ms": summarise([t["forward_ms"] for t in cand])["median"],
        "backward_ms": summarise([t["backward_ms"] for t in cand])["median"],
        "total_ms": tot["median"], "total_ms_p20": tot["p20"], "total_ms_p80": tot["p80"],
        "baseline_ms": summarise([t["total_ms"] for t in base])["median"], "passes": k,
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
