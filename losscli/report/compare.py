"""Compare report: per-run results -> ``losscli/compare/v1`` dict, markdown and flat rows.

Pure functions, no torch. Input: one result dict per (setting, loss, seed) run::

    {status: ok|failed, error, run_dir, seed,
     loss: {name, params, label},            # label: unique display id of the loss
     setting: {dataset, noise, imbalance},
     metrics: {test: {...}, val: {...}, train: {...}},
     timing: {train_seconds, samples_per_second, loss_ms_per_step?},
     history: [{epoch, train_loss, val_accuracy, test_accuracy}, ...]}

Statistics use only ``status == "ok"`` runs (failed runs are counted, listed with
their error and kept in ``runs``). Each loss is compared with the baseline loss
*within each setting*, paired by seed (see ``losscli.report.stats``). A loss is
only ever called better or worse than the baseline when the paired test gives
``p < alpha``; with too few seeds the report says that no difference *can* be
significant rather than hinting at one.
"""

from __future__ import annotations

import json
import math
from typing import Any, Iterable, Sequence

from losscli.lossspec import format_loss_spec
from losscli.report import stats
from losscli.serialize import to_plain

SCHEMA = "losscli/compare/v1"
DEFAULT_METRICS = ("accuracy", "macro_f1", "nll", "ece", "brier", "adaptive_ece")
PRIMARY_METRIC = "accuracy"
TABLE_METRICS = ("accuracy", "macro_f1", "nll", "ece")

HIGHER_IS_BETTER = {"accuracy": True, "top5": True, "macro_f1": True, "balanced_accuracy": True,
                    "nll": False, "ece": False, "brier": False, "adaptive_ece": False,
                    "classwise_ece": False, "mce": False, "aurc": False}
# Metrics in [0, 1] shown in percent (points) to people.
PERCENT_METRICS = {"accuracy", "top5", "macro_f1", "balanced_accuracy"}
METRIC_TITLES = {"accuracy": "accuracy", "top5": "top-5", "macro_f1": "macro-F1",
                 "balanced_accuracy": "balanced accuracy", "nll": "NLL", "ece": "ECE", "brier": "Brier",
                 "adaptive_ece": "adaptive ECE", "classwise_ece": "classwise ECE", "mce": "MCE", "aurc": "AURC"}
METRIC_DEFINITIONS = {
    "accuracy": "share of test samples whose arg-max prediction is the true class (higher is better)",
    "top5": "share of test samples whose true class is among the 5 highest scores (higher is better)",
    "macro_f1": "unweighted mean over classes of per-class F1 (higher is better; sensitive to rare classes)",
    "balanced_accuracy": "mean per-class recall (higher is better)",
    "nll": "mean negative log-likelihood of the true class under softmax (lower is better)",
    "brier": "mean squared error between softmax probabilities and the one-hot label (lower is better)",
    "ece": "expected calibration error: confidence-vs-accuracy gap over equal-width confidence bins, "
           "weighted by bin size (lower is better)",
    "adaptive_ece": "ECE with equal-mass bins (lower is better)",
    "classwise_ece": "ECE averaged over classes' predicted probabilities (lower is better)",
    "mce": "maximum calibration error: the worst bin's gap (lower is better)",
    "aurc": "area under the risk-coverage curve of selective prediction (lower is better)",
}


def higher_is_better(metric: str) -> bool:
    """Metric direction; unknown metrics are treated as higher-is-better."""
    return HIGHER_IS_BETTER.get(metric, True)


# ---------------------------------------------------------------------------- helpers


def loss_label(loss: Any) -> str:
    """Display id of a run's loss: ``loss['label']``, else ``name(k=v,...)``, else ``str(loss)``."""
    if isinstance(loss, dict):
        if loss.get("label"):
            return str(loss["label"])
        return format_loss_spec(str(loss.get("name", "?")), loss.get("params") or {})
    return str(loss)


def _loss_dict(loss: Any) -> dict[str, Any]:
    if isinstance(loss, dict):
        return {"name": loss.get("name"), "params": dict(loss.get("params") or {}), "label": loss_label(loss)}
    return {"name": str(loss), "params": {}, "label": str(loss)}


def setting_key(setting: dict[str, Any] | None) -> str:
    return json.dumps(setting or {}, sort_keys=True, default=str)


def _is_none(value: Any) -> bool:
    return value is None or str(value).strip().lower() in ("none", "", "clean", "null")


def setting_label(setting: dict[str, Any], with_dataset: bool = False) -> str:
    """Short title, e.g. ``noise sym:0.4, imbalance none``."""
    parts = []
    if with_dataset and setting.get("dataset") is not None:
        parts.append(f"dataset {_name_of(setting['dataset'])}")
    parts.append(f"noise {setting.get('noise', 'none') if not _is_none(setting.get('noise')) else 'none'}")
    parts.append(f"imbalance {setting.get('imbalance') if not _is_none(setting.get('imbalance')) else 'none'}")
    for k, v in setting.items():
        if k not in ("dataset", "noise", "imbalance"):
            parts.append(f"{k} {v}")
    return ", ".join(parts)


def setting_phrase(setting: dict[str, Any], with_dataset: bool = False) -> str:
    """Words for a sentence: ``on clean data`` / ``under noise sym:0.4`` / ``under imbalance exp:100 ...``."""
    noise, imb = setting.get("noise"), setting.get("imbalance")
    if _is_none(noise) and _is_none(imb):
        out = "on clean data"
    elif _is_none(imb):
        out = f"under noise {noise}"
    elif _is_none(noise):
        out = f"under imbalance {imb} (clean labels)"
    else:
        out = f"under noise {noise} with imbalance {imb}"
    extra = [f"{k} {v}" for k, v in setting.items() if k not in ("dataset", "noise", "imbalance")]
    if extra:
        out += " (" + ", ".join(extra) + ")"
    if with_dataset and setting.get("dataset") is not None:
        out += f" on {_name_of(setting['dataset'])}"
    return out


def _name_of(value: Any) -> str:
    if isinstance(value, dict):
        name = value.get("name") or value.get("label") or ""
        rest = {k: v for k, v in value.items() if k not in ("name", "label")}
        if rest:
            return f"{name} (" + ", ".join(f"{k}={_short(v)}" for k, v in rest.items()) + ")"
        return str(name)
    if isinstance(value, (list, tuple)):
        return ", ".join(_name_of(v) for v in value)
    return str(value)


def _short(value: Any) -> str:
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}={_short(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_short(v) for v in value) + "]"
    return str(value)


def _num(value: Any) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        f = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(f) else f


def _seed_sort(seed: Any) -> tuple:
    return (0, seed, "") if isinstance(seed, (int, float)) else (1, 0, str(seed))


def _normalize_run(r: dict[str, Any]) -> dict[str, Any]:
    metrics = r.get("metrics") or {}
    return {
        "loss": loss_label(r.get("loss")),
        "loss_spec": _loss_dict(r.get("loss")),
        "seed": r.get("seed"),
        "setting": dict(r.get("setting") or {}),
        "status": "ok" if r.get("status") == "ok" else "failed",
        "error": r.get("error"),
        "run_dir": None if r.get("run_dir") is None else str(r.get("run_dir")),
        "metrics": {"test": dict(metrics.get("test") or {}), "val": dict(metrics.get("val") or {}),
                    "train": dict(metrics.get("train") or {})},
        "timing": dict(r.get("timing") or {}),
        "history": list(r.get("history") or []),
    }


def _config_order(config: dict[str, Any], key: str) -> list[str]:
    value = config.get(key)
    if value is None:
        return []
    if isinstance(value, str):
        value = [v.strip() for v in value.split(",")]
    return [str(v) if not isinstance(v, dict) else loss_label(v) for v in value]


def _ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b <= 0 or not math.isfinite(a) or not math.isfinite(b):
        return None
    return a / b


# ---------------------------------------------------------------------------- report


def build_compare_report(results: Sequence[dict[str, Any]], config: dict[str, Any] | None = None,
                         env: dict[str, Any] | None = None, metrics: Iterable[str] = DEFAULT_METRICS,
                         alpha: float = stats.ALPHA) -> dict[str, Any]:
    """Assemble the ``losscli/compare/v1`` report (a plain dict, YAML/JSON-safe).

    Keys: ``schema``, ``baseline``, ``primary_metric``, ``metrics`` (names),
    ``metric_directions``, ``statistics`` (test, alpha, CI method, seeds needed),
    ``config``, ``env``, ``settings`` (one per setting, in the config's noise x
    imbalance order), ``results`` (one per (setting, loss)), ``verdicts`` (per
    setting, plain sentences), ``runs`` (every run's raw numbers and errors),
    ``n_runs``, ``n_failed``.
    """
    config = dict(config or {})
    env = dict(env or {})
    metrics = list(metrics)
    primary = PRIMARY_METRIC if PRIMARY_METRIC in metrics else (metrics[0] if metrics else PRIMARY_METRIC)
    runs = [_normalize_run(r) for r in results]

    # ---- order of losses and settings
    labels: list[str] = []
    for lab in _config_order(config, "losses"):
        if lab not in labels:
            labels.append(lab)
    present = []
    for r in runs:
        if r["loss"] not in present:
            present.append(r["loss"])
    labels = [lab for lab in labels if lab in present] + [lab for lab in present if lab not in labels]
    specs = {}
    for r in runs:
        specs.setdefault(r["loss"], r["loss_spec"])

    baseline = config.get("baseline")
    baseline = loss_label(baseline) if baseline is not None else (labels[0] if labels else None)
    if baseline is not None and baseline not in labels:
        by_name = [lab for lab in labels if specs[lab].get("name") == baseline]
        if by_name:
            baseline = by_name[0]

    noise_order = _config_order(config, "noise")
    imb_order = _config_order(config, "imbalance")
    settings_map: dict[str, dict[str, Any]] = {}
    appearance: dict[str, int] = {}
    for r in runs:
        k = setting_key(r["setting"])
        if k not in settings_map:
            settings_map[k] = r["setting"]
            appearance[k] = len(appearance)

    def _order(k: str) -> tuple:
        s = settings_map[k]
        noise, imb = str(s.get("noise", "none")), str(s.get("imbalance", "none"))
        return (str(_name_of(s.get("dataset"))),
                imb_order.index(imb) if imb in imb_order else len(imb_order),
                noise_order.index(noise) if noise in noise_order else len(noise_order),
                appearance[k])

    setting_keys = sorted(settings_map, key=_order)
    datasets = {_name_of(s.get("dataset")) for s in settings_map.values()}
    multi_dataset = len(datasets) > 1

    # ---- per (setting, loss)
    result_entries: list[dict[str, Any]] = []
    settings_out: list[dict[str, Any]] = []
    verdicts: list[dict[str, Any]] = []
    for sk in setting_keys:
        setting = settings_map[sk]
        s_runs = [r for r in runs if setting_key(r["setting"]) == sk]
        by_loss: dict[str, list[dict[str, Any]]] = {}
        for lab in labels:
            lr = [r for r in s_runs if r["loss"] == lab]
            if lr:
                by_loss[lab] = sorted(lr, key=lambda r: _seed_sort(r["seed"]))

        def ok_by_seed(lab: str) -> dict[Any, dict[str, Any]]:
            return {r["seed"]: r for r in by_loss.get(lab, []) if r["status"] == "ok"}

        base_ok = ok_by_seed(baseline) if baseline in by_loss else {}
        base_loss_ms = stats.summarize([_num(r["timing"].get("loss_ms_per_step")) for r in base_ok.values()])["mean"]
        base_train_s = stats.summarize([_num(r["timing"].get("train_seconds")) for r in base_ok.values()])["mean"]

        entries = []
        for lab, lr in by_loss.items():
            own_ok = ok_by_seed(lab)
            seeds = sorted(own_ok, key=_seed_sort)
            failed = [r for r in lr if r["status"] != "ok"]
            entry: dict[str, Any] = {
                "loss": specs[lab],
                "setting": setting,
                "setting_label": setting_label(setting, multi_dataset),
                "is_baseline": lab == baseline,
                "n_ok": len(own_ok),
                "n_failed": len(failed),
                "seeds": seeds,
                "errors": [{"seed": r["seed"], "error": r["error"]} for r in failed],
                "metrics": {},
            }
            paired_seeds = [s for s in seeds if s in base_ok] if lab != baseline else []
            for m in metrics:
                summary = stats.summarize([_num(own_ok[s]["metrics"]["test"].get(m)) for s in seeds])
                if lab == baseline or not base_ok:
                    summary["vs_baseline"] = None
                else:
                    hib = higher_is_better(m)
                    t = stats.paired_test([_num(own_ok[s]["metrics"]["test"].get(m)) for s in paired_seeds],
                                          [_num(base_ok[s]["metrics"]["test"].get(m)) for s in paired_seeds],
                                          higher_is_better=hib)
                    t["significant"] = stats.is_significant(t["p_value"], alpha)
                    t["outcome"] = stats.compare_outcome(t, hib, alpha)
                    t["seeds"] = [s for s in paired_seeds
                                  if _num(own_ok[s]["metrics"]["test"].get(m)) is not None
                                  and _num(base_ok[s]["metrics"]["test"].get(m)) is not None]
                    summary["vs_baseline"] = t
                summary["rank"] = None
                entry["metrics"][m] = summary
            train_s = stats.summarize([_num(own_ok[s]["timing"].get("train_seconds")) for s in seeds])
            sps = stats.summarize([_num(own_ok[s]["timing"].get("samples_per_second")) for s in seeds])
            loss_ms = stats.summarize([_num(own_ok[s]["timing"].get("loss_ms_per_step")) for s in seeds])
            entry["timing"] = {
                "train_seconds": train_s,
                "samples_per_second": sps,
                "loss_ms_per_step": loss_ms if loss_ms["n"] else None,
                # mean loss time per step / baseline's (1.0 = same cost); None when not measured
                "loss_overhead_vs_baseline": _ratio(loss_ms["mean"], base_loss_ms),
                # mean training wall time / baseline's
                "train_time_vs_baseline": _ratio(train_s["mean"], base_train_s),
            }
            entries.append(entry)

        for m in metrics:
            ranks = stats.rank([e["metrics"][m]["mean"] for e in entries], higher_is_better(m))
            for e, rk in zip(entries, ranks):
                e["metrics"][m]["rank"] = rk
        result_entries.extend(entries)

        n_runs = len(s_runs)
        n_fail = sum(1 for r in s_runs if r["status"] != "ok")
        settings_out.append({"setting": setting, "label": setting_label(setting, multi_dataset),
                             "n_runs": n_runs, "n_ok": n_runs - n_fail, "n_failed": n_fail,
                             "losses": list(by_loss)})
        verdicts.append({"setting": setting, "label": setting_label(setting, multi_dataset),
                         "sentences": _verdicts_for(entries, setting, baseline, primary, metrics, alpha,
                                                    multi_dataset, baseline in by_loss)})

    seeds_cfg = config.get("seeds")
    n_seeds = len(seeds_cfg) if isinstance(seeds_cfg, (list, tuple)) else (
        seeds_cfg if isinstance(seeds_cfg, int) else len({r["seed"] for r in runs}))
    report = {
        "schema": SCHEMA,
        "baseline": baseline,
        "primary_metric": primary,
        "metrics": metrics,
        "metric_directions": {m: "higher" if higher_is_better(m) else "lower" for m in metrics},
        "statistics": {
            "summary": "mean, sample std (ddof=1), 95% CI of the mean from Student's t (n-1 df); "
                       "one value: std 0 and CI [v, v]",
            "test": stats.TEST_NAME + " on per-seed paired differences vs the baseline, two-sided",
            "alpha": alpha,
            "n_seeds": n_seeds,
            "min_p_value": stats.min_p_value(n_seeds) if n_seeds else None,
            "seeds_needed_for_significance": stats.min_seeds_for(alpha),
            "can_reach_significance": bool(n_seeds) and stats.can_reach_significance(n_seeds, alpha),
            "rank": "1 = best mean in the setting, ties share the average rank",
        },
        "config": config,
        "env": env,
        "settings": settings_out,
        "results": result_entries,
        "verdicts": verdicts,
        "runs": runs,
        "n_runs": len(runs),
        "n_failed": sum(1 for r in runs if r["status"] != "ok"),
    }
    return to_plain(report)


# ---------------------------------------------------------------------------- wording


def fmt_p(p: float | None) -> str:
    if p is None:
        return "n/a"
    if p < 0.001:
        return "<0.001"
    return f"{p:.3g}"


def fmt_diff(metric: str, diff: float | None) -> str:
    """``+12.0 accuracy points`` / ``-0.052 NLL``."""
    if diff is None:
        return f"n/a {METRIC_TITLES.get(metric, metric)}"
    if metric in PERCENT_METRICS:
        return f"{100 * diff:+.1f} {METRIC_TITLES.get(metric, metric)} points"
    return f"{diff:+.3g} {METRIC_TITLES.get(metric, metric)}"


def _direction_word(metric: str) -> str:
    return "higher" if higher_is_better(metric) else "lower"


def verdict_sentence(loss: str, baseline: str, metric: str, test: dict[str, Any] | None, phrase: str) -> str:
    """One sentence for a paired comparison; says "beats" only for a significant, favourable result."""
    outcome = (test or {}).get("outcome") or stats.compare_outcome(test or {}, higher_is_better(metric))
    if outcome == "no_data":
        return f"{loss} could not be compared with {baseline} {phrase} on {METRIC_TITLES.get(metric, metric)}: " \
               f"no seed where both runs succeeded."
    n = test["n"]
    side = f"{_direction_word(metric)} on {test['wins']}/{n} seeds"
    p_text = f"p={fmt_p(test['p_value'])}"
    if outcome in ("better", "worse"):
        if metric in PERCENT_METRICS:
            size, note = f"by {fmt_diff(metric, test['diff'])}", ""
        else:
            size = f"on {METRIC_TITLES.get(metric, metric)} by {test['diff']:+.3g}"
            note = f"{_direction_word(metric)} is better; "
        if outcome == "better":
            return f"{loss} beats {baseline} {phrase} {size} ({note}{p_text}, {test['wins']}/{n} seeds)."
        return f"{loss} is worse than {baseline} {phrase} {size} ({note}{p_text}, {test['losses']}/{n} seeds worse)."
    if outcome == "too_few_seeds":
        n_eff = n - test.get("ties", 0)
        return f"No significant difference between {loss} and {baseline} {phrase} " \
               f"({n} seeds; with {n_eff} seeds the smallest possible p is {fmt_p(stats.min_p_value(n_eff))}, " \
               f"so no difference can reach p<{stats.ALPHA:g}): observed {fmt_diff(metric, test['diff'])}, " \
               f"{side}."
    return f"No significant difference between {loss} and {baseline} {phrase}: " \
           f"{fmt_diff(metric, test['diff'])}, p={fmt_p(test['p_value'])}, {side}."


def _verdicts_for(entries: list[dict[str, Any]], setting: dict[str, Any], baseline: str | None, primary: str,
                  metrics: list[str], alpha: float, multi_dataset: bool, has_baseline: bool) -> list[str]:
    phrase = setting_phrase(setting, multi_dataset)
    out: list[str] = []
    base_entry = next((e for e in entries if e["is_baseline"]), None)
    if not has_baseline or base_entry is None:
        out.append(f"Baseline {baseline} has no runs {phrase}; nothing to compare against.")
    elif base_entry["n_ok"] == 0:
        out.append(f"All {base_entry['n_failed']} runs of the baseline {baseline} failed {phrase}; "
                   f"nothing to compare against.")
    for e in entries:
        lab = e["loss"]["label"]
        total = e["n_ok"] + e["n_failed"]
        if e["n_failed"]:
            if e["n_ok"] == 0:
                out.append(f"All {total} runs of {lab} failed {phrase}.")
                continue
            out.append(f"{e['n_failed']} of {total} runs of {lab} failed {phrase}; "
                       f"its statistics use the {e['n_ok']} that succeeded.")
    for e in entries:
        if e["is_baseline"] or e["n_ok"] == 0 or base_entry is None or base_entry["n_ok"] == 0:
            continue
        lab = e["loss"]["label"]
        test = e["metrics"].get(primary, {}).get("vs_baseline")
        out.append(verdict_sentence(lab, baseline, primary, test, phrase))
        for m in metrics:
            if m == primary:
                continue
            t = e["metrics"][m].get("vs_baseline")
            if t and t.get("outcome") in ("better", "worse"):
                out.append(verdict_sentence(lab, baseline, m, t, phrase))
    return out


# ---------------------------------------------------------------------------- markdown


def _fmt_value(metric: str, value: float | None, like: float | None = None) -> str:
    """Percent metrics with 1 decimal; others with 3 decimals, or 2 significant digits in
    scientific notation when ``like`` (the mean the value goes with) is below 0.01."""
    if value is None:
        return "—"
    if not math.isfinite(value):
        return str(value)
    if metric in PERCENT_METRICS:
        return f"{100 * value:.1f}"
    ref = abs(like if like is not None else value)
    return f"{value:.3f}" if ref >= 0.01 or ref == 0 else f"{value:.2e}"


def _fmt_summary(metric: str, s: dict[str, Any], with_ci: bool) -> str:
    if not s or s.get("mean") is None:
        return "—"
    mean = s["mean"]
    text = _fmt_value(metric, mean)
    if s.get("n", 0) > 1:
        text += f" ± {_fmt_value(metric, s['std'], mean)}"
        if with_ci and s.get("ci95"):
            text += f" [{_fmt_value(metric, s['ci95'][0], mean)}, {_fmt_value(metric, s['ci95'][1], mean)}]"
    return text


def _md_escape(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ").replace("\r", " ")


def _best_significant(entries: list[dict[str, Any]], metric: str) -> set[int]:
    """Indices of entries holding the best mean that are also significantly better than the baseline."""
    means = [e["metrics"].get(metric, {}).get("mean") for e in entries]
    ranks = stats.rank(means, higher_is_better(metric))
    out = set()
    for i, (e, rk) in enumerate(zip(entries, ranks)):
        if rk is None or rk != min(r for r in ranks if r is not None):
            continue
        t = e["metrics"][metric].get("vs_baseline")
        if t and t.get("outcome") == "better":
            out.add(i)
    return out


def _setup_rows(report: dict[str, Any]) -> list[tuple[str, str]]:
    cfg, env, st = report.get("config") or {}, report.get("env") or {}, report.get("statistics") or {}
    rows: list[tuple[str, str]] = []
    # "resolved" is the full config for pipelines (report.yaml); too long for the setup table
    used = {"dataset", "model", "epochs", "batch_size", "seeds", "losses", "noise", "imbalance", "baseline", "resolved"}
    rows.append(("dataset", _name_of(cfg.get("dataset", "—"))))
    rows.append(("model", _name_of(cfg.get("model", "—"))))
    budget = []
    if cfg.get("epochs") is not None:
        budget.append(f"{cfg['epochs']} epochs")
    if cfg.get("batch_size") is not None:
        budget.append(f"batch size {cfg['batch_size']}")
    rows.append(("budget", ", ".join(budget) or "—"))
    losses = [r["loss"]["label"] for r in report.get("results", [])]
    losses = list(dict.fromkeys(losses))
    rows.append(("losses", ", ".join(f"{lab} (baseline)" if lab == report.get("baseline") else lab
                                     for lab in losses) or "—"))
    noises = list(dict.fromkeys(str(s["setting"].get("noise", "none")) for s in report.get("settings", [])))
    imbs = list(dict.fromkeys(str(s["setting"].get("imbalance", "none")) for s in report.get("settings", [])))
    rows.append(("label noise", ", ".join(noises) or "none"))
    rows.append(("class imbalance", ", ".join(imbs) or "none"))
    seeds = cfg.get("seeds")
    if isinstance(seeds, (list, tuple)):
        rows.append(("seeds", f"{', '.join(str(s) for s in seeds)} ({len(seeds)} per loss and setting)"))
    else:
        rows.append(("seeds", f"{st.get('n_seeds', seeds)} per loss and setting"))
    hw = []
    for key in ("device", "device_name", "threads", "dtype", "compiled"):
        if env.get(key) is not None:
            hw.append(f"{key} {env[key]}" if key not in ("device", "device_name") else str(env[key]))
    versions = [f"{k} {env[k]}" for k in ("losscli", "torch", "python") if env.get(k) is not None]
    rows.append(("hardware", "; ".join(x for x in (", ".join(hw), ", ".join(versions)) if x) or "—"))
    for k, v in cfg.items():
        if k not in used:
            rows.append((str(k), _short(v)))
    rows.append(("statistics", f"per-seed mean ± std [95% t-interval]; paired {stats.TEST_NAME} test vs "
                               f"{report.get('baseline')} across seeds, two-sided, alpha={st.get('alpha', stats.ALPHA):g}"))
    return rows


def render_compare_markdown(report: dict[str, Any], plots: dict[str, str] | None = None,
                            table_metrics: Sequence[str] = TABLE_METRICS) -> str:
    """``report.md`` text: setup, significance caveat, verdicts, one table per setting,
    failed runs, plots (links as given in ``plots``: name -> path relative to the report),
    metric notes."""
    baseline = report.get("baseline")
    st = report.get("statistics") or {}
    alpha = st.get("alpha", stats.ALPHA)
    primary = report.get("primary_metric", PRIMARY_METRIC)
    metrics_avail = report.get("metrics") or []
    table_metrics = [m for m in table_metrics if m in metrics_avail]
    lines: list[str] = ["# losscli compare report", ""]

    lines += ["## Setup", "", "| | |", "|---|---|"]
    lines += [f"| {_md_escape(k)} | {_md_escape(v)} |" for k, v in _setup_rows(report)]
    lines.append("")
    n_seeds = st.get("n_seeds")
    if n_seeds and not st.get("can_reach_significance", True):
        lines += [f"> **Too few seeds for significance.** With {n_seeds} seed(s) per configuration the smallest "
                  f"p-value the paired test can give is {fmt_p(stats.min_p_value(n_seeds))}, above alpha={alpha:g}: "
                  f"no difference in this report can be called significant, whatever its size. "
                  f"Use at least {st.get('seeds_needed_for_significance', stats.min_seeds_for(alpha))} seeds "
                  f"to be able to detect one.", ""]
    if report.get("n_failed"):
        lines += [f"> **{report['n_failed']} of {report.get('n_runs')} runs failed**; they are left out of the "
                  f"statistics and listed under their setting.", ""]

    lines += ["## Verdicts", ""]
    for v in report.get("verdicts", []):
        lines.append(f"**{_md_escape(v['label'])}**")
        lines.append("")
        lines += [f"- {s}" for s in v["sentences"]] or ["- (no comparison)"]
        lines.append("")

    lines += ["## Results per setting", "",
              f"Mean ± std over seeds [95% CI] on the test split; accuracy and macro-F1 in %. "
              f"**Bold**: best in the setting *and* significantly better than {baseline} (p<{alpha:g}). "
              f"p: paired test on {METRIC_TITLES.get(primary, primary)} vs {baseline}; W/T/L: seeds where the "
              f"loss was better/tied/worse.", ""]
    for s in report.get("settings", []):
        key = setting_key(s["setting"])
        entries = [e for e in report.get("results", []) if setting_key(e["setting"]) == key]
        lines.append(f"### {_md_escape(s['label'])}")
        lines.append("")
        headers = ["loss", "runs"] + [METRIC_TITLES.get(m, m) for m in table_metrics] + \
                  ["train time (s)", f"loss time vs {baseline}", f"p vs {baseline}", "W/T/L"]
        lines.append("| " + " | ".join(_md_escape(h) for h in headers) + " |")
        lines.append("|" + "|".join(["---"] + ["---:"] * (len(headers) - 1)) + "|")
        bold = {m: _best_significant(entries, m) for m in table_metrics}
        for i, e in enumerate(entries):
            lab = e["loss"]["label"] + (" (baseline)" if e.get("is_baseline") else "")
            total = e["n_ok"] + e["n_failed"]
            runs = f"{e['n_ok']}" if not e["n_failed"] else f"{e['n_ok']}/{total} ({e['n_failed']} failed)"
            if e["n_ok"] == 0:
                runs = f"0/{total} (all failed)"
            cells = [_md_escape(lab), runs]
            for m in table_metrics:
                txt = _fmt_summary(m, e["metrics"].get(m, {}), with_ci=(m == primary))
                cells.append(f"**{txt}**" if i in bold[m] else txt)
            tm = e.get("timing") or {}
            ts = tm.get("train_seconds") or {}
            cells.append("—" if ts.get("mean") is None else f"{ts['mean']:.1f}")
            ov = tm.get("loss_overhead_vs_baseline")
            cells.append("1.00×" if e.get("is_baseline") and (tm.get("loss_ms_per_step") or {}).get("mean")
                         else ("—" if ov is None else f"{ov:.2f}×"))
            t = (e["metrics"].get(primary) or {}).get("vs_baseline")
            if e.get("is_baseline"):
                cells += ["baseline", ""]
            elif not t or t.get("p_value") is None:
                cells += ["—", ""]
            else:
                cells += [fmt_p(t["p_value"]) + (" *" if t.get("significant") else ""),
                          f"{t['wins']}/{t['ties']}/{t['losses']}"]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
        failed = [(e["loss"]["label"], err) for e in entries for err in e.get("errors", [])]
        if failed:
            lines.append("Failed runs (excluded from the statistics):")
            lines.append("")
            lines += [f"- {_md_escape(lab)}, seed {err.get('seed')}: {_md_escape(err.get('error') or 'unknown error')}"
                      for lab, err in failed]
            lines.append("")

    if plots:
        lines += ["## Plots", ""]
        for name, path in plots.items():
            lines += [f"### {name.replace('_', ' ')}", "", f"![{name}]({path})", ""]

    lines += ["## Metric notes", ""]
    for m in metrics_avail:
        if m in METRIC_DEFINITIONS:
            lines.append(f"- **{METRIC_TITLES.get(m, m)}**: {METRIC_DEFINITIONS[m]}.")
    lines += [f"- **Loss time vs {baseline}**: mean time of the loss forward+backward per step divided by the "
              f"baseline's (1.00× = same cost; — when not measured).",
              f"- **p**: two-sided {stats.TEST_NAME} test on the per-seed differences from {baseline}; with n "
              f"seeds it cannot go below 2/2^n (0.25 for 3 seeds, 0.031 for 6). \"Beats\" and bold are used only "
              f"when p<{alpha:g}.", ""]
    return "\n".join(lines)


# ---------------------------------------------------------------------------- flat rows


def summary_rows(report: dict[str, Any], metrics: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """One flat dict per (setting, loss) for ``--format table|md|json|yaml``.

    Keys: ``dataset``, ``noise``, ``imbalance``, ``loss``, ``n_ok``, ``n_failed``; per metric
    ``<m>`` (mean) and ``<m>_std``; for the primary metric also ``<m>_ci_lo``, ``<m>_ci_hi``,
    ``<m>_rank``; then ``p_vs_baseline``, ``wins``, ``ties``, ``losses``, ``significant``, ``outcome``
    (all on the primary metric; ``None`` for the baseline), ``train_seconds``, ``loss_overhead``.
    """
    metrics = list(metrics) if metrics is not None else list(report.get("metrics") or [])
    primary = report.get("primary_metric", PRIMARY_METRIC)
    rows = []
    for e in report.get("results", []):
        s = e["setting"]
        row: dict[str, Any] = {"dataset": _name_of(s.get("dataset")) if s.get("dataset") is not None else None,
                               "noise": s.get("noise"), "imbalance": s.get("imbalance"),
                               "loss": e["loss"]["label"], "n_ok": e["n_ok"], "n_failed": e["n_failed"]}
        for m in metrics:
            ms = e["metrics"].get(m) or {}
            row[m] = ms.get("mean")
            row[f"{m}_std"] = ms.get("std")
            if m == primary:
                ci = ms.get("ci95") or [None, None]
                row[f"{m}_ci_lo"], row[f"{m}_ci_hi"] = ci[0], ci[1]
                row[f"{m}_rank"] = ms.get("rank")
        t = (e["metrics"].get(primary) or {}).get("vs_baseline") or {}
        row["p_vs_baseline"] = t.get("p_value")
        row["wins"], row["ties"], row["losses"] = t.get("wins"), t.get("ties"), t.get("losses")
        row["significant"] = t.get("significant") if t else None
        row["outcome"] = t.get("outcome") if t else ("baseline" if e.get("is_baseline") else None)
        tm = e.get("timing") or {}
        row["train_seconds"] = (tm.get("train_seconds") or {}).get("mean")
        row["loss_overhead"] = tm.get("loss_overhead_vs_baseline")
        rows.append(row)
    return rows
