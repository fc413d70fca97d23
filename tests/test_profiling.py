"""Profiling harness on tiny shapes: structure and sanity, never timings."""

from __future__ import annotations

import json

import pytest
import torch

from losscli.errors import UsageError
from losscli.profiling.harness import SCHEMA, profile_losses
from losscli.profiling.timing import percentile
from losscli.profiling.memory import measure_peak

ROW_KEYS = {"loss", "n", "c", "dtype", "device", "compiled", "forward_ms", "backward_ms", "total_ms", "total_ms_p20",
            "total_ms_p80", "peak_mb", "peak_delta_mb", "overhead_vs_ce", "threads", "compile_s",
            "bandwidth_gbs", "bandwidth_frac"}


def test_percentile():
    assert percentile([3.0, 1.0, 2.0], 50) == 2.0
    assert percentile([1.0, 2.0], 20) == pytest.approx(1.2)


def test_harness_rows_have_schema_and_sane_numbers():
    rep = profile_losses(["focal"], batches=[16], classes=[5, 9], device="cpu", repeats=3, warmup=1)
    assert rep["schema"] == SCHEMA == "losscli/profile/v1"
    assert {"losscli", "torch", "device", "threads", "memory_method"} <= set(rep["env"])
    assert [(r["loss"], r["c"]) for r in rep["rows"]] == [("ce", 5), ("focal", 5), ("ce", 9), ("focal", 9)]
    for r in rep["rows"]:
        assert ROW_KEYS <= set(r)
        assert r["forward_ms"] > 0 and r["backward_ms"] > 0 and r["total_ms"] > 0
        assert r["total_ms_p20"] <= r["total_ms"] <= r["total_ms_p80"]
        assert r["peak_mb"] >= r["peak_delta_mb"] > 0
        assert r["overhead_vs_ce"] > 0 and r["threads"] == torch.get_num_threads()
        assert r["device"] == "cpu" and r["dtype"] == "float32" and r["compiled"] is False
    ce_rows = [r for r in rep["rows"] if r["loss"] == "ce"]
    assert all(r["overhead_vs_ce"] == 1.0 and r["baseline"] for r in ce_rows)
    json.dumps(rep)  # plain data


def test_weighted_sums_are_profiled_as_written():
    # a sum's cost is what adopting "CE plus a regulariser" costs; it was refused ("give one loss here")
    rep = profile_losses(["ce+0.1*logz_penalty", "ce + 0.5*multi_similarity"], batches=[16], classes=[5],
                         device="cpu", repeats=2, warmup=0, memory=False)
    assert [r["loss"] for r in rep["rows"]] == ["ce", "ce + 0.1*logz_penalty", "ce + 0.5*multi_similarity"]
    assert not rep["skipped"] and all(r["overhead_vs_ce"] > 0 for r in rep["rows"])
    from losscli.profiling.step import loss_step_costs

    costs = loss_step_costs(["ce", "ce + 0.1*logz_penalty"], "ce", 16, 5, torch.device("cpu"), repeats=2, warmup=0)
    assert costs["ce"]["ratio"] == 1.0 and costs["ce + 0.1*logz_penalty"]["ms"] > 0
    assert costs["ce + 0.1*logz_penalty"]["ratio"] > 0
    with pytest.raises(UsageError, match="unknown loss"):
        profile_losses(["ce + 0.1*logz_penalti"], batches=[4], classes=[3], device="cpu", repeats=1)


def test_ce_against_itself_and_dtype():
    rep = profile_losses(["ce"], batches=[8], classes=[4], dtypes=["bfloat16"], device="cpu", repeats=2, warmup=0)
    assert len(rep["rows"]) == 1  # ce measured once, not twice
    assert rep["rows"][0]["overhead_vs_ce"] == 1.0 and rep["rows"][0]["dtype"] == "bfloat16"


def test_memory_measurement_counts_allocations_and_scales():
    def work(n):
        def fn():
            x = torch.randn(n, 1000, requires_grad=True)
            torch.nn.functional.log_softmax(x, 1).sum().backward()
        return fn

    small = measure_peak(work(100), torch.device("cpu"))
    big = measure_peak(work(1000), torch.device("cpu"))
    assert small["peak_delta_mb"] > 0
    # at least logits + log_softmax output + gradient: 3 x N x 1000 x 4 bytes
    assert big["peak_delta_mb"] >= 3 * 1000 * 1000 * 4 / 2**20 * 0.99
    assert 5 < big["peak_delta_mb"] / small["peak_delta_mb"] < 15


def test_unknown_loss_is_usage_error_with_hint():
    with pytest.raises(UsageError, match="Did you mean 'focal'"):
        profile_losses(["focl"], batches=[4], classes=[3], device="cpu", repeats=1, warmup=0)


def test_failing_loss_is_skipped_with_reason(monkeypatch):
    from losscli.profiling import harness
    from losscli.profiling.cases import SkipLoss

    real = harness.make_case

    def fake(spec, name, *a, **k):
        if name == "focal":
            raise SkipLoss("trial forward/backward failed: boom")
        return real(spec, name, *a, **k)

    monkeypatch.setattr(harness, "make_case", fake)
    rep = profile_losses(["focal"], batches=[8], classes=[3], device="cpu", repeats=1, warmup=0)
    assert [r["loss"] for r in rep["rows"]] == ["ce"]
    assert rep["skipped"][0]["loss"] == "focal" and "boom" in rep["skipped"][0]["reason"]


def test_every_registered_loss_builds_for_profiling():
    from losscli.losses import LOSSES
    from losscli.profiling.cases import SkipLoss, make_case

    failures = {}
    for name in LOSSES.names():
        try:
            case = make_case(name, name, {}, 12, 5, torch.float32, torch.device("cpu"))
            logits, target, ctx = case.make_inputs()
            case.loss(logits, target, **ctx).backward()
        except SkipLoss as exc:
            failures[name] = str(exc)
    assert not failures, failures


def test_cli_profile_json_and_plot(tmp_path):
    from typer.testing import CliRunner

    import losscli.cli as cli

    cli._register_commands()
    plot = tmp_path / "scaling.png"
    res = CliRunner().invoke(cli.app, ["profile", "--losses", "ce,focal", "--batch", "64", "--classes", "10,20",
                                       "--repeats", "3", "--warmup", "1", "--device", "cpu", "--format", "json",
                                       "--plot", str(plot), "--quiet"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    assert data["schema"] == "losscli/profile/v1"
    assert {(r["loss"], r["c"]) for r in data["rows"]} == {("ce", 10), ("focal", 10), ("ce", 20), ("focal", 20)}
    assert plot.exists() and plot.stat().st_size > 0


def test_cli_profile_unknown_loss_exit_2():
    from typer.testing import CliRunner

    import losscli.cli as cli

    cli._register_commands()
    res = CliRunner().invoke(cli.app, ["profile", "--losses", "focl", "--batch", "4", "--classes", "3"])
    assert res.exit_code != 0
    assert isinstance(res.exception, UsageError)


def test_cli_linear_dim_table(tmp_path):
    from typer.testing import CliRunner

    import losscli.cli as cli

    cli._register_commands()
    res = CliRunner().invoke(cli.app, ["profile", "--losses", "ce,jaccard", "--batch", "32", "--classes", "50",
                                       "--linear-dim", "8", "--chunk-size", "7", "--repeats", "2", "--warmup", "0",
                                       "--device", "cpu", "--format", "yaml", "--quiet"])
    # jaccard (a batch-level loss) has no linear form: its skip is reported and the exit code says so
    assert res.exit_code == 1, res.output
    import yaml

    data = yaml.safe_load(res.stdout)
    assert data["linear"][0]["loss"] == "ce" and data["linear"][0]["grad_max_rel_err"] < 1e-4
    assert data["skipped"][0]["loss"] == "jaccard"


@pytest.mark.parametrize("extra", [[], ["--linear-dim", "8"]])
def test_a_requested_loss_measured_at_no_shape_fails_the_command_after_the_table(extra, capsys):
    """The others' rows are printed (a script can read them), then one line and exit 1: exit 0 read as
    "every loss measured" when one was only listed under skipped."""
    from tests.cli_helpers import invoke

    code, out, err = invoke(["profile", "--losses", "focal(alpha=[1,2]),gce", "--batch", "16", "--classes", "4",
                             "--repeats", "1", "--warmup", "0", "--no-memory", "--format", "json", "--quiet", *extra], capsys)
    assert code == 1, err
    import json

    data = json.loads(out)
    rows = data["linear"] if extra else data["rows"]
    assert "gce" in {r["loss"] for r in rows}
    assert data["skipped"][0]["loss"] == "focal(alpha=[1,2])"
    assert err.strip().splitlines()[-1].startswith("error: focal(alpha=[1,2]) could not be measured")


def test_linear_bench_measures_torchs_own_chunked_linear_ce_beside_losscli():
    from losscli.profiling.linear_bench import compare_linear

    row = compare_linear("ce", n=64, c=40, d=8, repeats=1, warmup=0)
    if hasattr(torch.nn, "LinearCrossEntropyOptions"):  # torch >= 2.13
        assert row["torch_ms"] > 0 and row["torch_time_ratio"] > 0
        assert row["torch_grad_max_rel_err"] < 1e-4  # the same gradients as the materialised path
    else:
        assert row["torch_ms"] is None
    assert compare_linear("focal", n=16, c=10, d=4, repeats=1, warmup=0)["torch_ms"] is None  # ce only


def test_trace_writes_file(tmp_path):
    rep = profile_losses(["ce"], batches=[8], classes=[4], device="cpu", repeats=1, warmup=0, trace_dir=str(tmp_path))
    row = rep["rows"][0]
    assert row["top_kernels"] and (tmp_path / row["trace"].split("/")[-1]).exists()


def test_paired_rows_report_ratio_spread_and_trust():
    rep = profile_losses(["focal"], batches=[32], classes=[7], device="cpu", repeats=4, warmup=1, memory=False)
    ce, focal = rep["rows"]
    assert ce["loss"] == "ce" and ce["overhead_vs_ce"] == 1.0 and ce["ratio_trusted"] is True
    assert focal["overhead_p20"] <= focal["overhead_vs_ce"] <= focal["overhead_p80"]
    assert focal["overhead_min"] <= focal["overhead_p20"]
    assert focal["ratio_spread"] == pytest.approx((focal["overhead_p80"] - focal["overhead_p20"]) / focal["overhead_vs_ce"])
    assert focal["ratio_trusted"] == (focal["ratio_spread"] <= 0.25) and focal["ce_ms"] > 0
    assert isinstance(rep["warnings"], list)


def test_ratio_summary_and_spread_warning():
    from losscli.profiling.paired import ratio_summary, spread_warning

    tight = ratio_summary([1.0, 1.02, 0.99, 1.01, 1.0])
    assert tight["trusted"] and tight["ratio"] == 1.0 and tight["ratio_min"] == 0.99
    wide = ratio_summary([0.5, 1.0, 1.5, 2.0, 0.7])
    assert not wide["trusted"] and wide["ratio_spread"] > 0.25
    rows = [{"loss": "focal", "n": 8, "c": 3, "overhead_p20": 0.6, "overhead_p80": 1.7, "ratio_trusted": False},
            {"loss": "gce", "n": 8, "c": 3, "overhead_p20": 0.9, "overhead_p80": 0.95, "ratio_trusted": True}]
    line = spread_warning(rows)
    assert "\n" not in line and "1 of 2" in line and "focal n=8 c=3 (0.60-1.70x)" in line
    assert spread_warning(rows[1:]) is None


def test_measure_paired_interleaves_baseline_and_candidate():
    from losscli.profiling import paired
    from losscli.profiling.paired import Timed, measure_paired

    order = []
    x = torch.ones(3, requires_grad=True)

    def side(tag):
        def forward():
            order.append(tag)
            return (x * 2).sum()
        return Timed(forward, lambda: setattr(x, "grad", None))

    res = measure_paired(side("ce"), side("loss"), torch.device("cpu"), repeats=3, warmup=2, round_ms=0)
    # warm-up pairs, then timed rounds in the order a b b a a b (drift lands on both sides alike)
    assert order == ["ce", "loss"] * 2 + ["ce", "loss", "loss", "ce", "ce", "loss"]
    assert res["ratio_p20"] <= res["ratio"] <= res["ratio_p80"] and res["baseline_ms"] > 0 and res["passes"] == 1
    order.clear()
    res = measure_paired(side("ce"), side("loss"), torch.device("cpu"), repeats=2, warmup=0, round_ms=1e9)
    k = paired.MAX_PASSES  # a pass far shorter than a round: rounds of many passes, capped
    assert res["passes"] == k and order == ["ce", "loss"] + ["ce"] * k + ["loss"] * k + ["loss"] * k + ["ce"] * k


def test_step_pairs_time_whole_rounds_of_steps():
    from losscli.app.compare.step_cost import measure_step_pair

    calls = []
    res = measure_step_pair(lambda: calls.append("a"), lambda: calls.append("b"), torch.device("cpu"),
                            repeats=4, warmup=1)
    k = res["steps_per_round"]
    assert res["rounds"] == 4 and k >= 1 and calls.count("a") == calls.count("b") == 2 + 4 * k


def test_cli_profile_defaults_to_one_thread_and_warns_in_json(capsys, monkeypatch):
    from losscli.profiling import paired
    from tests.cli_helpers import invoke

    monkeypatch.setattr(paired, "SPREAD_LIMIT", -1.0)  # every ratio "too noisy": the warning path runs
    code, out, err = invoke(["profile", "--losses", "focal", "--batch", "16", "--classes", "5", "--repeats", "3",
                             "--warmup", "0", "--device", "cpu", "--no-memory", "--format", "json", "--quiet"], capsys)
    assert code == 0, err
    data = json.loads(out)
    assert data["env"]["threads"] == 1 and all(r["threads"] == 1 for r in data["rows"])
    assert len(data["warnings"]) == 1 and "focal n=16 c=5" in data["warnings"][0]
    assert [line for line in err.splitlines() if line.startswith("warning:")] == data["warnings"]


@pytest.mark.parametrize("args,message", [
    (["--losses", ""], "--losses is empty"),
    (["--losses", " , "], "--losses is empty"),
    (["--plot", "{tmp}/missing/p.png"], "does not exist"),
    (["--plot", "{tmp}/afile/p.png"], "does not exist"),
    (["--plot", "{tmp}"], "is a directory"),
    (["--trace", "{tmp}/missing/deeper"], "does not exist"),
    (["--trace", "{tmp}/afile"], "not a directory"),
])
def test_cli_profile_bad_arguments_are_one_line_exit_2(args, message, tmp_path, capsys):
    from tests.cli_helpers import invoke

    (tmp_path / "afile").write_text("x")
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    code, out, err = invoke(["profile", "--batch", "4", "--classes", "3", "--repeats", "1", "--device", "cpu", *args],
                            capsys)
    assert code == 2
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and message in lines[0], err
    assert out == ""


def test_cli_profile_trace_directory_is_created(tmp_path, capsys):
    from tests.cli_helpers import invoke

    code, _, err = invoke(["profile", "--losses", "ce", "--batch", "4", "--classes", "3", "--repeats", "1",
                           "--warmup", "0", "--device", "cpu", "--no-memory", "--trace", str(tmp_path / "traces"),
                           "--quiet"], capsys)
    assert code == 0, err
    assert list((tmp_path / "traces").glob("ce_*.json"))


def test_cli_profile_reads_seed_with_linear_dim_and_threads_with_shape(monkeypatch, capsys):
    # both were silently ignored in these modes; now --linear-dim draws its inputs from --seed and
    # --shape runs on --threads (when given; torch's own setting otherwise, as before)
    from losscli.profiling import linear_bench
    from tests.cli_helpers import invoke

    seen, real = [], linear_bench.compare_linear

    def spy(*args, **kwargs):
        seen.append(kwargs["seed"])
        return real(*args, **kwargs)

    monkeypatch.setattr(linear_bench, "compare_linear", spy)
    code, out, err = invoke(["profile", "--losses", "ce", "--batch", "8", "--classes", "5", "--linear-dim", "4",
                             "--repeats", "1", "--warmup", "0", "--device", "cpu", "--seed", "7", "--format", "json",
                             "--quiet"], capsys)
    assert code == 0, err
    assert seen == [7] and json.loads(out)["config"]["seed"] == 7
    before = torch.get_num_threads()
    try:
        code, out, err = invoke(["profile", "--shape", "--losses", "ce", "--threads", "2", "--format", "json",
                                 "--quiet"], capsys)
        assert code == 0, err
        assert json.loads(out)["env"]["threads"] == 2
    finally:
        torch.set_num_threads(before)
