"""Flat rows (one per setting and loss) for ``--format table|md|csv|json`` and spreadsheets."""

from __future__ import annotations

from typing import Any, Sequence

from losscli.report.labels import name_of


def summary_rows(report: dict[str, Any], metrics: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """Keys: ``dataset``, ``noise``, ``imbalance``, ``loss``, ``n_ok``, ``n_failed``, ``n_pending``; per metric
    ``<m>`` (mean) and ``<m>_std``; for the primary metric also ``<m>_ci_lo/_ci_hi/_rank``; then, on the
    primary metric, ``diff``, ``diff_ci_lo``, ``diff_ci_hi``, ``p_value``, ``p_adjusted``, ``prob_improvement``,
    ``seeds_needed``, ``wins``, ``ties``, ``losses``, ``significant``, ``outcome`` (None for the baseline),
    ``train_seconds``, ``step_time_vs_baseline``, ``loss_time_vs_baseline``."""
    metrics = list(metrics) if metrics is not None else list(report.get("metrics") or [])
    primary = report.get("primary_metric", "accuracy")
    rows = []
    for e in report.get("results", []):
        s = e["setting"]
        row: dict[str, Any] = {"dataset": name_of(s.get("dataset")) if s.get("dataset") is not None else None,
                               "noise": s.get("noise"), "imbalance": s.get("imbalance"), "loss": e["loss"]["label"],
                               "n_ok": e["n_ok"], "n_failed": e["n_failed"], "n_pending": e.get("n_pending", 0)}
        for m in metrics:
            ms = e["metrics"].get(m) or {}
            row[m], row[f"{m}_std"] = ms.get("mean"), ms.get("std")
            if m == primary:
                ci = ms.get("ci95") or [None, None]
                row[f"{m}_ci_lo"], row[f"{m}_ci_hi"], row[f"{m}_rank"] = ci[0], ci[1], ms.get("rank")
        t = (e["metrics"].get(primary) or {}).get("vs_baseline") or {}
        dci = t.get("diff_ci95") or [None, None]
        row.update(diff=t.get("diff"), diff_ci_lo=dci[0], diff_ci_hi=dci[1], p_value=t.get("p_value"),
                   p_adjusted=t.get("p_adjusted"), prob_improvement=t.get("prob_improvement"),
                   seeds_needed=t.get("seeds_needed"), wins=t.get("wins"), ties=t.get("ties"), losses=t.get("losses"),
                   significant=t.get("significant") if t else None,
                   outcome=t.get("outcome") if t else ("baseline" if e.get("is_baseline") else None))
        tm = e.get("timing") or {}
        row["train_seconds"] = (tm.get("train_seconds") or {}).get("mean")
        row["step_time_vs_baseline"] = tm.get("step_time_vs_baseline")
        row["loss_time_vs_baseline"] = tm.get("loss_time_vs_baseline")
        rows.append(row)
    return rows
