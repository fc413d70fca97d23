"""Reliability diagram (top-label) with the confidence histogram below it.

matplotlib is imported inside the function with the Agg backend, so importing this module
is cheap and works without a display.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any, Optional


def plot_reliability(probs_or_logits: Any, labels: Any, path: Any, title: str = "", n_bins: int = 15,
                     is_probs: Optional[bool] = None) -> Path:
    """Write a reliability diagram PNG to ``path`` (atomically) and return the path.

    ``probs_or_logits`` is ``[N, C]``: probabilities or logits. ``is_probs=None`` decides by
    looking (rows non-negative summing to 1 -> probabilities, else softmax is applied).
    Top panel: accuracy per equal-width confidence bin (bins ``(lo, hi]``, last closed at 1.0,
    as in :func:`losscli.metrics.ece`) against the diagonal, with the gap to each bin's mean
    confidence shaded and ECE/MCE in the legend. Bottom panel: how many samples fall in each
    bin, with the overall accuracy and mean confidence marked.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    import torch

    from losscli.io import atomic_write_bytes
    from losscli.metrics.functional import _check_scores, looks_like_probabilities, reliability_bins

    scores = _check_scores(probs_or_logits, "probs_or_logits")
    if is_probs is None:
        is_probs = looks_like_probabilities(scores)
    probs = scores if is_probs else torch.softmax(scores, dim=1)
    rb = reliability_bins(probs, labels, n_bins)

    edges = rb["edges"]
    width = 1.0 / n_bins
    lefts = edges[:-1]
    fig, (ax, axh) = plt.subplots(2, 1, figsize=(5, 6.2), sharex=True,
                                  gridspec_kw={"height_ratios": [3, 1.2], "hspace": 0.08})
    fig.subplots_adjust(left=0.14, right=0.97, top=0.94, bottom=0.09)  # fixed margins: no second layout pass
    try:
        acc = [a if a is not None else 0.0 for a in rb["accuracy"]]
        conf = [c if c is not None else 0.0 for c in rb["confidence"]]
        nonempty = [n > 0 for n in rb["count"]]
        ax.bar(lefts, acc, width=width, align="edge", color="#4C72B0", edgecolor="black", linewidth=0.6,
               label="accuracy")
        gap_bottom = [min(a, c) for a, c in zip(acc, conf)]
        gap_height = [abs(a - c) if ne else 0.0 for a, c, ne in zip(acc, conf, nonempty)]
        ax.bar(lefts, gap_height, bottom=gap_bottom, width=width, align="edge", color="#DD8452", alpha=0.45,
               edgecolor="#C44E52", hatch="//", linewidth=0.6, label="gap to confidence")
        ax.plot([0, 1], [0, 1], "--", color="gray", linewidth=1, label="perfect calibration")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_ylabel("accuracy")
        ax.set_title(title or "Reliability diagram")
        ax.legend(loc="upper left", fontsize=8, title=f"ECE {rb['ece']:.4f}   MCE {rb['mce']:.4f}",
                  title_fontsize=8)
        axh.bar(lefts, rb["count"], width=width, align="edge", color="#8C8C8C", edgecolor="black", linewidth=0.6)
        axh.axvline(rb["accuracy_overall"], color="#4C72B0", linestyle="-", linewidth=1.5,
                    label=f"accuracy {rb['accuracy_overall']:.3f}")
        axh.axvline(rb["confidence_overall"], color="#C44E52", linestyle="--", linewidth=1.5,
                    label=f"mean confidence {rb['confidence_overall']:.3f}")
        axh.set_xlabel(f"top-label confidence ({n_bins} equal-width bins)")
        axh.set_ylabel("count")
        axh.legend(loc="upper left", fontsize=7)
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=100)
    finally:
        plt.close(fig)
    return atomic_write_bytes(path, buf.getvalue())
