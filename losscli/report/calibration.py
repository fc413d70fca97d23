"""calibration.md: before/after tables on the test and validation splits, the metric
definitions and the reliability diagrams (a pure function of the report dict)."""

from __future__ import annotations

from typing import Any

from losscli.serialize import render_table


#: the metrics shown in calibration tables, in order
TABLE_METRICS = ("accuracy", "nll", "brier", "ece", "adaptive_ece", "classwise_ece", "mce")


def _fmt_params(params: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items())


def summary_rows(report: dict[str, Any], split: str = "test") -> list[dict[str, Any]]:
    """One row per method (uncalibrated first): the table metrics on ``split`` and the params."""
    rows = [{"method": "uncalibrated", **{k: report["uncalibrated"][split][k] for k in TABLE_METRICS}, "params": ""}]
    for name, entry in report["methods"].items():
        rows.append({"method": name, **{k: entry[split][k] for k in TABLE_METRICS}, "params": _fmt_params(entry["params"])})
    return rows


def render_calibration_markdown(report: dict[str, Any], images: dict[str, str] | None = None) -> str:
    d = report["data"]
    lines = [
        "# Calibration report",
        "",
        f"Calibrators are fitted on the validation split ({d['n_val']} samples) and scored on the test split "
        f"({d['n_test']} samples), {d['n_classes']} classes, {report['n_bins']} bins.",
        "",
        "## Test split",
        "",
        render_table(summary_rows(report, "test"), "md", floatfmt=".4f"),
        "",
        "## Validation split (fitting data: optimistic for the calibrated rows)",
        "",
        render_table(summary_rows(report, "val"), "md", floatfmt=".4f"),
        "",
        "## Metric definitions",
        "",
        report["definitions"].rstrip(),
        "",
        "Lower is better for nll, brier and the calibration errors; temperature scaling leaves accuracy "
        "exactly unchanged, the other methods may change it.",
    ]
    if images:
        lines += ["", "## Reliability diagrams (test split)", ""]
        for name, rel in images.items():
            lines += [f"### {name}", "", f"![{name} reliability diagram]({rel})", ""]
    return "\n".join(lines).rstrip() + "\n"
