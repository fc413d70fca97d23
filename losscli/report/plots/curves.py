"""Accuracy during training: test (solid) and validation (dashed) accuracy per epoch per loss,
mean over the finished seeds; one panel per setting."""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

from losscli.report.labels import loss_label, setting_key, setting_label
from losscli.report.plots.common import figure, legend_outside, save, styles


def plot_training_curves(results: Sequence[dict[str, Any]], path: Any) -> Any:
    """Accepts the raw result dicts or ``report["runs"]``."""
    from matplotlib.ticker import MaxNLocator

    runs = [r for r in results if r.get("status") == "ok"]
    settings: dict[str, dict[str, Any]] = {}
    for r in results:
        settings.setdefault(setting_key(r.get("setting")), dict(r.get("setting") or {}))
    keys = list(settings) or [""]
    multi_dataset = len({str(s.get("dataset")) for s in settings.values()}) > 1
    labels = list(dict.fromkeys(loss_label(r.get("loss")) for r in results))
    style = styles(labels)
    fig, axes = figure(len(keys), legend_room=2.2)
    for ax, key in zip(axes, keys):
        drawn = False
        for lab in labels:
            rs = [r for r in runs if setting_key(r.get("setting")) == key and loss_label(r.get("loss")) == lab]
            for field, dashed in (("test_accuracy", False), ("val_accuracy", True)):
                per_epoch: dict[float, list[float]] = {}
                for r in rs:
                    for h in r.get("history") or []:
                        v, ep = h.get(field), h.get("epoch")
                        if v is not None and ep is not None and not (isinstance(v, float) and math.isnan(v)):
                            per_epoch.setdefault(float(ep), []).append(float(v))
                if not per_epoch:
                    continue
                ep = sorted(per_epoch)
                ax.plot(ep, [100.0 * float(np.mean(per_epoch[e])) for e in ep], color=style[lab]["color"],
                        linestyle="--" if dashed else "-", marker=style[lab]["marker"] if len(ep) < 30 else None,
                        markersize=3, linewidth=1.1, alpha=0.6 if dashed else 1.0,
                        label="_nolegend_" if dashed else lab)
                drawn = True
        if not drawn:
            ax.text(0.5, 0.5, "no training history", ha="center", va="center", transform=ax.transAxes)
        ax.set_title(setting_label(settings.get(key, {}), multi_dataset) if key else "")
        ax.set_xlabel("epoch")
        ax.set_ylabel("accuracy (%)")
        ax.grid(alpha=0.3)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    legend_outside(fig, axes)
    fig.suptitle("accuracy during training (mean over seeds; solid test, dashed validation)")
    return save(fig, path)
