"""Markdown for one run's report (pure function of the report dict): classification runs, and
regression runs (``hl_gauss`` on float targets), whose metrics (MSE, MAE, R²) and best-epoch record
(by validation MSE) differ from a classifier's."""

from __future__ import annotations

from typing import Any

from losscli.serialize import render_table

from losscli.metrics.info import HEADLINE as _TEST_KEYS  # noqa: E402  (the headline metrics, in report order)


def render_run_markdown(report: dict[str, Any]) -> str:
    if report.get("task") == "regression":
        return _regression_markdown(report)
    cfg = report.get("config", {})
    env = report.get("env", {})
    m = report.get("metrics") or {}
    lines = [f"# losscli run: {report['loss']['label']} (seed {report['seed']})", ""]
    if report.get("status") != "ok":
        lines += [f"**Run failed:** {report.get('error')}", ""]
    s = report.get("setting", {})
    lines += [
        f"- dataset: `{s.get('dataset')}`, noise `{s.get('noise')}`, imbalance `{s.get('imbalance')}`",
        _model_line(cfg),
        *data_lines(report.get("data") or {}),
        f"- device: {env.get('device')} ({env.get('device_name')}), {env.get('dtype')}, compiled: {env.get('compiled')}",
        f"- train time: {report.get('timing', {}).get('train_seconds')} s",
        "",
    ]
    lines += _epoch_lines(m, "validation accuracy", "test accuracy", "test_accuracy", ".4f")
    lines.append("")
    rows = []
    for split in ("test", "val"):
        if m.get(split):
            rows.append({"split": split, **{k: m[split].get(k) for k in _TEST_KEYS}})
    if rows:
        lines += ["## Metrics (last epoch)", "", render_table(rows, "md", ["split", *_TEST_KEYS]), ""]
    if m.get("train"):
        lines += ["## Training set", "", render_table([m["train"]], "md"), ""]
    if m.get("shot_accuracy"):
        lines += ["## Long-tail accuracy (many / medium / few-shot classes)", "", render_table([m["shot_accuracy"]], "md"), ""]
    lines += [
        "ECE: 15 equal-width bins on the top-label confidence, last bin closed at 1.0; Brier: sum over classes, "
        "mean over samples; classwise ECE: mean over classes.",
        "",
    ]
    return "\n".join(lines)


def data_lines(data: dict[str, Any]) -> list[str]:
    """How the inputs were scaled and, for real-world label noise, what it measured to be."""
    out = []
    norm = data.get("normalization") or {}
    if norm.get("method") == "standardize":
        out.append(f"- inputs: standardised per {norm.get('per', 'feature')} with {norm.get('statistics', 'training-split')} "
                   "statistics")
    elif norm:
        out.append(f"- inputs: as stored ({norm.get('why', 'no normalisation')})")
    noise = data.get("noise") or {}
    if noise.get("kind") in ("file", "cifar10n", "cifar100n"):
        out.append(f"- label noise: {noise.get('method')}, `{noise.get('file')}` (sha256 {noise.get('sha256')}): "
                   f"{noise.get('num_flipped')} training labels differ from the clean ones (rate "
                   f"{noise.get('rate', 0):.3f}); validation {noise.get('validation')}; transition matrix in report.yaml")
    return out


_REGRESSION_KEYS = ("mse", "mae", "r2")


def _model_line(cfg: dict[str, Any]) -> str:
    train = cfg.get("train", {})
    return (f"- model: `{cfg.get('model', {}).get('resolved_name')}`; {train.get('epochs')} epochs, batch "
            f"{train.get('batch_size')}, {train.get('optimizer')} lr {train.get('lr')}, {train.get('schedule')} schedule")


def _epoch_lines(m: dict[str, Any], selected_by: str, title: str, key: str, fmt: str) -> list[str]:
    """The best epoch (chosen on the validation split) and the last one, with their test score."""
    out = []
    if m.get("best_epoch"):
        out.append(f"- best epoch (by {selected_by}): {m['best_epoch']['epoch']}, {title} {m['best_epoch'][key]:{fmt}}")
    if m.get("last_epoch"):
        out.append(f"- last epoch: {m['last_epoch']['epoch']}, {title} {m['last_epoch'][key]:{fmt}}")
    return out


def _regression_markdown(report: dict[str, Any]) -> str:
    cfg = report.get("config", {})
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
        _model_line(cfg),
        *data_lines(data),
        f"- train time: {report.get('timing', {}).get('train_seconds')} s",
        "",
    ]
    lines += _epoch_lines(m, "validation MSE", "test MSE", "test_mse", ".4g")
    rows = [{"split": split, **{k: m[split].get(k) for k in _REGRESSION_KEYS}}
            for split in ("test", "val", "train") if m.get(split)]
    if rows:
        lines += ["", "## Metrics (last epoch)", "", render_table(rows, "md", ["split", *_REGRESSION_KEYS]), ""]
    lines += ["Predictions are the loss's decoded values (hl_gauss: the expectation of the bin centres); "
              "R² = 1 - SS_res / SS_tot on each split (0: as good as that split's mean).", ""]
    return "\n".join(lines)
