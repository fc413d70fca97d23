"""Tuning: the best validation score so far against the trial number, per loss and setting
(equal budgets should show curves that have flattened; if not, the budget was too small)."""

from __future__ import annotations

from typing import Any

from losscli.report.plots.common import figure, legend_outside, save, styles


def plot_tuning(tuning: dict[str, Any], path: Any) -> Any | None:
    """``tuning[loss]["history"][setting]`` = per-trial objective values (None: pruned or failed)."""
    settings = list(dict.fromkeys(s for entry in tuning.values() for s in (entry.get("history") or {})))
    if not settings:
        return None
    style = styles(list(tuning))
    fig, axes = figure(len(settings), legend_room=2.2)
    for ax, setting in zip(axes, settings):
        for lab, entry in tuning.items():
            values = (entry.get("history") or {}).get(setting) or []
            best, xs, ys = None, [], []
            for i, v in enumerate(values, start=1):
                if v is not None and (best is None or v > best):
                    best = v
                if best is not None:
                    xs.append(i)
                    ys.append(100.0 * best)
            if xs:
                ax.step(xs, ys, where="post", label=lab, color=style[lab]["color"], linewidth=1.3)
                ax.plot(xs, ys, linestyle="none", marker=style[lab]["marker"], color=style[lab]["color"], markersize=3)
        ax.set_title(setting, fontsize="medium")
        ax.set_xlabel("trial")
        ax.set_ylabel("best validation accuracy so far (%)")
        ax.grid(alpha=0.3)
    legend_outside(fig, axes)
    fig.suptitle("tuning: best validation accuracy vs trial (same budget for every loss)")
    return save(fig, path)
