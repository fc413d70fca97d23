"""Compare report from synthetic per-run results: schema, statistics, wording, markdown, plots."""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml

from scipy import stats as sps

from losscli.report.compare import SCHEMA, build_compare_report, render_compare_markdown, summary_rows
from losscli.engine.rundir import load_logits
from tests.compare_fixtures import LOSSES, all_sentences, entry, make_results


def test_schema_keys_and_round_trip_of_values():
    results, config, env = make_results()
    report = build_compare_report(results, config, env)
    assert report["schema"] == SCHEMA == "losscli/compare/v2"
    for key in ("baseline", "config", "env", "settings", "results", "verdicts", "runs", "statistics", "metrics"):
        assert key in report
    assert {"test", "correction", "alpha", "min_effect"} <= set(report["statistics"])
    assert report["baseline"] == "ce"
    assert [s["setting"]["noise"] for s in report["settings"]] == ["none", "sym:0.4"]
    assert len(report["results"]) == 2 * 3 and len(report["runs"]) == len(results) == 18
    e = entry(report, "gce(q=0.7)", "sym:0.4")
    assert e["loss"] == {"name": "gce", "params": {"q": 0.7}, "label": "gce(q=0.7)"}
    raw = [r["metrics"]["test"]["accuracy"] for r in results
           if r["loss"]["label"] == "gce(q=0.7)" and r["setting"]["noise"] == "sym:0.4"]
    acc = e["metrics"]["accuracy"]
    assert acc["values"] == raw and acc["mean"] == pytest.approx(np.mean(raw))
    assert acc["std"] == pytest.approx(np.std(raw, ddof=1)) and acc["ci95"][0] < acc["mean"] < acc["ci95"][1]
    assert acc["rank"] == 1
    for m in ("accuracy", "macro_f1", "nll", "ece", "brier", "adaptive_ece"):
        assert set(e["metrics"][m]) >= {"values", "mean", "std", "ci95", "rank", "vs_baseline"}
        assert set(e["metrics"][m]["vs_baseline"]) >= {"diff", "diff_ci95", "p_value", "p_adjusted", "significant",
                                                       "prob_improvement", "seeds_needed", "wins", "ties", "losses"}
    assert entry(report, "ce", "sym:0.4")["metrics"]["accuracy"]["vs_baseline"] is None
    base = [r["metrics"]["test"]["accuracy"] for r in results
            if r["loss"]["label"] == "ce" and r["setting"]["noise"] == "sym:0.4"]
    t = acc["vs_baseline"]
    assert t["diff"] == pytest.approx(np.mean(np.array(raw) - np.array(base)))
    assert t["p_value"] == pytest.approx(sps.ttest_rel(raw, base).pvalue)  # no per-example data: seeds only
    assert (t["wins"], t["losses"]) == (3, 0) and t["prob_improvement"] == 1.0
    assert e["timing"]["loss_time_vs_baseline"] == pytest.approx(2.0)
    assert e["timing"]["step_time_vs_baseline"] == pytest.approx(11.0 / 10.0)
    run = next(r for r in report["runs"] if r["loss"] == "gce(q=0.7)" and r["seed"] == 1
               and r["setting"]["noise"] == "sym:0.4")
    assert run["metrics"]["train"]["noisy_memorized"] == 0.1 and run["timing"]["loss_ms_per_step"] == pytest.approx(0.4)


def test_report_is_yaml_and_json_safe():
    results, config, env = make_results()
    report = build_compare_report(results, config, env)
    assert yaml.safe_load(yaml.safe_dump(report, sort_keys=False)) == report
    assert json.loads(json.dumps(report, allow_nan=False)) == report


def test_lower_is_better_metrics_rank_and_compare_in_the_right_direction():
    results, config, env = make_results(seeds=tuple(range(6)))
    report = build_compare_report(results, config, env)
    e = entry(report, "gce(q=0.7)", "sym:0.4")
    nll = e["metrics"]["nll"]
    assert nll["rank"] == 1 and nll["vs_baseline"]["diff"] < 0 and nll["vs_baseline"]["wins"] == 6
    assert nll["vs_baseline"]["outcome"] == "better"
    ece = e["metrics"]["ece"]  # gce's ECE is 0.01 higher than ce's on every seed
    assert ece["vs_baseline"]["outcome"] == "worse" and ece["vs_baseline"]["losses"] == 6
    # flagged in the accuracy verdict, not hidden
    verdict = e["verdict"]["sentence"]
    assert verdict.startswith("adopt gce(q=0.7) under sym:0.4 noise") and "worse calibration" in verdict


def test_missing_loss_time_gives_no_ratio():
    results, config, env = make_results(loss_ms=False)
    report = build_compare_report(results, config, env)
    assert entry(report, "gce(q=0.7)", "none")["timing"]["loss_time_vs_baseline"] is None
    assert "—" in render_compare_markdown(report)


# ---------------------------------------------------------------------------- failed and pending runs


def test_failed_runs_are_excluded_but_listed():
    results, config, env = make_results(fail={("focal", "sym:0.4", 1)})
    report = build_compare_report(results, config, env)
    e = entry(report, "focal(gamma=2.0)", "sym:0.4")
    assert (e["n_ok"], e["n_failed"]) == (2, 1) and e["seeds"] == [0, 2]
    assert e["errors"] == [{"seed": 1, "error": "loss is NaN at epoch 2"}]
    assert e["metrics"]["accuracy"]["vs_baseline"]["n"] == 2  # paired only on seeds both have
    assert report["n_failed"] == 1
    assert any("1 failed of 3 runs" in s for s in all_sentences(report))
    md = render_compare_markdown(report)
    assert "| 2/3 |" in md and "loss is NaN at epoch 2" in md


def test_pending_runs_are_not_failures():
    results, config, env = make_results()
    results[-1] = {**results[-1], "status": "pending", "metrics": {}, "error": None}
    report = build_compare_report(results, config, env)
    assert report["n_pending"] == 1 and report["n_failed"] == 0
    assert "have not finished" in render_compare_markdown(report)


def test_all_baseline_runs_failed_means_no_comparison():
    results, config, env = make_results(fail={("ce", "sym:0.4", s) for s in (0, 1, 2)})
    report = build_compare_report(results, config, env)
    assert entry(report, "gce(q=0.7)", "sym:0.4")["metrics"]["accuracy"]["vs_baseline"] is None
    sentences = next(v for v in report["verdicts"] if v["setting"]["noise"] == "sym:0.4")["sentences"]
    assert any("baseline ce failed" in s for s in sentences) and not any(s.startswith("adopt") for s in sentences)
    render_compare_markdown(report)  # must not raise


def test_one_seed_says_why_there_is_no_test():
    # with one seed (the quick preset) both runs finished, but the sentence said "no seed where both runs finished"
    results, config, env = make_results(seeds=(0,))
    report = build_compare_report(results, config, env)
    sentence = entry(report, "gce(q=0.7)", "sym:0.4")["verdict"]["sentence"]
    assert "one seed where both runs finished: a test needs 2 or more (--seeds)" in sentence, sentence


def test_wording_has_no_bare_plural_bugs():
    results, config, env = make_results(seeds=(0,))
    sentences = all_sentences(build_compare_report(results, config, env))
    assert not any("1 seeds" in s or "1 runs" in s for s in sentences)


# ---------------------------------------------------------------------------- markdown and rows


def test_markdown_has_setup_and_one_table_per_setting():
    results, config, env = make_results(noises=("none", "sym:0.2", "sym:0.4"), imbalances=("none", "exp:100"))
    report = build_compare_report(results, config, env)
    md = render_compare_markdown(report, {"accuracy_vs_setting": "accuracy_vs_setting.png"})
    for s in report["settings"]:
        assert f"### {s['label']}" in md
    assert md.count("| loss | runs | accuracy (%) | macro-F1 (%) | NLL | ECE |") == 6
    for word in ("mnist1d", "mlp", "3 epochs", "batch size 128", "sym:0.4", "exp:100", "cpu", "0, 1, 2", "Holm"):
        assert word in md
    assert "![accuracy_vs_setting](accuracy_vs_setting.png)" in md
    assert "## How to read this" in md and "## Verdicts" in md
    assert [(s["setting"]["imbalance"], s["setting"]["noise"]) for s in report["settings"]] == [
        ("none", "none"), ("none", "sym:0.2"), ("none", "sym:0.4"),
        ("exp:100", "none"), ("exp:100", "sym:0.2"), ("exp:100", "sym:0.4")]


def test_summary_rows_are_flat():
    results, config, env = make_results()
    report = build_compare_report(results, config, env)
    rows = summary_rows(report)
    assert len(rows) == len(report["results"])
    assert all(not isinstance(v, (dict, list)) for row in rows for v in row.values())
    ce = next(r for r in rows if r["loss"] == "ce" and r["noise"] == "sym:0.4")
    assert ce["outcome"] == "baseline" and ce["p_value"] is None
    gce = next(r for r in rows if r["loss"] == "gce(q=0.7)" and r["noise"] == "sym:0.4")
    t = entry(report, "gce(q=0.7)", "sym:0.4")["metrics"]["accuracy"]["vs_baseline"]
    assert gce["p_adjusted"] == t["p_adjusted"] and gce["outcome"] == t["outcome"] and gce["diff"] == t["diff"]
    from losscli.serialize import render_table

    assert "gce(q=0.7)" in render_table(rows) and "gce(q=0.7)" in render_table(rows, "csv")


# ---------------------------------------------------------------------------- plots


def _save_fake_logits(results, rng_seed=0):
    torch = pytest.importorskip("torch")
    g = torch.Generator().manual_seed(rng_seed)
    for r in results:
        if r["status"] == "ok" and r["run_dir"]:
            labels = torch.randint(0, 5, (120,), generator=g)
            logits = torch.randn(120, 5, generator=g) + 3.0 * torch.nn.functional.one_hot(labels, 5)
            torch.save({"val_logits": logits, "val_labels": labels, "test_logits": logits, "test_labels": labels},
                       f"{r['run_dir']}/logits.pt")


def _is_png(path):
    data = path.read_bytes()
    return len(data) > 1000 and data[:8] == b"\x89PNG\r\n\x1a\n"


def test_compare_plots_are_written(tmp_path):
    from losscli.report.plots import write_compare_plots

    results, config, env = make_results(seeds=(0, 1), run_root=tmp_path / "runs", fail={("focal", "none", 0)})
    _save_fake_logits(results)
    report = build_compare_report(results, config, env)
    plots = write_compare_plots(report, results, tmp_path / "report" / "plots", relative_to=tmp_path / "report",
                                load_logits=load_logits)
    assert set(plots) == {"effects", "accuracy_vs_setting", "training_curves",
                          "reliability: noise none, imbalance none", "reliability: noise sym:0.4, imbalance none"}
    for rel in plots.values():
        assert rel.startswith("plots/") and ":" not in rel
        assert _is_png(tmp_path / "report" / rel)
    md = render_compare_markdown(report, plots)
    assert "(plots/accuracy_vs_setting.png)" in md and "(plots/effects.png)" in md


def test_plots_with_one_noise_level_and_no_logits(tmp_path):
    from losscli.report.plots import plot_metric_vs_setting, plot_training_curves, write_compare_plots

    results, config, env = make_results(seeds=(0, 1), noises=("sym:0.4",), run_root=tmp_path / "runs")
    report = build_compare_report(results, config, env)
    assert _is_png(plot_metric_vs_setting(report, tmp_path / "acc.png"))
    for r in results:
        r["history"] = []
    assert _is_png(plot_training_curves(results, tmp_path / "curves.png"))
    plots = write_compare_plots(report, results, tmp_path / "out", load_logits=load_logits)
    # no logits.pt anywhere: reliability diagrams are skipped, the rest still drawn
    assert set(plots) == {"effects", "accuracy_vs_setting", "training_curves"}


def test_reliability_per_loss_uses_the_shared_diagram(tmp_path):
    pytest.importorskip("losscli.report.reliability")
    from losscli.report.plots import write_compare_plots

    results, config, env = make_results(seeds=(0,), noises=("none",), run_root=tmp_path / "runs")
    _save_fake_logits(results)
    report = build_compare_report(results, config, env)
    plots = write_compare_plots(report, results, tmp_path / "out", reliability="per_loss", load_logits=load_logits)
    rel = {k: v for k, v in plots.items() if k.startswith("reliability")}
    assert len(rel) == len(LOSSES)
    assert all(_is_png(tmp_path / "out" / v) for v in rel.values())


def test_terminal_table_shows_a_zero_spread_but_not_one_seeds():
    from losscli.cli.cmd_compare import _compact_rows

    report = {"metrics": ["accuracy"], "primary_metric": "accuracy"}
    same = {"loss": "ce", "n_ok": 3, "accuracy": 0.9, "accuracy_std": 0.0}  # three identical seeds
    one = {"loss": "gce", "n_ok": 1, "accuracy": 0.8, "accuracy_std": 0.0}
    shown = _compact_rows([same, one], report)
    assert shown[0]["accuracy %"] == "90.0 ± 0.0"
    assert shown[1]["accuracy %"] == "80.0"


def test_terminal_table_shows_the_raw_p_beside_the_adjusted_one():
    from losscli.cli.cmd_compare import _compact_rows

    report = {"metrics": ["accuracy"], "primary_metric": "accuracy"}
    row = {"loss": "gce", "n_ok": 6, "accuracy": 0.7, "diff": 0.11, "p_value": 0.00082, "p_adjusted": 0.0041}
    (shown,) = _compact_rows([row], report)
    assert (shown["p (adj.)"], shown["p (raw)"]) == ("0.0041", "0.00082")
    (baseline,) = _compact_rows([{"loss": "ce", "n_ok": 6, "accuracy": 0.6}], report)
    assert baseline["p (raw)"] == "-"


def test_step_time_ratio_is_a_median_over_seeds():
    """Runs share the CPU with other runs: one run slowed by its neighbours moved a mean past the "costly"
    flag (1.25x); the ratio of medians over seeds is what a typical run costs."""
    results, config, env = make_results(seeds=(0, 1, 2))
    slow = next(r for r in results if r["loss"]["label"] == "gce(q=0.7)" and r["setting"]["noise"] == "none")
    slow["timing"]["train_seconds"] = 100.0  # gce's other seeds take 11 s, ce's 10 s
    gce = entry(build_compare_report(results, config, env), "gce(q=0.7)", "none")
    assert gce["timing"]["step_time_vs_baseline"] == pytest.approx(11.0 / 10.0)
    assert gce["timing"]["train_seconds"]["mean"] == pytest.approx(122.0 / 3)  # the summary keeps the mean
