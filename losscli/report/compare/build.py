"""Assemble the ``losscli/compare/v2`` report: a plain, YAML/JSON-safe dict (pure function)."""

from __future__ import annotations

from typing import Any, Iterable, Sequence

from losscli.metrics.info import metric_info
from losscli import stats
from losscli.report.compare.aggregate import build_entries, normalize_run, order_losses, order_settings
from losscli.report.compare.decide import decide
from losscli.report.compare.verdicts import setting_verdicts
from losscli.report.labels import loss_label, name_of, setting_label
from losscli.report.testset import N_RESAMPLES, WEIGHTED
from losscli.serialize import to_plain

SCHEMA = "losscli/compare/v2"
DEFAULT_METRICS = ("accuracy", "macro_f1", "nll", "ece", "brier", "adaptive_ece")
PRIMARY_METRIC = "accuracy"
TABLE_METRICS = ("accuracy", "macro_f1", "nll", "ece")


def build_compare_report(results: Sequence[dict[str, Any]], config: dict[str, Any] | None = None,
                         env: dict[str, Any] | None = None, metrics: Iterable[str] = DEFAULT_METRICS, *,
                         test: str = "t", correction: str = "holm", alpha: float = stats.ALPHA,
                         min_effect: float = 1.0, tuning: dict[str, Any] | None = None,
                         costs: dict[str, dict[str, dict[str, Any]]] | None = None) -> dict[str, Any]:
    """Results of every run (``status`` ok / failed / pending, ``loss``, ``seed``, ``setting``,
    ``metrics``, ``timing``, ``history``, optional per-example ``examples``) -> the report.

    ``test``/``correction``/``alpha``/``min_effect`` (points, for metrics shown in percent) decide
    what is called significant; see :mod:`losscli.stats` and :mod:`.decide`. ``costs``: per dataset name
    and loss label, the paired step and loss-kernel cost measurements (``app/compare/writer.py``).
    """
    config, env, metrics = dict(config or {}), dict(env or {}), list(metrics)
    primary = PRIMARY_METRIC if PRIMARY_METRIC in metrics else (metrics[0] if metrics else PRIMARY_METRIC)
    runs = [normalize_run(r) for r in results]
    losses = order_losses(runs, config)
    baseline = loss_label(config["baseline"]) if config.get("baseline") is not None else (losses[0] if losses else None)
    settings = order_settings(runs, config)
    multi_dataset = len({name_of(s.get("dataset")) for s in settings}) > 1

    per_setting = [build_entries(runs, losses, s, baseline, metrics, test, multi_dataset,
                                 (costs or {}).get(name_of(s.get("dataset")))) for s in settings]
    entries = [e for group in per_setting for e in group]
    decide(entries, metrics, alpha=alpha, correction=correction, min_effect=min_effect)
    settings_out, verdicts = [], []
    for s, group in zip(settings, per_setting):
        label = setting_label(s, multi_dataset)
        counts = {k: sum(e[k] for e in group) for k in ("n_ok", "n_failed", "n_pending")}
        settings_out.append({"setting": s, "label": label, "n_runs": sum(counts.values()), **counts,
                             "losses": [e["loss"]["label"] for e in group]})
        verdicts.append({"setting": s, "label": label,
                         "sentences": setting_verdicts(group, baseline, primary, multi_dataset)})
    n_seeds = len(config["seeds"]) if isinstance(config.get("seeds"), (list, tuple)) else \
        len({r["seed"] for r in runs})
    report = {
        "schema": SCHEMA,
        "baseline": baseline,
        "primary_metric": primary,
        "metrics": metrics,
        "metric_directions": {m: metric_info(m).direction for m in metrics},
        "statistics": _statistics(test, correction, alpha, min_effect, n_seeds, len(entries) - len(per_setting)),
        "config": config,
        "env": env,
        "settings": settings_out,
        "results": entries,
        "verdicts": verdicts,
        "runs": [{k: v for k, v in r.items() if k != "examples"} for r in runs],
        "n_runs": len(runs),
        "n_failed": sum(r["status"] == "failed" for r in runs),
        "n_pending": sum(r["status"] == "pending" for r in runs),
    }
    if tuning:
        report["tuning"] = tuning
    return to_plain(report)


def _statistics(test: str, correction: str, alpha: float, min_effect: float, n_seeds: int,
                family_size: int) -> dict[str, Any]:
    return {
        "test": test,
        "test_description": stats.TESTS[test],
        "correction": correction,
        "correction_description": stats.CORRECTIONS[correction],
        "family": "every comparison with the baseline in this report, per metric",
        "family_size": max(family_size, 0),
        "alpha": alpha,
        "min_effect": min_effect,
        "min_effect_unit": "points, for metrics shown in percent (accuracy, macro-F1, ...); other metrics have none",
        "significant": "adjusted p < alpha and |difference| >= the minimum effect",
        "prob_improvement": "P(a run of the loss beats a run of the baseline), over all seed pairs, ties half",
        "seeds_needed": f"inconclusive comparisons only: for a difference of at least the minimum effect, seeds for "
                        f"{stats.POWER:.0%} power at alpha / family size; for a smaller one, seeds to narrow the 95% "
                        "interval to within the minimum effect; from the observed difference, spread and test-set "
                        "variance",
        "testset_variance": {"resamples": N_RESAMPLES, "metrics": sorted(WEIGHTED)} if test == "t" else None,
        "summary": "mean, sample std (ddof=1), 95% CI of the mean from Student's t (n-1 df)",
        "n_seeds": n_seeds,
        "rank": "1 = best mean in the setting, ties share the average rank",
    }
