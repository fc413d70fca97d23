"""The markdown of one run's report.md: classification runs through ``losscli.report.run``;
regression runs (``hl_gauss`` on float targets) get their own short page here, since their
metrics (MSE, MAE, R²) and best-epoch record (by validation MSE) differ from a classifier's.
"""

from __future__ import annotations

from typing import Any

from losscli.serialize import render_table

_REGRESSION_KEYS = ("mse", "mae", "r2")


def render_run_report(report: dict[str, Any]) -> str:
    if report.get("task") != "regression":
        from losscli.report.run import render_run_markdown

        return render_run_markdown(report)
    return _regression_markdown(report)


def _regression_markdown(report: dict[str, Any]) -> str:
    cfg = report.get("config", {})
    train = cfg.get("train", {})
    m = report.get("metrics") or {}
    data = report.get("data") or {}
    lines = [f"# losscli run: {report['loss']['label']} (seed {report['seed']}, regression)", ""]
    if report.get("status") != "ok":
        lines += [f"**Run failed:** {report.get('error')}", ""]
    target = data.get("target") or {}
    lines += [
        f"- dataset: `{report.get('setting', {}).get('dataset')}` (regression; training targets: mean "
        f"{target.get('mean', float('nan')):.4g}, std {target.get('std', float('nan')):.4g}, range "
        f"[{target.get('min', float('nan')):.4g}, {target.get('max', float('nan')):.4g}])",
        f"- model: `{cfg.get('model', {}).get('resolved_name')}`; {train.get('epochs')} epochs, batch "
        f"{train.get('batch_size')}, {train.get('optimizer')} lr {train.get('lr')}, {train.get('schedule')} schedule",
        f"- train time: {report.get('timing', {}).get('train_seconds')} s",
        "",
    ]
    best, last = m.get("best_epoch"), m.get("last_epoch")
    if best:
        lines.append(f"- best epoch (by validation MSE): {best['epoch']}, test MSE {best['test_mse']:.4g}")
    if last:
        lines.append(f"- last epoch: {last['epoch']}, test MSE {last['test_mse']:.4g}")
    rows = [{"split": split, **{k: m[split].get(k) for k in _REGRESSION_KEYS}}
            for split in ("test", "val", "train") if m.get(split)]
    if rows:
        lines += ["", "## Metrics (last epoch)", "", render_table(rows, "md", ["split", *_REGRESSION_KEYS]), ""]
    lines += ["Predictions are the loss's decoded values (hl_gauss: the expectation of the bin centres); "
              "R² = 1 - SS_res / SS_tot on each split (0: as good as that split's mean).", ""]
    return "\n".join(lines)
