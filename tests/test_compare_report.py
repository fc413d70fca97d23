"""Compare report from synthetic per-run results: schema, statistics, wording, markdown, plots."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import yaml

from scipy import stats as sps

from losscli import stats
from losscli.report.compare import SCHEMA, build_compare_report, render_compare_markdown, summary_rows
from losscli.engine.rundir import load_logits

LOSSES = [
    {"name": "ce", "params": {}, "label": "ce"},
    {"name": "gce", "params": {"q": 0.7}, "label": "gce(q=0.7)"},
    {"name": "focal", "params": {"gamma": 2.0}, "label": "focal(gamma=2.0)"},
]


def make_results(seeds=(0, 1, 2), noises=("none", "sym:0.4"), imbalances=("none",), gce_gain=0.10,
                 fail=(), run_root=None, rng_seed=0, loss_ms=True, seed_sd=0.005):
    """One result dict per (setting, loss, seed). gce gains ``gce_gain`` accuracy under noise,
    focal equals ce up to noise; ``fail``: (loss name, noise, seed) triples that failed."""
    rng = np.random.default_rng(rng_seed)
    out = []
    for imb in imbalances:
        for noise in noises:
            for li, loss in enumerate(LOSSES):
                for seed in seeds:
                    failed = (loss["name"], noise, seed) in fail
                    acc = 0.80 - (0.30 if noise != "none" else 0.0) + seed_sd * rng.standard_normal()
                    if loss["name"] == "gce" and noise != "none":
                        acc += gce_gain
                    run_dir = None
                    if run_root is not None:
                        run_dir = run_root / f"{imb}_{noise.replace(':', '')}_{loss['name']}_{seed}"
                        run_dir.mkdir(parents=True, exist_ok=True)
                    r = {"status": "failed" if failed else "ok",
                         "error": "loss is NaN at epoch 2" if failed else None,
                         "run_dir": None if run_dir is None else str(run_dir),
                         "loss": dict(loss), "seed": seed,
                         "setting": {"dataset": "mnist1d", "noise": noise, "imbalance": imb},
                         "metrics": {}, "timing": {}, "history": []}
                    if not failed:
                        r["metrics"] = {
                            "test": {"accuracy": acc, "macro_f1": acc - 0.01, "nll": 1.5 - acc, "ece": 0.05 + 0.01 * li,
                                     "brier": 0.6 - 0.5 * acc, "adaptive_ece": 0.04, "top5": 0.99},
                            "val": {"accuracy": acc + 0.01},
                            "train": {"accuracy": 0.95, "clean_accuracy": 0.9, "noisy_memorized": 0.1}}
                        r["timing"] = {"train_seconds": 10.0 + li, "samples_per_second": 1000.0}
                        if loss_ms:
                            r["timing"]["loss_ms_per_step"] = 0.2 * (1 + li)
                        r["history"] = [{"epoch": e, "train_loss": 1.0 / e, "val_accuracy": acc * e / 3,
                                         "test_accuracy": acc * e / 3} for e in (1, 2, 3)]
                    out.append(r)
    config = {"dataset": "mnist1d", "model": "mlp", "epochs": 3, "batch_size": 128, "seeds": list(seeds),
              "losses": [l["label"] for l in LOSSES], "noise": list(noises), "imbalance": list(imbalances),
              "baseline": "ce"}
    env = {"losscli": "0.1.0", "torch": "2.x", "device": "cpu", "threads": 2}
    return out, config, env


def entry(report, label, noise, imbalance="none"):
    found = [e for e in report["results"] if e["loss"]["label"] == label
             and e["setting"]["noise"] == noise and e["setting"]["imbalance"] == imbalance]
    assert len(found) == 1
    return found[0]


def all_sentences(report):
    return [s for v in report["verdicts"] for s in v["sentences"]]


# ---------------------------------------------------------------------------- structure


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


# ---------------------------------------------------------------------------- verdicts


def test_large_consistent_effect_is_adopted_with_three_seeds():
    """The issue's case: +20 points, better on 3/3 seeds, must reach a verdict after correction."""
    results, config, env = make_results(seeds=(0, 1, 2), gce_gain=0.20)
    report = build_compare_report(results, config, env)
    t = entry(report, "gce(q=0.7)", "sym:0.4")["metrics"]["accuracy"]["vs_baseline"]
    assert t["significant"] and t["outcome"] == "better" and t["p_adjusted"] < 0.05
    sentence = entry(report, "gce(q=0.7)", "sym:0.4")["verdict"]["sentence"]
    assert re.match(r"adopt gce\(q=0\.7\) under sym:0\.4 noise: \+(19|20)\.\d points \[\+\d+\.\d, \+\d+\.\d\] "
                    r"accuracy, adjusted p = [<0-9.e-]+, 3/3 seeds better, 1\.10x step time", sentence), sentence
    md = render_compare_markdown(report)
    noisy = md.split("### noise sym:0.4, imbalance none")[1].split("###")[0]
    gce_row = next(line for line in noisy.splitlines() if line.startswith("| gce"))
    assert gce_row.split("|")[3].strip().startswith("**")  # accuracy cell bold


def test_holm_adjusts_over_the_whole_report_and_bh_is_an_option():
    results, config, env = make_results(seeds=tuple(range(4)), gce_gain=0.004, seed_sd=0.002, rng_seed=3)
    holm = build_compare_report(results, config, env, correction="holm", min_effect=0.0)
    bh = build_compare_report(results, config, env, correction="bh", min_effect=0.0)
    none = build_compare_report(results, config, env, correction="none", min_effect=0.0)
    tests = lambda r: [e["metrics"]["accuracy"]["vs_baseline"] for e in r["results"] if not e["is_baseline"]]  # noqa
    raw = [t["p_value"] for t in tests(holm)]
    assert [t["p_adjusted"] for t in tests(holm)] == pytest.approx(stats.adjust(raw, "holm"))
    assert [t["p_adjusted"] for t in tests(bh)] == pytest.approx(stats.adjust(raw, "bh"))
    assert [t["p_adjusted"] for t in tests(none)] == pytest.approx(raw)
    assert holm["statistics"]["family_size"] == 4
    for t in tests(holm):  # "significant" uses the adjusted p
        assert t["significant"] == (t["p_adjusted"] < 0.05)
    # report.md shows both p-values too (it showed the adjusted one only): adjusted, then raw in brackets
    from losscli.report.format import fmt_p

    md = render_compare_markdown(holm)
    assert "p adj. (raw)" in md
    for e in holm["results"]:
        if not e["is_baseline"]:
            t = e["metrics"]["accuracy"]["vs_baseline"]
            assert f"| {fmt_p(t['p_adjusted'])} ({fmt_p(t['p_value'])}) |" in md


@pytest.mark.parametrize("n_seeds,gain,sd", [(3, 0.05, 0.01), (6, 0.03, 0.02), (6, -0.03, 0.02), (8, 0.0, 0.01),
                                             (10, 0.004, 0.002), (12, -0.003, 0.005)])
def test_adopt_and_avoid_only_when_corrected_and_worth_it(n_seeds, gain, sd):
    results, config, env = make_results(seeds=tuple(range(n_seeds)), gce_gain=gain, rng_seed=n_seeds, seed_sd=sd)
    report = build_compare_report(results, config, env)
    for e in report["results"]:
        if e["is_baseline"]:
            continue
        t, sentence = e["metrics"]["accuracy"]["vs_baseline"], e["verdict"]["sentence"]
        claim = sentence.startswith(("adopt", "avoid"))
        assert claim == (t["p_adjusted"] < 0.05 and abs(t["diff"]) >= 0.01), (t, sentence)
        if claim:
            assert sentence.startswith("adopt") == (t["diff"] > 0)
        if t["p_adjusted"] < 0.05 and abs(t["diff"]) < 0.01:
            assert "no practical difference" in sentence and "1-point minimum effect" in sentence
        if t["p_adjusted"] >= 0.05:
            assert sentence.startswith("no verdict yet") and t["outcome"] == "inconclusive"


def test_inconclusive_says_how_many_seeds_would_resolve_it():
    results, config, env = make_results(seeds=(0, 1, 2), gce_gain=0.04, seed_sd=0.03, rng_seed=1)
    report = build_compare_report(results, config, env)
    t = entry(report, "gce(q=0.7)", "sym:0.4")["metrics"]["accuracy"]["vs_baseline"]
    assert t["outcome"] == "inconclusive" and abs(t["diff"]) >= 0.01
    assert isinstance(t["seeds_needed"], int) and t["seeds_needed"] > 3
    assert f"about {t['seeds_needed']} seeds would likely resolve" in entry(report, "gce(q=0.7)", "sym:0.4")["verdict"]["sentence"]


def _with_examples(results, n_test=40, rng_seed=0):
    """Attach per-example test outcomes (as compare does from each run's logits) on one shared test
    set, with each run's accuracy recomputed from them: every loss gets its own hard examples, so
    the test set, not the seeds, carries most of the difference's uncertainty."""
    from losscli.metrics.outcomes import example_outcomes

    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(rng_seed)
    y = torch.from_numpy(rng.integers(0, 4, n_test))
    easy = {name: rng.random(n_test) < 0.7 for name in ("ce", "gce", "focal")}
    for r in results:
        if r["status"] != "ok":
            continue
        right = easy[r["loss"]["name"]] ^ (rng.random(n_test) < 0.1)  # some seed-to-seed variation
        logits = 3.0 * torch.nn.functional.one_hot(torch.where(torch.from_numpy(right), y, (y + 1) % 4), 4).float()
        r["examples"] = example_outcomes(logits, y)
        r["metrics"]["test"]["accuracy"] = float(right.mean())
    return results


def test_seeds_needed_counts_the_test_set_variance():
    # seeds_needed read a key the t-test never wrote, so it planned seeds as if the test set were
    # infinite: with 40 test examples no number of seeds resolves a few points
    results, config, env = make_results(seeds=tuple(range(4)))
    report = build_compare_report(_with_examples(results), config, env)
    level = 0.05 / report["statistics"]["family_size"]
    checked = 0
    for e in report["results"]:
        t = None if e["is_baseline"] else e["metrics"]["accuracy"]["vs_baseline"]
        if not t or t["outcome"] != "inconclusive" or abs(t["diff"]) < 0.01:
            continue
        assert t["extra_variance"] > 0
        assert t["seeds_needed"] == stats.seeds_needed(t["diff"], t["diff_std"], t["extra_variance"], level)
        assert t["seeds_needed"] is None  # the test-set SD alone (~10 points) hides the difference
        assert "the test set is too small" in e["verdict"]["sentence"], e["verdict"]["sentence"]
        checked += 1
    assert checked


def test_inconclusive_below_the_minimum_effect_says_how_far_its_interval_reaches():
    # a small observed difference with a wide interval: it said "more seeds would not make it worth
    # adopting", although the interval allowed a difference of several points
    results, config, env = make_results(seeds=(0, 1, 2), gce_gain=0.002, seed_sd=0.01, rng_seed=1)
    report = build_compare_report(results, config, env)
    e = entry(report, "gce(q=0.7)", "sym:0.4")
    t = e["metrics"]["accuracy"]["vs_baseline"]
    assert t["outcome"] == "inconclusive" and abs(t["diff"]) < 0.01
    assert max(abs(t["diff_ci95"][0]), abs(t["diff_ci95"][1])) > 0.01
    need = stats.seeds_for_interval(0.01 - abs(t["diff"]), t["diff_std"], 0.0)
    assert t["seeds_needed"] == need and need > 3
    sentence = e["verdict"]["sentence"]
    assert "smaller than the 1-point minimum effect as observed, but its interval reaches" in sentence
    assert f"about {need} seeds would likely narrow it to within the minimum effect" in sentence
    assert "would not make it worth adopting" not in sentence


def test_inconclusive_with_an_interval_inside_the_minimum_effect_says_so():
    results, config, env = make_results(seeds=tuple(range(6)), gce_gain=0.0, seed_sd=0.001, rng_seed=3)
    report = build_compare_report(results, config, env)
    e = entry(report, "gce(q=0.7)", "sym:0.4")
    t = e["metrics"]["accuracy"]["vs_baseline"]
    assert t["outcome"] == "inconclusive" and -0.01 < t["diff_ci95"][0] and t["diff_ci95"][1] < 0.01
    assert t["seeds_needed"] is None
    assert "its 95% interval lies within the 1-point minimum effect" in e["verdict"]["sentence"]


@pytest.mark.parametrize("outcome,diff,shown", [("inconclusive", -0.0097, "-0.97 points"),
                                                 ("negligible", 0.0096, "+0.96 points"),
                                                 ("inconclusive", -0.0094, "-0.9 points")])
def test_a_difference_below_the_minimum_effect_never_reads_as_reaching_it(outcome, diff, shown):
    """Rounded to one decimal, -0.97 points read "-1.0 points ... smaller than the 1-point minimum
    effect", which looks like a bug: such a difference gets a second decimal."""
    from losscli.report.compare.verdicts import verdict
    from losscli.report.format import fmt_effect

    t = {"outcome": outcome, "diff": diff, "diff_ci95": [diff - 0.016, diff + 0.016], "p_adjusted": 0.2, "n": 3,
         "wins": 0, "ties": 0, "min_effect": 0.01, "seeds_needed": None, "extra_variance": 6e-5}
    e = {"loss": {"label": "gce"}, "setting": {"noise": "sym:0.4", "imbalance": "none"}, "timing": {},
         "metrics": {"accuracy": {"vs_baseline": t}}}
    sentence = verdict(e, "ce", None, "accuracy", False)["sentence"]
    assert f"{shown} [" in sentence and "1-point minimum effect" in sentence, sentence
    assert fmt_effect("accuracy", 0.012, 0.01) == "+1.2 points" and fmt_effect("nll", -0.0097, 0.0) == "-0.0097"


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
