"""Numbers for people: metric values, differences, intervals and p-values, with units from the
metric table (percent metrics in points, others in their own units, three significant digits)."""

from __future__ import annotations

import math
from typing import Any

from losscli.metrics.info import metric_info


def fmt_p(p: float | None) -> str:
    if p is None:
        return "n/a"
    if p < 0.001:
        return "<0.001"
    return f"{p:.2g}" if p < 0.01 else f"{p:.3g}"


def fmt_value(metric: str, value: float | None, like: float | None = None) -> str:
    """Percent metrics with 1 decimal (in %), others with 3 decimals (or 2 significant digits in
    scientific notation when ``like``, the mean the value goes with, is below 0.01)."""
    if value is None:
        return "—"
    if not math.isfinite(value):
        return str(value)
    if metric_info(metric).percent:
        return f"{100 * value:.1f}"
    ref = abs(like if like is not None else value)
    return f"{value:.3f}" if ref >= 0.01 or ref == 0 else f"{value:.2e}"


def fmt_diff(metric: str, diff: float | None, with_unit: bool = True) -> str:
    """``+12.0 points`` for percent metrics, ``-0.052`` otherwise."""
    if diff is None:
        return "n/a"
    if metric_info(metric).percent:
        return f"{100 * diff:+.1f}" + (" points" if with_unit else "")
    return f"{diff:+.3g}"


def fmt_effect(metric: str, diff: float | None, min_effect: float | None, with_unit: bool = True) -> str:
    """:func:`fmt_diff`, with two decimals where one would round a difference below the minimum effect
    up to it: "-0.97 points" beside "smaller than the 1-point minimum effect", not "-1.0 points"."""
    if diff is not None and min_effect and metric_info(metric).percent and \
            abs(diff) < min_effect <= round(100 * abs(diff), 1) / 100:
        return f"{100 * diff:+.2f}" + (" points" if with_unit else "")
    return fmt_diff(metric, diff, with_unit)


def fmt_interval(metric: str, ci: list | None) -> str:
    if not ci or ci[0] is None:
        return ""
    return f"[{fmt_diff(metric, ci[0], False)}, {fmt_diff(metric, ci[1], False)}]"


def fmt_summary(metric: str, s: dict[str, Any], with_ci: bool) -> str:
    """``mean ± std [ci]`` of a summary (see :func:`losscli.stats.summarize`)."""
    if not s or s.get("mean") is None:
        return "—"
    mean = s["mean"]
    text = fmt_value(metric, mean)
    if s.get("n", 0) > 1:
        text += f" ± {fmt_value(metric, s['std'], mean)}"
        if with_ci and s.get("ci95"):
            text += f" [{fmt_value(metric, s['ci95'][0], mean)}, {fmt_value(metric, s['ci95'][1], mean)}]"
    return text


def md_escape(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ").replace("\r", " ")
