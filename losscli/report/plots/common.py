"""Shared plotting pieces: figures through ``matplotlib.figure.Figure`` (no pyplot state, Agg
canvas), atomic PNG writes, and a style per loss that stays distinguishable with many losses
(colour + marker + line style), a legend placed outside the axes."""

from __future__ import annotations

import io
import math
import re
from pathlib import Path
from typing import Any

DPI = 110
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "<", ">", "*", "h", "p")
LINESTYLES = ("-", "--", "-.", ":")


def figure(n_panels: int, ncols: int = 3, panel_size: tuple[float, float] = (4.6, 3.6), legend_room: float = 0.0):
    """A figure with ``n_panels`` axes in a grid (extra width for a legend on the right)."""
    from matplotlib.figure import Figure

    ncols = max(1, min(ncols, n_panels))
    nrows = max(1, math.ceil(n_panels / ncols))
    fig = Figure(figsize=(panel_size[0] * ncols + legend_room, panel_size[1] * nrows), dpi=DPI, layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel().tolist()
    for ax in axes[n_panels:]:
        ax.set_visible(False)
    return fig, axes[:n_panels]


def save(fig: Any, path: Any) -> Path:
    from losscli.atomic import atomic_write_bytes

    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return atomic_write_bytes(path, buf.getvalue())


def styles(labels: list[str]) -> dict[str, dict[str, Any]]:
    """Colour, marker and line style per loss label (distinct for up to 20 losses)."""
    from matplotlib import colormaps

    cmap = colormaps["tab10" if len(labels) <= 10 else "tab20"]
    return {lab: {"color": cmap(i % cmap.N), "marker": MARKERS[i % len(MARKERS)],
                  "linestyle": LINESTYLES[(i // 10) % len(LINESTYLES)]} for i, lab in enumerate(labels)}


def legend_outside(fig: Any, axes: list) -> None:
    """One legend for the figure, right of the panels (keeps data unobscured with many losses)."""
    handles, labels = [], []
    for ax in axes:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            if lab not in labels and not lab.startswith("_"):
                handles.append(h)
                labels.append(lab)
    if handles:
        fig.legend(handles, labels, loc="outside right upper", fontsize="small")


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-") or "setting"


def parse_rate(spec: Any) -> tuple[str | None, float] | None:
    """``"none"`` -> ``(None, 0.0)``; ``"sym:0.4"`` -> ``("sym", 0.4)``; ``"exp:100"`` -> ``("exp", 100.0)``;
    unparseable -> None."""
    if spec is None:
        return (None, 0.0)
    text = str(spec).strip().lower()
    if text in ("none", "", "clean"):
        return (None, 0.0)
    m = re.fullmatch(r"([a-z_\-]+)\s*[:=]\s*([0-9]*\.?[0-9]+(?:e-?[0-9]+)?)", text)
    return (m.group(1), float(m.group(2))) if m else None
