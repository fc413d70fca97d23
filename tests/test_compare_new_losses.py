"""Every newly trainable loss end to end through ``losscli compare`` on MNIST-1D (tiny budget):
set losses (oko), heads (legendretron, dhkd's dual head), a teacher for the distilling losses
(pld, dhkd: ``--teacher``), per-sample state (aslp), composites with embedding parts."""

from __future__ import annotations

import pytest
import yaml

from tests.test_regression import _invoke

DATA = ["-d", "mnist1d", "--set", "dataset.options.num_samples=600", "-m", "cnn1d", "--epochs", "2",
        "--device", "cpu"]
NEW = ["pld", "dco(n_samples=4)", "spectral_decoupling", "sovr", "dhkd", "aslp", "oko", "legendretron",
       "ce + 0.5*multi_similarity", "ce + 0.2*tcm(base=none)"]


@pytest.mark.slow
def test_compare_trains_every_new_loss(tmp_path, capsys):
    teacher = tmp_path / "teacher"
    code, _, err = _invoke(["train", "--loss", "ce", *DATA, "--out", str(teacher), "-q"], capsys)
    assert code == 0, err
    out = tmp_path / "compare"
    code, _, err = _invoke(["compare", *DATA, "--seeds", "1", "--noise", "none", "--losses", ",".join(["ce", *NEW]),
                            "--teacher", str(teacher), "--jobs", "1", "--out", str(out), "-q"], capsys)
    assert code == 0, err
    report = yaml.safe_load((out / "report.yaml").read_text())
    runs = {r["loss"]["label"] if isinstance(r["loss"], dict) else r["loss"]: r for r in report["runs"]}
    assert set(runs) == {"ce", *NEW} and report["n_failed"] == 0
    for label, run in runs.items():
        assert run["status"] == "ok", (label, run.get("error"))
    # each loss's training step (sets, heads, teachers, embeddings) is timed paired against ce's
    steps = {e["loss"]["label"]: e["timing"] for e in report["results"]}
    assert {lab: tm["step_time_source"] for lab, tm in steps.items()} == {lab: "paired" for lab in runs}
    assert all(tm["step_time_vs_baseline"] > 0 for tm in steps.values())
    configs = {p.parent.name: yaml.safe_load(p.read_text()) for p in (out / "runs").glob("*/config.yaml")}
    teachers = {c["loss"]["name"]: c["teacher"] for c in configs.values()}
    assert teachers["pld"] == teachers["dhkd"] == str(teacher)  # the teacher goes to the distilling losses
    assert teachers["ce"] is None and teachers["oko"] is None  # and only to them (their run keys unchanged)
