"""Compare report from synthetic per-run results: schema, statistics, wording, markdown, plots."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import yaml

from losscli.report.compare import (SCHEMA, build_compare_report, render_compare_markdown, summary_rows)
from losscli.engine.rundir import load_logits

LOSSES = [
    {"name": "ce", "params": {}, "label": "ce"},
    {"name": "gce", "params": {"q": 0.7}, "label": "gce(q=0.7)"},
    {"name": "focal", "params": {"gamma": 2.0}, "label": "focal(gamma=2.0)"},
]


def make_results(seeds=(0, 1, 2), noises=("none", "sym:0.4"), imbalances=("none",), gce_gain=0.10,
                 fail=(), run_root=None, rng_seed=0, loss_ms=True):
    """One result dict per (setting, loss, seed). gce gains ``gce_gain`` accuracy under noise,
    focal equals ce up to noise; ``fail``: (loss name, noise, seed) triples that failed."""
    rng = np.random.default_rng(rng_seed)
    out = []
    for imb in imbalances:
        for noise in noises:
            for li, loss in enumerate(LOSSES):
                for seed in seeds:
                    failed = (loss["name"], noise, seed) in fail
                    acc = 0.80 - (0.30 if noise != "none" else 0.0) + 0.005 * rng.standard_normal()
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
    assert report["schema"] == SCHEMA == "losscli/compare/v1"
    for key in ("baseline", "config", "env", "settings", "results", "verdicts", "runs", "statistics", "metrics"):
        assert key in report
    assert report["baseline"] == "ce"
    assert [s["setting"]["noise"] for s in report["settings"]] == ["none", "sym:0.4"]
    assert len(report["results"]) == 2 * 3
    assert len(report["runs"]) == len(results) == 18
    e = entry(report, "gce(q=0.7)", "sym:0.4")
    assert e["loss"] == {"name": "gce", "params": {"q": 0.7}, "label": "gce(q=0.7)"}
    raw = [r["metrics"]["test"]["accuracy"] for r in results
           if r["loss"]["label"] == "gce(q=0.7)" and r["setting"]["noise"] == "sym:0.4"]
    acc = e["metrics"]["accuracy"]
    assert acc["values"] == raw
    assert acc["mean"] == pytest.approx(np.mean(raw))
    assert acc["std"] == pytest.approx(np.std(raw, ddof=1))
    assert acc["ci95"][0] < acc["mean"] < acc["ci95"][1]
    assert acc["rank"] == 1
    for m in ("accuracy", "macro_f1", "nll", "ece", "brier", "adaptive_ece"):
        assert set(e["metrics"][m]) >= {"values", "mean", "std", "ci95", "rank", "vs_baseline"}
        assert set(e["metrics"][m]["vs_baseline"]) >= {"diff", "p_value", "wins", "ties", "losses", "significant"}
    assert entry(report, "ce", "sym:0.4")["metrics"]["accuracy"]["vs_baseline"] is None
    # paired difference is mean over seeds of (gce - ce)
    base = [r["metrics"]["test"]["accuracy"] for r in results
            if r["loss"]["label"] == "ce" and r["setting"]["noise"] == "sym:0.4"]
    assert acc["vs_baseline"]["diff"] == pytest.approx(np.mean(np.array(raw) - np.array(base)))
    assert acc["vs_baseline"]["p_value"] == pytest.approx(0.25)  # 3 seeds, all positive
    assert (acc["vs_baseline"]["wins"], acc["vs_baseline"]["losses"]) == (3, 0)
    # timing: overhead ratio of loss time per step against ce
    assert e["timing"]["loss_overhead_vs_baseline"] == pytest.approx(2.0)
    assert e["timing"]["train_seconds"]["mean"] == pytest.approx(11.0)
    # raw runs keep every number
    run = next(r for r in report["runs"] if r["loss"] == "gce(q=0.7)" and r["seed"] == 1
               and r["setting"]["noise"] == "sym:0.4")
    assert run["metrics"]["train"]["noisy_memorized"] == 0.1
    assert run["metrics"]["val"]["accuracy"] == pytest.approx(raw[1] + 0.01)
    assert run["timing"]["loss_ms_per_step"] == pytest.approx(0.4)


def test_report_is_yaml_and_json_safe():
    results, config, env = make_results()
    report = build_compare_report(results, config, env)
    text = yaml.safe_dump(report, sort_keys=False)
    assert yaml.safe_load(text) == report
    assert json.loads(json.dumps(report, allow_nan=False)) == report


def test_lower_is_better_metrics_rank_and_compare_in_the_right_direction():
    results, config, env = make_results(seeds=tuple(range(6)))
    report = build_compare_report(results, config, env)
    e = entry(report, "gce(q=0.7)", "sym:0.4")
    nll = e["metrics"]["nll"]
    assert nll["rank"] == 1  # lowest NLL
    assert nll["vs_baseline"]["diff"] < 0
    assert nll["vs_baseline"]["wins"] == 6
    assert nll["vs_baseline"]["outcome"] == "better"
    ece = e["metrics"]["ece"]  # gce's ECE is 0.01 higher than ce's on every seed
    assert ece["vs_baseline"]["outcome"] == "worse" and ece["vs_baseline"]["losses"] == 6


def test_missing_loss_time_gives_no_overhead():
    results, config, env = make_results(loss_ms=False)
    report = build_compare_report(results, config, env)
    assert entry(report, "gce(q=0.7)", "none")["timing"]["loss_overhead_vs_baseline"] is None
    assert "—" in render_compare_markdown(report)


# ---------------------------------------------------------------------------- failed runs


def test_failed_runs_are_excluded_but_listed():
    results, config, env = make_results(fail={("focal", "sym:0.4", 1)})
    report = build_compare_report(results, config, env)
    e = entry(report, "focal(gamma=2.0)", "sym:0.4")
    assert (e["n_ok"], e["n_failed"]) == (2, 1)
    assert e["seeds"] == [0, 2]
    assert e["errors"] == [{"seed": 1, "error": "loss is NaN at epoch 2"}]
    assert len(e["metrics"]["accuracy"]["values"]) == 2
    assert e["metrics"]["accuracy"]["vs_baseline"]["n"] == 2  # paired only on seeds both have
    assert report["n_failed"] == 1
    failed_runs = [r for r in report["runs"] if r["status"] == "failed"]
    assert len(failed_runs) == 1 and failed_runs[0]["error"] == "loss is NaN at epoch 2"
    assert any("1 of 3 runs of focal(gamma=2.0) failed" in s for s in all_sentences(report))
    md = render_compare_markdown(report)
    assert "2/3 (1 failed)" in md
    assert "loss is NaN at epoch 2" in md


def test_all_baseline_runs_failed_means_no_comparison():
    results, config, env = make_results(fail={("ce", "sym:0.4", s) for s in (0, 1, 2)})
    report = build_compare_report(results, config, env)
    e = entry(report, "gce(q=0.7)", "sym:0.4")
    assert e["metrics"]["accuracy"]["vs_baseline"] is None
    sentences = next(v for v in report["verdicts"] if v["setting"]["noise"] == "sym:0.4")["sentences"]
    assert any("baseline ce failed" in s for s in sentences)
    assert not any("beats" in s for s in sentences)
    render_compare_markdown(report)  # must not raise
    assert entry(report, "ce", "sym:0.4")["n_ok"] == 0


# ---------------------------------------------------------------------------- honesty of the wording


def test_three_seeds_never_claim_a_win_even_for_a_huge_effect():
    results, config, env = make_results(seeds=(0, 1, 2), gce_gain=0.20)
    report = build_compare_report(results, config, env)
    sentences = all_sentences(report)
    assert not any("beats" in s or "worse than" in s for s in sentences)
    gce = [s for s in sentences if s.startswith("No significant difference between gce(q=0.7) and ce under noise")]
    assert gce and "smallest possible p is 0.25" in gce[0]
    md = render_compare_markdown(report)
    assert "**Too few seeds for significance.**" in md
    table_rows = [line for line in md.splitlines() if line.startswith("| gce") or line.startswith("| focal")]
    assert table_rows and not any("**" in line for line in table_rows)
    assert report["statistics"]["can_reach_significance"] is False
    assert report["statistics"]["seeds_needed_for_significance"] == 6


def test_six_seeds_significant_win_is_bold_and_worded_as_beats():
    results, config, env = make_results(seeds=tuple(range(6)), gce_gain=0.12)
    report = build_compare_report(results, config, env)
    acc = entry(report, "gce(q=0.7)", "sym:0.4")["metrics"]["accuracy"]["vs_baseline"]
    assert acc["p_value"] == pytest.approx(2 / 64) and acc["significant"] is True
    sentences = all_sentences(report)
    win = [s for s in sentences if s.startswith("gce(q=0.7) beats ce under noise sym:0.4 by +") and "accuracy" in s]
    assert len(win) == 1
    assert re.search(r"by \+1[0-4]\.\d accuracy points \(p=0\.0312, 6/6 seeds\)", win[0])
    # on clean data gce == ce up to noise: never "beats"
    assert not any("beats ce on clean data" in s for s in sentences)
    md = render_compare_markdown(report)
    noisy = md.split("### noise sym:0.4, imbalance none")[1].split("###")[0]
    gce_row = next(line for line in noisy.splitlines() if line.startswith("| gce"))
    assert gce_row.split("|")[3].strip().startswith("**")  # accuracy cell bold
    ce_row = next(line for line in noisy.splitlines() if line.startswith("| ce"))
    assert "**" not in ce_row
    clean = md.split("### noise none, imbalance none")[1].split("###")[0]
    assert "**" not in clean  # no significant winner on clean data


@pytest.mark.parametrize("n_seeds,gain,expect_claim", [
    (3, 0.05, False), (5, 0.05, False), (6, 0.03, True), (6, -0.03, True), (8, 0.0, None), (10, 0.002, None),
    (10, 0.004, None), (12, -0.003, None)])
def test_beats_only_with_p_below_alpha(n_seeds, gain, expect_claim):
    """Any "beats"/"worse than" sentence on accuracy needs p < 0.05, and every p < 0.05 gets one."""
    results, config, env = make_results(seeds=tuple(range(n_seeds)), gce_gain=gain, rng_seed=n_seeds)
    report = build_compare_report(results, config, env)
    n_claims = 0
    for e in report["results"]:
        lab = e["loss"]["label"]
        phrase = "on clean data" if e["setting"]["noise"] == "none" else f"under noise {e['setting']['noise']}"
        t = e["metrics"]["accuracy"]["vs_baseline"]
        claims = [s for s in all_sentences(report) if "accuracy points" in s and
                  (s.startswith(f"{lab} beats ce {phrase} by") or s.startswith(f"{lab} is worse than ce {phrase} by"))]
        if t is None or t["p_value"] >= 0.05:
            assert claims == []
        else:
            assert len(claims) == 1
            assert ("beats" in claims[0]) == (t["diff"] > 0)
        n_claims += len(claims)
    if expect_claim is not None:
        assert (n_claims > 0) == expect_claim


# ---------------------------------------------------------------------------- markdown and rows


def test_markdown_has_setup_and_one_table_per_setting():
    results, config, env = make_results(noises=("none", "sym:0.2", "sym:0.4"), imbalances=("none", "exp:100"))
    report = build_compare_report(results, config, env)
    md = render_compare_markdown(report, {"accuracy_vs_noise": "accuracy_vs_noise.png"})
    for s in report["settings"]:
        assert f"### {s['label']}" in md
    assert md.count("| loss | runs | accuracy | macro-F1 | NLL | ECE |") == 6
    for word in ("mnist1d", "mlp", "3 epochs", "batch size 128", "sym:0.4", "exp:100", "cpu", "0, 1, 2"):
        assert word in md
    assert "![accuracy_vs_noise](accuracy_vs_noise.png)" in md
    assert "## Metric notes" in md and "## Verdicts" in md
    # settings in config order: imbalance outer, noise inner
    assert [(s["setting"]["imbalance"], s["setting"]["noise"]) for s in report["settings"]] == [
        ("none", "none"), ("none", "sym:0.2"), ("none", "sym:0.4"),
        ("exp:100", "none"), ("exp:100", "sym:0.2"), ("exp:100", "sym:0.4")]


def test_summary_rows_are_flat():
    results, config, env = make_results()
    report = build_compare_report(results, config, env)
    rows = summary_rows(report)
    assert len(rows) == len(report["results"])
    for row in rows:
        assert all(not isinstance(v, (dict, list)) for v in row.values())
    ce = next(r for r in rows if r["loss"] == "ce" and r["noise"] == "sym:0.4")
    assert ce["outcome"] == "baseline" and ce["p_vs_baseline"] is None
    gce = next(r for r in rows if r["loss"] == "gce(q=0.7)" and r["noise"] == "sym:0.4")
    assert gce["p_vs_baseline"] == pytest.approx(0.25) and gce["significant"] is False
    assert gce["outcome"] == "too_few_seeds"
    assert gce["accuracy"] == pytest.approx(entry(report, "gce(q=0.7)", "sym:0.4")["metrics"]["accuracy"]["mean"])
    from losscli.serialize import render_table

    assert "gce(q=0.7)" in render_table(rows)


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
    assert set(plots) == {"accuracy_vs_noise", "training_curves", "reliability: noise none, imbalance none",
                          "reliability: noise sym:0.4, imbalance none"}
    for rel in plots.values():
        assert rel.startswith("plots/") and ":" not in rel
        assert _is_png(tmp_path / "report" / rel)
    md = render_compare_markdown(report, plots)
    assert "(plots/accuracy_vs_noise.png)" in md


def test_plots_with_one_noise_level_and_no_logits(tmp_path):
    from losscli.report.plots import plot_accuracy_vs_noise, plot_training_curves, write_compare_plots

    results, config, env = make_results(seeds=(0, 1), noises=("sym:0.4",), run_root=tmp_path / "runs")
    report = build_compare_report(results, config, env)
    assert _is_png(plot_accuracy_vs_noise(report, tmp_path / "acc.png"))
    for r in results:
        r["history"] = []
    assert _is_png(plot_training_curves(results, tmp_path / "curves.png"))
    plots = write_compare_plots(report, results, tmp_path / "out", load_logits=load_logits)
    # no logits.pt anywhere: reliability diagrams are skipped, the rest still drawn
    assert set(plots) == {"accuracy_vs_noise", "training_curves"}


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
