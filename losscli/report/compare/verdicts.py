"""One verdict line per loss and setting, decisive where the evidence is, in plain words.

    adopt gce under sym:0.4 noise: +19.7 points [+15.1, +24.3] accuracy, adjusted p = 0.004, 6/6 seeds
    better, 1.02x step time; ECE 0.207 vs 0.076 (worse calibration)

The primary metric decides; calibration (ECE) and cost (whole training-step time) that come with
it are flagged, never hidden. Every claim uses the corrected p-value and the minimum effect.
"""

from __future__ import annotations

from typing import Any

from losscli.metrics.info import metric_info
from losscli.report.compare.decide import within_min_effect
from losscli.report.format import fmt_diff, fmt_effect, fmt_interval, fmt_p, fmt_value
from losscli.report.labels import plural, setting_phrase

#: a loss whose training step costs this much more than the baseline's gets a cost flag
COST_FLAG = 1.25
CALIBRATION_METRIC = "ece"


def _seeds(t: dict[str, Any]) -> str:
    n = t.get("n", 0)
    text = f"{t.get('wins', 0)}/{plural(n, 'seed')} better"
    return text + (f", {t['ties']} tied" if t.get("ties") else "")


def _effect(metric: str, t: dict[str, Any]) -> str:
    title = metric_info(metric).title
    ci = fmt_interval(metric, t.get("diff_ci95"))
    diff = fmt_effect(metric, t.get("diff"), t.get("min_effect"))
    return f"{diff} {ci + ' ' if ci else ''}{title}".replace("  ", " ")


def _flags(entry: dict[str, Any], baseline_entry: dict[str, Any] | None, primary: str) -> list[str]:
    out = []
    timing = entry.get("timing") or {}
    ratio = timing.get("step_time_vs_baseline")
    if ratio is not None and timing.get("step_time_trusted") is False:
        # the paired rounds disagreed too much (a busy machine): no cost call either way
        out.append(f"{ratio:.2f}x step time (noisy measurement)")
    elif ratio is not None:
        out.append(f"{ratio:.2f}x step time" + (", costly" if ratio >= COST_FLAG else ""))
    cal = entry["metrics"].get(CALIBRATION_METRIC, {})
    t = cal.get("vs_baseline") or {}
    if CALIBRATION_METRIC != primary and t.get("outcome") in ("better", "worse") and baseline_entry:
        base = baseline_entry["metrics"].get(CALIBRATION_METRIC, {}).get("mean")
        word = "worse" if t["outcome"] == "worse" else "better"
        out.append(f"ECE {fmt_value(CALIBRATION_METRIC, cal.get('mean'))} vs {fmt_value(CALIBRATION_METRIC, base)} "
                   f"({word} calibration)")
    return out


def verdict(entry: dict[str, Any], baseline: str, baseline_entry: dict[str, Any] | None, primary: str,
            multi_dataset: bool) -> dict[str, Any]:
    """``{outcome, sentence}`` for one loss in one setting, on the primary metric."""
    lab = entry["loss"]["label"]
    phrase = setting_phrase(entry["setting"], multi_dataset)
    t = entry["metrics"].get(primary, {}).get("vs_baseline") or {}
    outcome = t.get("outcome", "no_data")
    if outcome == "no_data":
        n = t.get("n", 0)
        why = ("no seed where both runs finished" if not n else
               "one seed where both runs finished: a test needs 2 or more (--seeds)" if n == 1 else
               "the paired differences have no spread to test")
        return {"outcome": outcome, "sentence": f"{lab} {phrase}: no comparison with {baseline} ({why})."}
    evidence = f"{_effect(primary, t)}, adjusted p = {fmt_p(t.get('p_adjusted'))}, {_seeds(t)}"
    flags = _flags(entry, baseline_entry, primary)
    if outcome in ("better", "worse"):  # what comes with adopting: cost, then calibration
        tail = (", " + flags[0] + "".join("; " + f for f in flags[1:])) if flags else ""
    else:
        tail = f" ({'; '.join(flags)})" if flags else ""
    if outcome == "better":
        return {"outcome": outcome, "sentence": f"adopt {lab} {phrase}: {evidence}{tail}."}
    if outcome == "worse":
        return {"outcome": outcome, "sentence": f"avoid {lab} {phrase}: {evidence}{tail}."}
    if outcome == "negligible":  # only metrics in points have a minimum effect
        return {"outcome": outcome, "sentence": f"{lab} {phrase}: no practical difference from {baseline}: {evidence}; "
                                                 f"below the {100 * t['min_effect']:g}-point minimum effect{tail}."}
    need = t.get("seeds_needed")
    if t.get("min_effect") and abs(t.get("diff") or 0.0) < t["min_effect"]:
        more = _below_min_effect(primary, t)
    elif need is not None:
        more = f"about {plural(need, 'seed')} would likely resolve a difference this size"
    elif t.get("diff") in (0, 0.0):
        more = "no sign of a difference"
    else:
        more = "more seeds would not resolve it: the test set is too small for a difference this size"
    return {"outcome": outcome, "sentence": f"no verdict yet for {lab} {phrase}: {evidence}; {more}{tail}."}


def _below_min_effect(metric: str, t: dict[str, Any]) -> str:
    """An inconclusive difference smaller than the minimum effect: not worth acting on if that is its
    size, but only the interval says whether it could be larger."""
    m = t["min_effect"]
    points = f"{100 * m:g}-point minimum effect"
    if within_min_effect(t, m):
        return f"its 95% interval lies within the {points}: a difference worth acting on is unlikely"
    ci = t.get("diff_ci95")
    reach = "" if ci is None else f", but its interval reaches {fmt_diff(metric, max(ci, key=abs))}"
    need = t.get("seeds_needed")
    if need is not None:
        after = f"about {plural(need, 'seed')} would likely narrow it to within the minimum effect"
    elif t.get("extra_variance"):
        after = "no number of seeds would narrow it that far: the test set is too small"
    else:
        after = "narrowing it that far would take more seeds than losscli plans for"
    return f"smaller than the {points} as observed{reach}; {after}"


def setting_verdicts(entries: list[dict[str, Any]], baseline: str, primary: str, multi_dataset: bool) -> list[str]:
    """The sentences of one setting: failures first (they change what the numbers mean), then one
    verdict per loss."""
    phrase = setting_phrase(entries[0]["setting"], multi_dataset) if entries else ""
    base_entry = next((e for e in entries if e["is_baseline"]), None)
    out: list[str] = []
    if base_entry is None:
        out.append(f"Baseline {baseline} has no runs {phrase}; nothing to compare against.")
    elif base_entry["n_ok"] == 0:
        out.append(f"Every run of the baseline {baseline} failed {phrase}; nothing to compare against.")
    for e in entries:
        total = e["n_ok"] + e["n_failed"] + e.get("n_pending", 0)
        if e["n_failed"] and e["n_ok"] == 0:
            out.append(f"All {total} runs of {e['loss']['label']} failed {phrase}.")
        elif e["n_failed"] or e.get("n_pending"):
            missing = ", ".join(x for x in (f"{e['n_failed']} failed" if e["n_failed"] else "",
                                            f"{e['n_pending']} not finished" if e.get("n_pending") else "") if x)
            out.append(f"{e['loss']['label']} {phrase}: {missing} of {plural(total, 'run')}; its statistics use "
                       f"the {e['n_ok']} that finished.")
    for e in entries:
        if not e["is_baseline"] and e["n_ok"] and base_entry is not None and base_entry["n_ok"]:
            e["verdict"] = verdict(e, baseline, base_entry, primary, multi_dataset)
            out.append(e["verdict"]["sentence"])
    return out
