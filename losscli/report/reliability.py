"""Reliability diagrams (top-label) with the per-bin count histogram below each one.

One drawing routine serves the calibration report (one figure per calibrator) and the compare
report (a grid, one panel per loss). Bins are those of :func:`losscli.metrics.reliability_bins`
(equal-width, ``(lo, hi]``, last bin closed at 1.0), the same as the ECE. matplotlib is used
through ``matplotlib.figure.Figure`` (no pyplot state); importing this module is cheap.
"""

from __future__ import annotations

import io
import math
from pathlib import Path
from typing import Any, Optional, Sequence


def draw_reliability(ax: Any, axh: Any, probs_or_logits: Any, labels: Any, title: str, n_bins: int = 15,
                     is_probs: Optional[bool] = None, legend: bool = True) -> dict:
    """Draw accuracy per confidence bin against the diagonal (gap shaded, ECE/MCE in the legend) on
    ``ax`` and how many samples fall in each bin on ``axh``. Returns the bins."""
    import torch

    from losscli.metrics.functional import check_scores, looks_like_probabilities, reliability_bins

    scores = check_scores(probs_or_logits, "probs_or_logits")
    if is_probs is None:
        is_probs = looks_like_probabilities(scores)
    probs = scores if is_probs else torch.softmax(scores, dim=1)
    rb = reliability_bins(probs, labels, n_bins)
    width = 1.0 / n_bins
    lefts = rb["edges"][:-1]
    acc = [a if a is not None else 0.0 for a in rb["accuracy"]]
    conf = [c if c is not None else 0.0 for c in rb["confidence"]]
    nonempty = [n > 0 for n in rb["count"]]
    ax.bar(lefts, acc, width=width, align="edge", color="#4C72B0", edgecolor="black", linewidth=0.6, label="accuracy")
    ax.bar(lefts, [abs(a - c) if ne else 0.0 for a, c, ne in zip(acc, conf, nonempty)],
           bottom=[min(a, c) for a, c in zip(acc, conf)], width=width, align="edge", color="#DD8452", alpha=0.45,
           edgecolor="#C44E52", hatch="//", linewidth=0.6, label="gap to confidence")
    ax.plot([0, 1], [0, 1], "--", color="gray", linewidth=1, label="perfect calibration")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_ylabel("accuracy")
    ax.set_title(title, fontsize="medium")
    if legend:
        ax.legend(loc="upper left", fontsize=7, title=f"ECE {rb['ece']:.4f}   MCE {rb['mce']:.4f}", title_fontsize=7)
    else:
        ax.text(0.03, 0.95, f"ECE {rb['ece']:.3f}", transform=ax.transAxes, va="top", fontsize=8)
    axh.bar(lefts, rb["count"], width=width, align="edge", color="#8C8C8C", edgecolor="black", linewidth=0.6)
    axh.axvline(rb["accuracy_overall"], color="#4C72B0", linestyle="-", linewidth=1.5,
                label=f"accuracy {rb['accuracy_overall']:.3f}")
    axh.axvline(rb["confidence_overall"], color="#C44E52", linestyle="--", linewidth=1.5,
                label=f"mean confidence {rb['confidence_overall']:.3f}")
    axh.set_xlabel(f"top-label confidence ({n_bins} bins)")
    axh.set_ylabel("count")
    if legend:
        axh.legend(loc="upper left", fontsize=6)
    return rb


def plot_reliability(probs_or_logits: Any, labels: Any, path: Any, title: str = "", n_bins: int = 15,
                     is_probs: Optional[bool] = None) -> Path:
    """One reliability diagram with its histogram, as a PNG at ``path`` (written atomically)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5, 6.2))
    ax, axh = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1.2], "hspace": 0.08})
    fig.subplots_adjust(left=0.14, right=0.97, top=0.94, bottom=0.09)  # fixed margins: no second layout pass
    draw_reliability(ax, axh, probs_or_logits, labels, title or "Reliability diagram", n_bins, is_probs)
    return _save(fig, path)


def plot_reliability_grid(panels: Sequence[tuple[str, Any, Any]], path: Any, title: str = "", n_bins: int = 15,
                          ncols: int = 4) -> Path:
    """One reliability diagram + histogram per ``(name, logits [N, C], labels [N])``, in a grid."""
    from matplotlib.figure import Figure

    n = max(len(panels), 1)
    ncols = max(1, min(ncols, n))
    nrows = math.ceil(n / ncols)
    fig = Figure(figsize=(3.6 * ncols, 4.4 * nrows), layout="constrained")
    outer = fig.add_gridspec(nrows, ncols)
    for i, (name, logits, labels) in enumerate(panels):
        inner = outer[i // ncols, i % ncols].subgridspec(2, 1, height_ratios=[3, 1], hspace=0.05)
        ax = fig.add_subplot(inner[0])
        axh = fig.add_subplot(inner[1], sharex=ax)
        draw_reliability(ax, axh, logits, labels, name, n_bins, is_probs=False, legend=False)
    if title:
        fig.suptitle(title)
    return _save(fig, path)


def _save(fig: Any, path: Any) -> Path:
    from losscli.atomic import atomic_write_bytes

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    return atomic_write_bytes(path, buf.getvalue())
