"""Differences from the baseline with their 95% intervals (a forest plot), one panel per setting:
what the verdicts say, at a glance. Colour = outcome; the shaded band is the minimum effect."""

from __future__ import annotations

from typing import Any

from losscli.metrics.info import metric_info
from losscli.report.labels import setting_key
from losscli.report.plots.common import figure, save

COLORS = {"better": "#2a9d3f", "worse": "#c0392b", "negligible": "#7f8c8d", "inconclusive": "#34495e",
          "no_data": "#bdc3c7"}


def plot_effects(report: dict[str, Any], path: Any, metric: str | None = None) -> Any:
    metric = metric or report.get("primary_metric", "accuracy")
    info = metric_info(metric)
    scale = 100.0 if info.percent else 1.0
    settings = report.get("settings", [])
    losses = list(dict.fromkeys(e["loss"]["label"] for e in report.get("results", []) if not e.get("is_baseline")))
    fig, axes = figure(len(settings) or 1, ncols=min(3, max(len(settings), 1)),
                       panel_size=(4.2, 0.45 * max(len(losses), 2) + 1.4))
    for ax, s in zip(axes, settings):
        rows = [e for e in report.get("results", []) if setting_key(e["setting"]) == setting_key(s["setting"])
                and not e.get("is_baseline")]
        for i, e in enumerate(reversed(rows)):
            t = (e["metrics"].get(metric) or {}).get("vs_baseline") or {}
            if t.get("diff") is None:
                continue
            ci = t.get("diff_ci95") or [t["diff"], t["diff"]]
            color = COLORS.get(t.get("outcome", "no_data"), "#34495e")
            ax.errorbar([t["diff"] * scale], [i], xerr=[[(t["diff"] - ci[0]) * scale], [(ci[1] - t["diff"]) * scale]],
                        fmt="o", color=color, capsize=3)
        ax.set_yticks(range(len(rows)), [e["loss"]["label"] for e in reversed(rows)])
        ax.axvline(0.0, color="black", linewidth=0.8)
        threshold = report.get("statistics", {}).get("min_effect", 0) if info.percent else 0
        if threshold:
            ax.axvspan(-threshold, threshold, color="#95a5a6", alpha=0.2, linewidth=0)
        ax.set_title(s["label"], fontsize="medium")
        ax.set_xlabel(f"Δ {info.title} vs {report.get('baseline')}" + (" (points)" if info.percent else ""))
        ax.grid(axis="x", alpha=0.3)
    fig.suptitle(f"difference from {report.get('baseline')} with 95% interval (green: adopt, red: avoid, "
                 "grey band: below the minimum effect)", fontsize="medium")
    return save(fig, path)
