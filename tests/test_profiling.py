"""Profiling harness on tiny shapes: structure and sanity, never timings."""

from __future__ import annotations

import json

import pytest
import torch

from losscli.errors import UsageError
from losscli.profiling.harness import SCHEMA, percentile, profile_losses
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
    assert res.exit_code == 0, res.output
    import yaml

    data = yaml.safe_load(res.stdout)
    assert data["linear"][0]["loss"] == "ce" and data["linear"][0]["grad_max_rel_err"] < 1e-4
    assert data["skipped"][0]["loss"] == "jaccard"


def test_trace_writes_file(tmp_path):
    rep = profile_losses(["ce"], batches=[8], classes=[4], device="cpu", repeats=1, warmup=0, trace_dir=str(tmp_path))
    row = rep["rows"][0]
    assert row["top_kernels"] and (tmp_path / row["trace"].split("/")[-1]).exists()
