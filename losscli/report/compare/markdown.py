"""report.md from the report dict, as a list of section renderers: a new section is one function.

Each renderer takes ``(report, ctx)`` and returns markdown lines (empty: no section). ``ctx``
holds what is not in the report: the plot paths and the metrics shown in the tables.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

from losscli.metrics.info import metric_info
from losscli.report.format import fmt_diff, fmt_effect, fmt_p, fmt_summary, md_escape
from losscli.report.labels import name_of, plural, setting_key, short

Section = Callable[[dict, dict], list]


def _table(headers: list[str], rows: list[list[str]], align_first: int = 1) -> list[str]:
    out = ["| " + " | ".join(md_escape(h) for h in headers) + " |",
           "|" + "|".join(["---"] * align_first + ["---:"] * (len(headers) - align_first)) + "|"]
    return out + ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]


def setup(report: dict, ctx: dict) -> list[str]:
    cfg, env, st = report.get("config") or {}, report.get("env") or {}, report.get("statistics") or {}
    seeds = cfg.get("seeds")
    rows = [
        ("dataset", name_of(cfg.get("dataset", "—"))),
        ("model", name_of(cfg.get("model", "—"))),
        ("budget", ", ".join(x for x in (f"{cfg['epochs']} epochs" if cfg.get("epochs") is not None else "",
                                         f"batch size {cfg['batch_size']}" if cfg.get("batch_size") else "",
                                         f"{cfg.get('optimizer')} lr {cfg.get('lr')}" if cfg.get("lr") else "") if x)),
        ("losses", ", ".join(f"{lab} (baseline)" if lab == report.get("baseline") else lab
                             for lab in dict.fromkeys(e["loss"]["label"] for e in report.get("results", []))) or "—"),
        ("label noise", ", ".join(dict.fromkeys(str(s["setting"].get("noise")) for s in report.get("settings", [])))),
        ("class imbalance", ", ".join(dict.fromkeys(str(s["setting"].get("imbalance"))
                                                    for s in report.get("settings", [])))),
        ("seeds", f"{', '.join(map(str, seeds))} ({plural(len(seeds), 'seed')} per loss and setting)"
         if isinstance(seeds, (list, tuple)) else f"{st.get('n_seeds')} per loss and setting"),
        ("validation labels", cfg.get("validation", "—")),
        ("hyperparameters", cfg.get("hyperparameters", "—")),
        ("hardware", "; ".join(x for x in (", ".join(str(env[k]) for k in ("device", "device_name") if env.get(k)),
                                           ", ".join(f"{k} {env[k]}" for k in ("threads", "dtype", "compiled")
                                                     if env.get(k) is not None),
                                           ", ".join(f"{k} {env[k]}" for k in ("losscli", "torch", "python")
                                                     if env.get(k))) if x)),
        ("statistics", f"{st.get('test_description')}; {st.get('correction_description')} over "
                       f"{plural(st.get('family_size', 0), 'comparison')} per metric; alpha {st.get('alpha')}, "
                       f"minimum effect {plural_points(st.get('min_effect'))}"),
    ]
    return ["## Setup", "", *_table(["", ""], [[k, md_escape(v)] for k, v in rows], align_first=2), ""]


def plural_points(x: float | None) -> str:
    return "none" if not x else f"{x:g} point" + ("" if x == 1 else "s")


def warnings(report: dict, ctx: dict) -> list[str]:
    out = []
    if report.get("n_failed"):
        out += [f"> **{report['n_failed']} of {plural(report.get('n_runs', 0), 'run')} failed**; they are left out "
                "of the statistics and listed under their setting.", ""]
    if report.get("n_pending"):
        out += [f"> **{report['n_pending']} of {plural(report.get('n_runs', 0), 'run')} have not finished**; rerun "
                "the same command to complete them (finished runs are kept).", ""]
    return out


def verdicts(report: dict, ctx: dict) -> list[str]:
    out = ["## Verdicts", "", f"On {metric_info(report.get('primary_metric', 'accuracy')).title} against "
           f"{report.get('baseline')}; *adopt* and *avoid* need an adjusted p below alpha and a difference of at "
           "least the minimum effect. Intervals are 95% and not adjusted for the number of comparisons.", ""]
    for v in report.get("verdicts", []):
        out += [f"**{md_escape(v['label'])}**", ""]
        out += [f"- {md_escape(s)}" for s in v["sentences"]] or ["- (no comparison)"]
        out.append("")
    return out


def _row(e: dict, report: dict, table_metrics: list[str], primary: str) -> list[str]:
    lab = e["loss"]["label"] + (" (baseline)" if e.get("is_baseline") else "")
    total = e["n_ok"] + e["n_failed"] + e.get("n_pending", 0)
    runs = f"{e['n_ok']}" if e["n_ok"] == total else f"{e['n_ok']}/{total}"
    cells = [md_escape(lab), runs]
    for m in table_metrics:
        s = e["metrics"].get(m, {})
        text = fmt_summary(m, s, with_ci=(m == primary))
        t = s.get("vs_baseline") or {}
        cells.append(f"**{text}**" if t.get("outcome") == "better" else text)
    tm = e.get("timing") or {}
    for key in ("step_time_vs_baseline", "loss_time_vs_baseline"):
        cells.append("1.00×" if e.get("is_baseline") else ("—" if tm.get(key) is None else f"{tm[key]:.2f}×"))
    if tm.get("step_time_trusted") is False and not e.get("is_baseline"):
        cells[-2] += " (noisy)"
    t = (e["metrics"].get(primary) or {}).get("vs_baseline")
    if e.get("is_baseline"):
        return cells + ["baseline", "", "", "", ""]
    if not t:
        return cells + ["—", "", "", "", ""]
    win = t.get("prob_improvement")
    # both p-values: the adjusted one decides, the raw one shows what the correction cost
    p = fmt_p(t.get("p_adjusted")) + ("" if t.get("p_value") is None else f" ({fmt_p(t['p_value'])})")
    return cells + [f"{fmt_effect(primary, t.get('diff'), t.get('min_effect'), False)} {_ci(primary, t)}", p,
                    f"{t['wins']}/{t['ties']}/{t['losses']}", "—" if win is None else f"{100 * win:.0f}%",
                    t.get("outcome", "")]


def _ci(metric: str, t: dict) -> str:
    ci = t.get("diff_ci95")
    return "" if not ci else f"[{fmt_diff(metric, ci[0], False)}, {fmt_diff(metric, ci[1], False)}]"


def results(report: dict, ctx: dict) -> list[str]:
    primary, baseline = report.get("primary_metric", "accuracy"), report.get("baseline")
    table_metrics = [m for m in ctx["table_metrics"] if m in (report.get("metrics") or [])]
    unit = lambda m: f"{metric_info(m).title}" + (" (%)" if metric_info(m).percent else "")  # noqa: E731
    out = ["## Results per setting", "",
           f"Mean ± std over seeds [95% CI of the mean] on the test split. **Bold**: better than {baseline} "
           f"(adjusted p < alpha and at least the minimum effect). Δ: paired difference from {baseline} on "
           f"{metric_info(primary).title} [95% CI]{' in points' if metric_info(primary).percent else ''}; p: adjusted "
           "over the family (the raw p in brackets); W/T/L: seeds better/tied/worse; P(win): chance a run of the "
           "loss beats a run of the baseline (a new seed); step time: the whole training step, loss time: the "
           "loss alone.", ""]
    headers = ["loss", "runs", *[unit(m) for m in table_metrics], f"step time vs {baseline}",
               f"loss time vs {baseline}", "Δ", "p adj. (raw)", "W/T/L", "P(win)", "outcome"]
    for s in report.get("settings", []):
        entries = [e for e in report.get("results", []) if setting_key(e["setting"]) == setting_key(s["setting"])]
        out += [f"### {md_escape(s['label'])}", ""]
        out += _table(headers, [_row(e, report, table_metrics, primary) for e in entries]) + [""]
        failed = [(e["loss"]["label"], err) for e in entries for err in e.get("errors", [])]
        if failed:
            out += ["Failed runs (excluded from the statistics):", ""]
            out += [f"- {md_escape(lab)}, seed {err.get('seed')}: {md_escape(err.get('error') or 'unknown error')}"
                    for lab, err in failed] + [""]
    return out


def tuning(report: dict, ctx: dict) -> list[str]:
    tune = report.get("tuning") or {}
    if not tune:
        return []
    out = ["## Tuning", "", "Every loss had the same budget of trials over its hyperparameters and the learning "
           "rate, selected on the validation split only; the final runs use fresh seeds.", ""]
    rows = []
    for lab, entry in tune.items():
        for setting, params in (entry.get("best_params") or {}).items():
            done = [entry.get(k, {}).get(setting, 0) for k in ("n_complete", "n_pruned", "n_failed")]
            rows.append([md_escape(lab), md_escape(setting), md_escape(short(params)),
                         f"{sum(done)} ({done[1]} pruned, {done[2]} failed)",
                         f"{100 * entry['best_value'][setting]:.1f}" if entry.get("best_value", {}).get(setting)
                         is not None else "—"])
    out += _table(["loss", "setting", "tuned values", "trials", "best validation accuracy (%)"], rows, 3) + [""]
    out += [f"Study storage: `{next(iter(tune.values())).get('storage')}`.", ""]
    return out


def plots(report: dict, ctx: dict) -> list[str]:
    if not ctx.get("plots"):
        return []
    out = ["## Plots", ""]
    for name, path in ctx["plots"].items():
        out += [f"### {name.replace('_', ' ')}", "", f"![{name}]({path})", ""]
    return out


def notes(report: dict, ctx: dict) -> list[str]:
    st, baseline = report.get("statistics") or {}, report.get("baseline")
    out = ["## How to read this", ""]
    for m in report.get("metrics") or []:
        info = metric_info(m)
        out.append(f"- **{info.title}** ({info.direction} is better{', in %' if info.percent else ''}): {info.definition}.")
    tv = st.get("testset_variance")
    out += [f"- **Test**: {st.get('test_description')}."
            + (f" The test-set term covers {', '.join(tv['metrics'])} ({tv['resamples']} resamples); the other "
               "metrics use the seed variance alone." if tv else ""),
            f"- **Correction**: {st.get('correction_description')}, over every comparison with {baseline} in this "
            "report, per metric; *significant* uses the adjusted p-value.",
            f"- **Probability of improvement**: {st.get('prob_improvement')}.",
            f"- **Seeds needed**: {st.get('seeds_needed')}.",
            f"- **Step time vs {baseline}**: {_step_time_note(report)} **Loss time**: the loss's forward+backward "
            f"alone at the training shape, timed the same way against {baseline}'s.", ""]
    return out


def _step_time_note(report: dict[str, Any]) -> str:
    sources = {(e.get("timing") or {}).get("step_time_source") for e in report.get("results", [])
               if not e.get("is_baseline")} - {None}
    paired = ("the whole training step (forward, loss, backward, optimizer) on the run's data and model, timed "
              "in alternation with the baseline's after a warm-up (median of the per-round ratios; "
              "\"noisy\" when the rounds' p20-p80 spread exceeds 25% of it).")
    runs = ("training seconds per run divided by the baseline's (medians over seeds, same steps); with several "
            "runs in parallel it includes their contention.")
    if sources == {"runs"}:
        return runs
    return paired + (" Where that could not be measured: " + runs if "runs" in sources else "")


SECTIONS: list[Section] = [setup, warnings, verdicts, results, tuning, plots, notes]


def render_compare_markdown(report: dict[str, Any], plots: dict[str, str] | None = None,
                            table_metrics: Sequence[str] = ("accuracy", "macro_f1", "nll", "ece")) -> str:
    """``report.md``: every section of :data:`SECTIONS`, in order."""
    ctx = {"plots": plots or {}, "table_metrics": list(table_metrics)}
    lines = ["# losscli compare report", ""]
    for section in SECTIONS:
        lines += section(report, ctx)
    return "\n".join(lines)
