"""Compare verdicts from synthetic per-run results: decisions after family-wise correction, effect sizes
against the minimum effect, and how many seeds would resolve an inconclusive comparison."""

from __future__ import annotations

import re

import numpy as np
import pytest

from losscli import stats
from losscli.report.compare import build_compare_report, render_compare_markdown
from tests.compare_fixtures import all_sentences, entry, make_results


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


def test_paired_step_costs_decide_the_cost_flag_and_an_untrusted_one_makes_no_call():
    """The step ratio from the runs' own times (what `compare` had alone) moved 0.94x-1.47x between
    compares on a busy CPU; a paired measurement replaces it, and one too noisy to trust flags nothing."""
    results, config, env = make_results(seeds=(0, 1, 2))
    step = {"ratio": 1.4, "ratio_p20": 1.35, "ratio_p80": 1.45, "trusted": True}
    noisy = {"ratio": 1.6, "ratio_p20": 1.0, "ratio_p80": 2.4, "trusted": False}
    costs = {"mnist1d": {"ce": {"step": None, "loss": {"ratio": 1.0}},
                         "gce(q=0.7)": {"step": step, "loss": {"ratio": 3.5}},
                         "focal(gamma=2.0)": {"step": noisy, "loss": None}}}
    report = build_compare_report(results, config, env, costs=costs)
    gce, focal = entry(report, "gce(q=0.7)", "none"), entry(report, "focal(gamma=2.0)", "none")
    assert gce["timing"]["step_time_vs_baseline"] == 1.4 and gce["timing"]["step_time_source"] == "paired"
    assert gce["timing"]["train_time_vs_baseline"] == pytest.approx(11.0 / 10.0)  # the runs' ratio stays beside
    assert gce["timing"]["loss_time_vs_baseline"] == 3.5 and gce["timing"]["step_time_trusted"] is True
    assert focal["timing"]["step_time_trusted"] is False
    text = " ".join(all_sentences(report))
    assert "1.40x step time, costly" in text and "1.60x step time (noisy measurement)" in text
    assert "1.60x step time, costly" not in text
    md = render_compare_markdown(report)
    assert "1.60× (noisy)" in md and "timed in alternation with the baseline's" in md
    plain = build_compare_report(results, config, env)  # no measurement: the runs' times, said so
    assert entry(plain, "gce(q=0.7)", "none")["timing"]["step_time_source"] == "runs"
    assert "training seconds per run divided by" in render_compare_markdown(plain)


def test_costs_are_measured_only_where_the_runs_ran():
    from losscli.app.compare.writer import ran_here

    here = {"device_name": "Intel(R) Xeon(R) Processor"}
    runs = [{"status": "ok", "env": {"device_name": "Intel(R) Xeon(R) Processor"}}, {"status": "failed", "env": {}}]
    assert ran_here(runs, here) and ran_here([], here)
    assert not ran_here(runs + [{"status": "ok", "env": {"device_name": "NVIDIA H200"}}], here)
