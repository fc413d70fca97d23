"""From raw paired tests to decisions: correct each metric's family of comparisons (every
loss-vs-baseline comparison in the report), apply the minimum effect, name the outcome, and
estimate the seeds an inconclusive comparison would need (to detect a difference of at least the
minimum effect, or to narrow the interval of a smaller one to within it)."""

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
                t["seeds_needed"] = _seeds_needed(t, threshold, alpha / max(len(family), 1))


def _outcome(t: dict[str, Any], hib: bool, alpha: float, threshold: float) -> str:
    if t.get("p_adjusted") is None or t.get("diff") is None:
        return "no_data"
    if t["p_adjusted"] >= alpha:
        return "inconclusive"
    if abs(t["diff"]) < threshold:
        return "negligible"
    return "better" if (t["diff"] > 0) == hib else "worse"


def _seeds_needed(t: dict[str, Any], threshold: float, level: float) -> int | None:
    """Seeds that would likely settle an inconclusive comparison. A difference of at least the
    minimum effect: enough to detect it (80% power at ``level``, Bonferroni: Holm's first step, the
    strictest). A smaller one would not be worth acting on even if real: enough to narrow the 95%
    interval to within the minimum effect (None when it already is)."""
    extra = t.get("extra_variance") or 0.0  # the test-set term the paired t-test added (0: t-seeds, signflip)
    if not threshold or abs(t["diff"]) >= threshold:
        return stats.seeds_needed(t["diff"], t["diff_std"], extra, level)
    if within_min_effect(t, threshold):
        return None
    return stats.seeds_for_interval(threshold - abs(t["diff"]), t["diff_std"], extra)


def within_min_effect(t: dict[str, Any], threshold: float) -> bool:
    """The 95% interval of the difference lies strictly inside (-threshold, +threshold)."""
    ci = t.get("diff_ci95")
    return bool(threshold) and ci is not None and None not in ci and -threshold < ci[0] and ci[1] < threshold
