"""Compare plots (PNG): the verdicts at a glance (effects), the metric against the setting that
varies, training curves, reliability diagrams, and tuning progress. matplotlib is imported
inside the functions; importing this package is cheap."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any, Callable, Sequence

from losscli.report.labels import loss_label, seed_sort, setting_key
from losscli.report.plots.common import slug
from losscli.report.plots.curves import plot_training_curves
from losscli.report.plots.effects import plot_effects
from losscli.report.plots.settings import plot_metric_vs_setting
from losscli.report.plots.tuning import plot_tuning

__all__ = ["plot_effects", "plot_metric_vs_setting", "plot_training_curves", "plot_tuning", "write_compare_plots"]


def write_compare_plots(report: dict[str, Any], results: Sequence[dict[str, Any]], out_dir: str | os.PathLike,
                        relative_to: str | os.PathLike | None = None, reliability: str = "grid",
                        load_logits: Callable[[str], dict] | None = None) -> dict[str, str]:
    """Write every compare plot into ``out_dir``; return ``{name: path}`` with paths relative to
    ``relative_to`` (default ``out_dir``).

    Names: ``effects``, ``accuracy_vs_setting`` (the primary metric against noise rate or imbalance
    ratio), ``training_curves``, ``tuning`` (when the report has tuning), and reliability diagrams
    from each loss's first finished seed (``load_logits(run_dir)`` -> ``{test_logits, test_labels}``;
    none without ``load_logits``): ``reliability="grid"`` draws one figure per setting, one panel per
    loss, named ``reliability: <setting>``; ``"per_loss"`` one figure per (setting, loss), named
    ``reliability: <setting>: <loss>``; ``"none"`` skips them. A plot that cannot be drawn is skipped
    with a warning on stderr, never fatal.
    """
    if reliability not in ("grid", "per_loss", "none"):
        raise ValueError(f"reliability must be 'grid', 'per_loss' or 'none', got {reliability!r}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    base = Path(relative_to) if relative_to is not None else out
    written: dict[str, str] = {}

    def attempt(name: str, fn, *args) -> None:
        try:
            p = fn(*args)
            if p is not None:
                written[name] = Path(os.path.relpath(p, base)).as_posix()
        except Exception as exc:  # noqa: BLE001 - plots are a convenience: never lose the report for them
            print(f"warning: could not draw plot {name!r}: {type(exc).__name__}: {exc}", file=sys.stderr)

    primary = report.get("primary_metric", "accuracy")
    attempt("effects", plot_effects, report, out / "effects.png")
    attempt(f"{primary}_vs_setting", plot_metric_vs_setting, report, out / f"{primary}_vs_setting.png")
    attempt("training_curves", plot_training_curves, results, out / "training_curves.png")
    if report.get("tuning"):
        attempt("tuning", plot_tuning, report["tuning"], out / "tuning.png")
    if reliability != "none" and load_logits is not None:
        for name, path, fn, args in _reliability_jobs(report, results, out, reliability, load_logits):
            attempt(name, fn, *args)
    return written


def _reliability_jobs(report, results, out: Path, mode: str, load_logits) -> list:
    from losscli.report.reliability import plot_reliability, plot_reliability_grid

    jobs = []
    labels_order = list(dict.fromkeys(e["loss"]["label"] for e in report.get("results", [])))
    for s in report.get("settings", []):
        key = setting_key(s["setting"])
        panels = []
        for lab in labels_order:
            rs = sorted((r for r in results if r.get("status") == "ok" and loss_label(r.get("loss")) == lab
                         and setting_key(r.get("setting")) == key and r.get("run_dir")),
                        key=lambda r: seed_sort(r.get("seed")))
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
        if mode == "grid":
            path = out / f"reliability_{slug(s['label'])}.png"
            jobs.append((f"reliability: {s['label']}", path, plot_reliability_grid,
                         ([(f"{lab} (seed {seed})", lg, lb) for lab, seed, lg, lb in panels], path,
                          f"reliability on test, {s['label']}")))
        else:
            for lab, seed, lg, lb in panels:
                path = out / f"reliability_{slug(s['label'])}_{slug(lab)}.png"
                jobs.append((f"reliability: {s['label']}: {lab}", path, plot_reliability,
                             (lg, lb, path, f"{lab} (seed {seed}), {s['label']}")))
    return jobs
