"""From raw paired tests to decisions: correct each metric's family of comparisons (every
loss-vs-baseline comparison in the report), apply the minimum effect, name the outcome, and
estimate the seeds an inconclusive comparison would need."""

from __future__ import annotations

from typing import Any

from losscli.metrics.info import higher_is_better, metric_info
from losscli import stats

OUTCOMES = ("better", "worse", "negligible", "inconclusive", "no_data")


def min_effect_for(metric: str, min_effect_points: float) -> float:
    """The smallest difference worth acting on, in the metric's units: ``min_effect`` points for
    metrics shown in percent; none (0) for metrics in other units (NLL, Brier, ECE...)."""
    return min_effect_points / 100.0 if metric_info(metric).percent else 0.0


def decide(entries: list[dict[str, Any]], metrics: list[str], *, alpha: float, correction: str,
           min_effect: float) -> None:
    """Fill ``p_adjusted``, ``significant``, ``outcome``, ``min_effect``, ``seeds_needed`` in every
    ``vs_baseline`` of ``entries`` (all settings: the family is the whole report, per metric)."""
    for m in metrics:
        tests = [e["metrics"][m]["vs_baseline"] for e in entries if e["metrics"].get(m, {}).get("vs_baseline")]
        family = [t for t in tests if t.get("p_value") is not None]
        for t, p_adj in zip(family, stats.adjust([t["p_value"] for t in family], correction)):
            t["p_adjusted"] = p_adj
        threshold = min_effect_for(m, min_effect)
        for t in tests:
            t.setdefault("p_adjusted", None)
            t["min_effect"] = threshold
            t["outcome"] = _outcome(t, higher_is_better(m), alpha, threshold)
            t["significant"] = t["outcome"] in ("better", "worse")
            t["seeds_needed"] = None
            if t["outcome"] == "inconclusive" and t.get("diff_std") is not None:
                level = alpha / max(len(family), 1)  # Bonferroni: Holm's first step, the strictest
                # the test-set term the paired t-test added (0 for t-seeds and signflip)
                t["seeds_needed"] = stats.seeds_needed(t["diff"], t["diff_std"], t.get("extra_variance") or 0.0,
                                                       level)


def _outcome(t: dict[str, Any], hib: bool, alpha: float, threshold: float) -> str:
    if t.get("p_adjusted") is None or t.get("diff") is None:
        return "no_data"
    if t["p_adjusted"] >= alpha:
        return "inconclusive"
    if abs(t["diff"]) < threshold:
        return "negligible"
    return "better" if (t["diff"] > 0) == hib else "worse"
