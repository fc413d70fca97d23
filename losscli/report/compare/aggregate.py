"""Per-run results -> per (setting, loss) entries: summaries over seeds, timing, and the raw
paired comparison with the baseline (p-values are corrected later, per family, in ``decide``)."""

from __future__ import annotations

import math
import statistics
from typing import Any, Sequence

from losscli.metrics.info import higher_is_better
from losscli import stats
from losscli.report.labels import config_order, loss_label, name_of, seed_sort, setting_key, setting_label
from losscli.report.testset import example_bootstrap_variance


def num(value: Any) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        f = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(f) else f


def ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b <= 0 or not math.isfinite(a) or not math.isfinite(b):
        return None
    return a / b


def normalize_run(r: dict[str, Any]) -> dict[str, Any]:
    metrics = r.get("metrics") or {}
    status = r.get("status") if r.get("status") in ("ok", "pending") else "failed"
    loss = r.get("loss")
    return {
        "loss": loss_label(loss),
        "loss_spec": dict(loss) if isinstance(loss, dict) else {"name": str(loss), "params": {}, "label": str(loss)},
        "seed": r.get("seed"),
        "setting": dict(r.get("setting") or {}),
        "status": status,
        "error": r.get("error"),
        "run_dir": None if r.get("run_dir") is None else str(r.get("run_dir")),
        "metrics": {k: dict(metrics.get(k) or {}) for k in ("test", "val", "train")},
        "timing": dict(r.get("timing") or {}),
        "history": list(r.get("history") or []),
        "examples": r.get("examples"),  # per-example test outcomes (not written to the report)
    }


def order_losses(runs: list[dict], config: dict) -> list[str]:
    present = list(dict.fromkeys(r["loss"] for r in runs))
    listed = [lab for lab in dict.fromkeys(config_order(config, "losses")) if lab in present]
    return listed + [lab for lab in present if lab not in listed]


def order_settings(runs: list[dict], config: dict) -> list[dict]:
    noise_order, imb_order = config_order(config, "noise"), config_order(config, "imbalance")
    seen: dict[str, tuple[int, dict]] = {}
    for r in runs:
        seen.setdefault(setting_key(r["setting"]), (len(seen), r["setting"]))

    def key(item: tuple[int, dict]) -> tuple:
        i, s = item
        noise, imb = str(s.get("noise", "none")), str(s.get("imbalance", "none"))
        return (name_of(s.get("dataset")), imb_order.index(imb) if imb in imb_order else len(imb_order),
                noise_order.index(noise) if noise in noise_order else len(noise_order), i)

    return [s for _, s in sorted(seen.values(), key=key)]


def _summary(own: dict, seeds: list, getter) -> dict[str, Any]:
    return stats.summarize([getter(own[s]) for s in seeds])


def build_entries(runs: list[dict], losses: list[str], setting: dict, baseline: str | None,
                  metrics: Sequence[str], test: str, multi_dataset: bool,
                  costs: dict[str, dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """One entry per loss run in ``setting`` (raw tests; no correction yet). ``costs``: per loss label, the
    paired cost measurements of the setting's dataset (``{"step": ..., "loss": ...}``, see ``_timing``)."""
    key = setting_key(setting)
    by_loss = {lab: sorted((r for r in runs if r["loss"] == lab and setting_key(r["setting"]) == key),
                           key=lambda r: seed_sort(r["seed"])) for lab in losses}
    by_loss = {lab: rs for lab, rs in by_loss.items() if rs}
    specs = {lab: rs[0]["loss_spec"] for lab, rs in by_loss.items()}

    def ok_by_seed(lab: str) -> dict:
        return {r["seed"]: r for r in by_loss.get(lab, []) if r["status"] == "ok"}

    base_ok = ok_by_seed(baseline) if baseline in by_loss else {}
    base_timing = {k: _median([num(r["timing"].get(k)) for r in base_ok.values()])
                   for k in ("train_seconds", "loss_ms_per_step")}
    entries = []
    base_memo: dict = {}  # the baseline runs' resampled metrics, shared by every loss compared with them
    for lab, rs in by_loss.items():
        own = ok_by_seed(lab)
        seeds = sorted(own, key=seed_sort)
        entry: dict[str, Any] = {
            "loss": specs[lab], "setting": setting, "setting_label": setting_label(setting, multi_dataset),
            "is_baseline": lab == baseline, "n_ok": len(own),
            "n_failed": sum(r["status"] == "failed" for r in rs), "n_pending": sum(r["status"] == "pending" for r in rs),
            "seeds": seeds, "errors": [{"seed": r["seed"], "error": r["error"]} for r in rs if r["status"] == "failed"],
            "metrics": {},
        }
        paired = [s for s in seeds if s in base_ok] if lab != baseline else []
        for m in metrics:
            summary = _summary(own, seeds, lambda r: num(r["metrics"]["test"].get(m)))
            summary["vs_baseline"] = None
            if lab != baseline and base_ok:
                pairs = [s for s in paired if num(own[s]["metrics"]["test"].get(m)) is not None
                         and num(base_ok[s]["metrics"]["test"].get(m)) is not None]
                v = example_bootstrap_variance(m, [own[s]["examples"] for s in pairs],
                                               [base_ok[s]["examples"] for s in pairs],
                                               memo=base_memo) if test == "t" else None
                t = stats.paired_test([num(own[s]["metrics"]["test"].get(m)) for s in pairs],
                                      [num(base_ok[s]["metrics"]["test"].get(m)) for s in pairs],
                                      higher_is_better=higher_is_better(m), test=test, extra_variance=v or 0.0)
                t["example_bootstrap_variance"] = v
                t["seeds"] = pairs
                t["prob_improvement"] = stats.prob_improvement(
                    [num(own[s]["metrics"]["test"].get(m)) for s in seeds],
                    [num(r["metrics"]["test"].get(m)) for r in base_ok.values()], higher_is_better(m))
                diffs = [num(own[s]["metrics"]["test"].get(m)) - num(base_ok[s]["metrics"]["test"].get(m)) for s in pairs]
                t["diff_std"] = stats.summarize(diffs)["std"] if len(diffs) > 1 else None
                summary["vs_baseline"] = t
            summary["rank"] = None
            entry["metrics"][m] = summary
        entry["timing"] = _timing(own, seeds, base_timing, (costs or {}).get(lab) or {})
        entries.append(entry)
    for m in metrics:
        for e, rk in zip(entries, stats.rank([e["metrics"][m]["mean"] for e in entries], higher_is_better(m))):
            e["metrics"][m]["rank"] = rk
    return entries


def _timing(own: dict, seeds: list, base_timing: dict, cost: dict[str, Any]) -> dict[str, Any]:
    """Timing summaries over seeds and the cost ratios to the baseline.

    ``step_time_vs_baseline`` (the whole training step: forward, loss, backward, optimizer; what the user
    pays) and ``loss_time_vs_baseline`` (the loss kernel alone at the training shape) come from paired,
    interleaved measurements when the writer made them (``cost["step"]`` / ``cost["loss"]``: ratio, p20,
    p80, trusted); ``step_time_source`` says which. Without one, the step ratio falls back to the runs'
    own training times (``train_time_vs_baseline``, always reported: a ratio of medians over seeds, noisy
    where runs share the CPU) and the loss ratio to the per-step times.
    """
    timing: dict[str, Any] = {k: stats.summarize([num(own[s]["timing"].get(k)) for s in seeds])
                              for k in ("train_seconds", "samples_per_second", "loss_ms_per_step")}
    wall = ratio(_median(timing["train_seconds"]["values"]), base_timing["train_seconds"])
    step, loss = cost.get("step"), cost.get("loss")
    timing["train_time_vs_baseline"] = wall
    if step:
        timing.update({"step_time_vs_baseline": step["ratio"], "step_time_p20": step["ratio_p20"],
                       "step_time_p80": step["ratio_p80"], "step_time_trusted": step["trusted"],
                       "step_time_source": "paired"})
    else:
        timing.update({"step_time_vs_baseline": wall, "step_time_p20": None, "step_time_p80": None,
                       "step_time_trusted": None, "step_time_source": "runs" if wall is not None else None})
    timing["loss_time_vs_baseline"] = loss["ratio"] if loss else \
        ratio(_median(timing["loss_ms_per_step"]["values"]), base_timing["loss_ms_per_step"])
    return timing


def _median(values: list) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None
