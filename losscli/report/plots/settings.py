"""The primary metric against the setting that varies: label-noise rate, or imbalance ratio for a
long-tail grid (both on the x axis of their own kind; categorical when not ``kind:value``).

Means with 95% CI error bars, offset slightly per loss so bars do not hide each other, one
marker and colour per loss, and the legend outside: readable with many losses."""

from __future__ import annotations

from typing import Any

import numpy as np

from losscli.metrics.info import metric_info
from losscli.report.plots.common import figure, legend_outside, parse_rate, save, styles


def _axis(settings: list[dict]) -> str:
    """The setting key that varies across the grid: ``noise`` unless only imbalance does."""
    noises = {str(s.get("noise", "none")) for s in settings}
    imbalances = {str(s.get("imbalance", "none")) for s in settings}
    return "imbalance" if len(imbalances) > 1 and len(noises) == 1 else "noise"


def plot_metric_vs_setting(report: dict[str, Any], path: Any, metric: str | None = None) -> Any:
    metric = metric or report.get("primary_metric", "accuracy")
    info = metric_info(metric)
    settings = [s["setting"] for s in report.get("settings", [])]
    entries = report.get("results", [])
    axis = _axis(settings)
    other = "imbalance" if axis == "noise" else "noise"
    panels = list(dict.fromkeys((str(s.get("dataset")), str(s.get(other, "none"))) for s in settings)) or [("", "none")]
    values = list(dict.fromkeys(str(s.get(axis, "none")) for s in settings))
    parsed = {v: parse_rate(v) for v in values}
    categorical = any(p is None for p in parsed.values()) or len({p[0] for p in parsed.values() if p[0]}) > 1
    xs = {v: (i if categorical else parsed[v][1] if parsed[v][0] else (0.0 if axis == "noise" else 1.0))
          for i, v in enumerate(values)}
    labels = list(dict.fromkeys(e["loss"]["label"] for e in entries))
    style = styles(labels)
    scale = 100.0 if info.percent else 1.0
    span = (max(xs.values()) - min(xs.values())) or 1.0
    log_x = not categorical and axis == "imbalance" and max(xs.values()) / max(min(xs.values()), 1e-9) >= 10
    fig, axes = figure(len(panels), legend_room=2.2)
    for ax, (dataset, fixed) in zip(axes, panels):
        for li, lab in enumerate(labels):
            pts = []
            for e in entries:
                s = e["setting"]
                ms = e["metrics"].get(metric) or {}
                if e["loss"]["label"] == lab and str(s.get("dataset")) == dataset and str(s.get(other, "none")) == fixed \
                        and ms.get("mean") is not None:
                    lo, hi = ms.get("ci95") or [ms["mean"], ms["mean"]]
                    pts.append((xs[str(s.get(axis, "none"))], ms["mean"] * scale, lo * scale, hi * scale))
            if not pts:
                continue
            pts.sort()
            x = np.array([p[0] for p in pts], dtype=float)
            # dodge: spread the losses a little along x so their error bars stay visible
            offset = (li - (len(labels) - 1) / 2) * (0.012 if not log_x else 0.02)
            x = x * (1 + offset) if log_x else x + offset * (1 if categorical else span)
            y = np.array([p[1] for p in pts])
            ax.errorbar(x, y, yerr=[y - np.array([p[2] for p in pts]), np.array([p[3] for p in pts]) - y],
                        label=lab, capsize=3, markersize=5, linewidth=1.2, **style[lab])
        if categorical:
            ax.set_xticks(range(len(values)), values)
        elif log_x:
            ax.set_xscale("log")
        ax.set_xlabel("label noise rate" if axis == "noise" else "imbalance ratio (largest / smallest class)")
        ax.set_ylabel(f"test {info.title}" + (" (%)" if info.percent else ""))
        ax.set_title(f"{other} {fixed}" + (f" ({dataset})" if len(panels) > 1 and dataset else ""))
        ax.grid(alpha=0.3)
    legend_outside(fig, axes)
    fig.suptitle(f"{info.title} vs {'label noise' if axis == 'noise' else 'class imbalance'} (mean, 95% CI over seeds)")
    return save(fig, path)
