"""Compare plots (PNG): accuracy vs noise rate, training curves, reliability diagrams.

matplotlib is imported inside the functions and used through ``matplotlib.figure.Figure``
(Agg canvas), so importing this module is cheap and never touches pyplot's global state
or the user's backend. torch is imported only to read ``run_dir/logits.pt``.
"""

from __future__ import annotations

import math
import os
import re
import sys
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from losscli.report.compare import (PERCENT_METRICS, METRIC_TITLES, PRIMARY_METRIC, loss_label, setting_key,
                                    setting_label)

DPI = 110
N_BINS = 15  # same equal-width binning as losscli.metrics.ece


def _figure(n_panels: int, ncols: int = 3, panel_size: tuple[float, float] = (4.6, 3.6)):
    from matplotlib.figure import Figure

    ncols = max(1, min(ncols, n_panels))
    nrows = max(1, math.ceil(n_panels / ncols))
    fig = Figure(figsize=(panel_size[0] * ncols, panel_size[1] * nrows), dpi=DPI, layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel().tolist()
    for ax in axes[n_panels:]:
        ax.set_visible(False)
    return fig, axes[:n_panels]


def _save(fig: Any, path: str | os.PathLike) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp.png")
    fig.savefig(tmp, format="png")
    os.replace(tmp, path)
    return path


def parse_noise(noise: Any) -> tuple[str | None, float] | None:
    """``"none"`` -> ``(None, 0.0)``; ``"sym:0.4"`` -> ``("sym", 0.4)``; unparseable -> ``None``."""
    if noise is None:
        return (None, 0.0)
    text = str(noise).strip().lower()
    if text in ("none", "", "clean", "0", "0.0"):
        return (None, 0.0)
    m = re.fullmatch(r"([a-z_\-]+)\s*[:=]\s*([0-9]*\.?[0-9]+(?:e-?[0-9]+)?)", text)
    if not m:
        return None
    return (m.group(1), float(m.group(2)))


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-") or "setting"


# ---------------------------------------------------------------------------- accuracy vs noise


def plot_accuracy_vs_noise(report: dict[str, Any], path: str | os.PathLike, metric: str = PRIMARY_METRIC) -> Path:
    """Mean ``metric`` vs label-noise rate per loss with its 95% CI band; one panel per
    (dataset, imbalance). With a single noise level the points are drawn with CI error bars.
    Noise strings that are not ``kind:rate`` fall back to a categorical x axis."""
    settings = [s["setting"] for s in report.get("settings", [])]
    entries = report.get("results", [])
    scale = 100.0 if metric in PERCENT_METRICS else 1.0
    panels: list[tuple[Any, Any]] = []
    for s in settings:
        key = (str(s.get("dataset")), str(s.get("imbalance", "none")))
        if key not in panels:
            panels.append(key)
    if not panels:
        panels = [("", "none")]
    noises = list(dict.fromkeys(str(s.get("noise", "none")) for s in settings))
    parsed = {n: parse_noise(n) for n in noises}
    categorical = any(p is None for p in parsed.values())
    kinds = list(dict.fromkeys(p[0] for p in parsed.values() if p and p[0] is not None)) if not categorical else []
    labels = list(dict.fromkeys(e["loss"]["label"] for e in entries))
    multi_dataset = len({p[0] for p in panels}) > 1

    fig, axes = _figure(len(panels))
    colors = _colors(len(labels))
    styles = ["-", "--", ":", "-."]
    for ax, (dataset, imb) in zip(axes, panels):
        for li, lab in enumerate(labels):
            pts = []  # (noise string, mean, lo, hi)
            for e in entries:
                s = e["setting"]
                if e["loss"]["label"] != lab or str(s.get("dataset")) != dataset or \
                        str(s.get("imbalance", "none")) != imb:
                    continue
                ms = e["metrics"].get(metric) or {}
                if ms.get("mean") is None:
                    continue
                lo, hi = (ms.get("ci95") or [ms["mean"], ms["mean"]])
                pts.append((str(s.get("noise", "none")), ms["mean"] * scale, lo * scale, hi * scale))
            if not pts:
                continue
            if categorical:
                series = [("", sorted(((noises.index(n), m, lo, hi) for n, m, lo, hi in pts)))]
            else:
                clean = [(0.0, m, lo, hi) for n, m, lo, hi in pts if parsed[n][0] is None]
                series = [(k, sorted(clean + [(parsed[n][1], m, lo, hi) for n, m, lo, hi in pts
                                              if parsed[n][0] == k])) for k in kinds] or [("", clean)]
            for si, (kind, ser) in enumerate(series):
                if not ser:
                    continue
                x = np.array([p[0] for p in ser], dtype=float)
                y = np.array([p[1] for p in ser])
                lo = np.array([p[2] for p in ser])
                hi = np.array([p[3] for p in ser])
                name = lab if len(series) == 1 or not kind else f"{lab} ({kind})"
                style = styles[si % len(styles)]
                if len(x) >= 2:
                    ax.plot(x, y, style, marker="o", color=colors[li], label=name)
                    ax.fill_between(x, lo, hi, color=colors[li], alpha=0.15, linewidth=0)
                else:
                    ax.errorbar(x, y, yerr=[y - lo, hi - y], fmt="o", capsize=4, color=colors[li], label=name)
        if categorical:
            ax.set_xticks(range(len(noises)), noises)
            ax.set_xlabel("label noise")
        else:
            ax.set_xlabel("label noise rate" + (f" ({', '.join(kinds)})" if kinds else ""))
        unit = " (%)" if scale == 100.0 else ""
        ax.set_ylabel(f"test {METRIC_TITLES.get(metric, metric)}{unit}")
        title = f"imbalance {imb}"
        if multi_dataset:
            title = f"{dataset}: {title}"
        ax.set_title(title)
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize="small")
    fig.suptitle(f"{METRIC_TITLES.get(metric, metric)} vs label noise (mean, 95% CI over seeds)")
    return _save(fig, path)


def _colors(n: int) -> list[Any]:
    from matplotlib import colormaps

    cmap = colormaps["tab10" if n <= 10 else "tab20"]
    return [cmap(i % cmap.N) for i in range(max(n, 1))]


# ---------------------------------------------------------------------------- training curves


def plot_training_curves(results: Sequence[dict[str, Any]], path: str | os.PathLike) -> Path:
    """Test (solid) and validation (dashed) accuracy vs epoch per loss, mean over the
    successful seeds; one panel per setting. Accepts the raw result dicts or ``report["runs"]``."""
    runs = [r for r in results if r.get("status") == "ok"]
    settings: dict[str, dict[str, Any]] = {}
    for r in results:
        settings.setdefault(setting_key(r.get("setting")), dict(r.get("setting") or {}))
    keys = list(settings) or [""]
    multi_dataset = len({str(s.get("dataset")) for s in settings.values()}) > 1
    labels = list(dict.fromkeys(loss_label(r.get("loss")) for r in results))
    colors = _colors(len(labels))
    from matplotlib.ticker import MaxNLocator

    fig, axes = _figure(len(keys))
    legend_done = False
    for ax, key in zip(axes, keys):
        drawn = False
        for li, lab in enumerate(labels):
            rs = [r for r in runs if setting_key(r.get("setting")) == key and loss_label(r.get("loss")) == lab]
            for field, style in (("test_accuracy", "-"), ("val_accuracy", "--")):
                per_epoch: dict[float, list[float]] = {}
                for r in rs:
                    for h in r.get("history") or []:
                        v, ep = h.get(field), h.get("epoch")
                        if v is None or ep is None or (isinstance(v, float) and math.isnan(v)):
                            continue
                        per_epoch.setdefault(float(ep), []).append(float(v))
                if not per_epoch:
                    continue
                ep = sorted(per_epoch)
                y = [100.0 * float(np.mean(per_epoch[e])) for e in ep]
                ax.plot(ep, y, style, color=colors[li], marker="." if len(ep) < 30 else None,
                        label=lab if field.startswith("test") else "_nolegend_")
                drawn = True
        if not drawn:
            ax.text(0.5, 0.5, "no training history", ha="center", va="center", transform=ax.transAxes)
        ax.set_title(setting_label(settings.get(key, {}), multi_dataset) if key else "")
        ax.set_xlabel("epoch")
        ax.set_ylabel("accuracy (%)")
        ax.grid(alpha=0.3)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if drawn and not legend_done:
            ax.legend(fontsize="x-small")
            legend_done = True
    fig.suptitle("accuracy during training (mean over seeds; solid test, dashed validation)")
    return _save(fig, path)


def _seed_key(seed: Any) -> tuple:
    return (0, seed, "") if isinstance(seed, (int, float)) else (1, 0, str(seed))


# ---------------------------------------------------------------------------- all plots


def write_compare_plots(report: dict[str, Any], results: Sequence[dict[str, Any]], out_dir: str | os.PathLike,
                        relative_to: str | os.PathLike | None = None, reliability: str = "grid",
                        load_logits: Callable[[str], dict] | None = None) -> dict[str, str]:
    """Write every compare plot into ``out_dir``; return ``{name: path}`` with paths relative
    to ``relative_to`` (default ``out_dir``; pass the report's folder when plots go in a subfolder).

    Names: ``accuracy_vs_noise``, ``training_curves``, and reliability diagrams from each
    loss's first successful seed's test logits (``load_logits(run_dir)`` -> ``{test_logits, test_labels}``;
    without ``load_logits`` there are none):
    ``reliability="grid"`` (default) draws one figure per setting, one panel per loss, named
    ``reliability: <setting label>``; ``reliability="per_loss"`` writes one figure per
    (setting, loss) with :func:`losscli.report.reliability.plot_reliability`, named
    ``reliability: <setting label>: <loss label>``; ``"none"`` skips them. A plot that cannot
    be drawn is skipped with a warning on stderr, never fatal.
    """
    if reliability not in ("grid", "per_loss", "none"):
        raise ValueError(f"reliability must be 'grid', 'per_loss' or 'none', got {reliability!r}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    base = Path(relative_to) if relative_to is not None else out
    written: dict[str, str] = {}

    def rel(p: Path) -> str:
        return Path(os.path.relpath(p, base)).as_posix()

    def attempt(name: str, fn, *args) -> None:
        try:
            p = fn(*args)
            if p is not None:
                written[name] = rel(p)
        except Exception as exc:  # plots are a convenience: never lose the report for them
            print(f"warning: could not draw plot {name!r}: {type(exc).__name__}: {exc}", file=sys.stderr)

    attempt("accuracy_vs_noise", plot_accuracy_vs_noise, report, out / "accuracy_vs_noise.png")
    attempt("training_curves", plot_training_curves, results, out / "training_curves.png")

    if reliability == "none" or load_logits is None:
        return written
    labels_order = list(dict.fromkeys(e["loss"]["label"] for e in report.get("results", [])))
    for s in report.get("settings", []):
        key = setting_key(s["setting"])
        panels = []
        for lab in labels_order:
            rs = sorted((r for r in results if r.get("status") == "ok" and loss_label(r.get("loss")) == lab
                         and setting_key(r.get("setting")) == key and r.get("run_dir")),
                        key=lambda r: _seed_key(r.get("seed")))
            for r in rs:
                try:
                    data = load_logits(r["run_dir"])
                except Exception as exc:  # noqa: BLE001 - a plot is a convenience: warn and go on
                    print(f"warning: no reliability diagram for {r['run_dir']}: {exc}", file=sys.stderr)
                    continue
                panels.append((lab, r.get("seed"), data["test_logits"].float(), data["test_labels"].long()))
                break
        if not panels:
            continue
        if reliability == "grid":
            from losscli.report.reliability import plot_reliability_grid

            attempt(f"reliability: {s['label']}", plot_reliability_grid,
                    [(f"{lab} (seed {seed})", lg, lb) for lab, seed, lg, lb in panels],
                    out / f"reliability_{_slug(s['label'])}.png", f"reliability on test, {s['label']}")
        else:
            from losscli.report.reliability import plot_reliability

            for lab, seed, lg, lb in panels:
                attempt(f"reliability: {s['label']}: {lab}",
                        lambda lg=lg, lb=lb, lab=lab, seed=seed: plot_reliability(
                            lg, lb, out / f"reliability_{_slug(s['label'])}_{_slug(lab)}.png",
                            title=f"{lab} (seed {seed}), {s['label']}", n_bins=N_BINS, is_probs=False))
    return written
