"""compare: grid expansion, resume (including after kill -9), failure recording, CLI."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
import yaml

from losscli.app.compare.grid import expand_grid, resolve_baseline
from losscli.app.compare.run import run_compare
from losscli.config import build_config
from losscli.errors import UsageError
from tests.grids import tiny_config

_cfg = tiny_config


def test_grid_expansion_counts_and_unique_dirs():
    cfg = _cfg(losses=["ce", "focal(gamma=1)", "gce"], seeds=3, noise=["none", "sym:0.2"], imbalance=["none", "exp:5"])
    specs = expand_grid(cfg)
    assert len(specs) == 3 * 3 * 2 * 2
    assert len({s.key() for s in specs}) == len(specs)
    assert {s.loss_label for s in specs} == {"ce", "focal(gamma=1)", "gce"}
    assert resolve_baseline(cfg) == "ce"
    assert resolve_baseline(_cfg(losses=["ce", "focal(gamma=1)"], baseline="focal")) == "focal(gamma=1)"


@pytest.mark.parametrize("over,needle", [
    ({"losses": ["ce", "focl"]}, "focal"),
    ({"losses": ["ce", "ce"]}, "twice"),
    ({"noise": ["sym:2"]}, "noise"),
    ({"imbalance": ["exp:0.5"]}, "imbalance"),
    ({"losses": ["ce"], "baseline": "gce"}, "baseline"),
])
def test_grid_errors(over, needle):
    cfg = _cfg(**over)
    with pytest.raises(UsageError, match=needle):
        expand_grid(cfg)
        resolve_baseline(cfg)


def test_compare_writes_report_and_resumes(tmp_path, count_report_parses):
    cfg = _cfg(noise=["none", "sym:0.3"])
    report = run_compare(cfg, tmp_path, progress=False)
    assert report["schema"] == "losscli/compare/v2"
    assert (tmp_path / "report.md").is_file() and (tmp_path / "report.yaml").is_file()
    assert len(report["results"]) == 2 * 2  # settings x losses
    entry = report["results"][1]
    assert len(entry["metrics"]["accuracy"]["values"]) == 2
    # the step and loss time ratios are measured paired with the baseline, on the runs' data and model
    tm = entry["timing"]
    assert tm["step_time_source"] == "paired" and tm["step_time_p20"] <= tm["step_time_vs_baseline"] <= tm["step_time_p80"]
    assert tm["step_time_vs_baseline"] > 0 and tm["loss_time_vs_baseline"] > 0 and tm["train_time_vs_baseline"] > 0
    runs = sorted((tmp_path / "runs").iterdir())
    assert len(runs) == 8
    stamps = {p: (p / "report.yaml").stat().st_mtime_ns for p in runs}
    parsed = count_report_parses()
    again = run_compare(cfg, tmp_path, progress=False)  # everything done: nothing re-trained
    assert sorted(parsed) == sorted(str(p / "report.yaml") for p in runs)  # each parsed once, not per status check
    assert {p: (p / "report.yaml").stat().st_mtime_ns for p in runs} == stamps
    assert again["results"][1]["metrics"]["accuracy"]["values"] == entry["metrics"]["accuracy"]["values"]


def test_failed_run_is_recorded_and_others_go_on(tmp_path):
    cfg = _cfg(losses=["ce", "square"], seeds=1, train={"epochs": 2, "batch_size": 32, "lr": 1e6, "optimizer": "sgd",
                                                       "warmup_epochs": 0})
    report = run_compare(cfg, tmp_path, progress=False)
    assert report["n_failed"] >= 1
    failed = [r for r in report["runs"] if r["status"] != "ok"]
    assert failed and all(r["error"] for r in failed)
    assert "fail" in (tmp_path / "report.md").read_text().lower()


def _cli(args, cwd, **kw):
    return subprocess.Popen([sys.executable, "-m", "losscli", "compare", *args], cwd=cwd, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kw)


ARGS = ["--dataset", "synthetic", "--set", "dataset.options={classes: 3, dim: 6, n_train: 300, n_test: 60}",
        "--model", "mlp", "--losses", "ce,gce,mae", "--seeds", "2", "--noise", "none", "--epochs", "4",
        "--batch-size", "16", "--device", "cpu", "--no-batch-runs", "--quiet", "--format", "json"]


@pytest.mark.slow
def test_resume_after_kill_9_gives_the_same_report(tmp_path):
    killed = tmp_path / "killed"
    proc = _cli([*ARGS, "--out", str(killed)], tmp_path, start_new_session=True)
    deadline = time.time() + 120
    while time.time() < deadline:
        done = list(killed.glob("runs/*/report.yaml"))
        if len(done) >= 2:
            break
        time.sleep(0.05)
    assert proc.poll() is None, "compare finished before it could be killed; make the workload longer"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    finished_before = len(list(killed.glob("runs/*/report.yaml")))
    assert 2 <= finished_before < 6
    resumed = _cli([a for a in ARGS if a != "--quiet"] + ["--out", str(killed)], tmp_path)
    out, err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, err
    assert f"{finished_before} already done" in err
    fresh = _cli([*ARGS, "--out", str(tmp_path / "fresh")], tmp_path)
    fresh.communicate(timeout=300)
    a = yaml.safe_load((killed / "report.yaml").read_text())
    b = yaml.safe_load((tmp_path / "fresh" / "report.yaml").read_text())
    for ea, eb in zip(a["results"], b["results"]):
        assert ea["loss"] == eb["loss"]
        assert ea["metrics"]["accuracy"]["values"] == eb["metrics"]["accuracy"]["values"]
        assert ea["metrics"]["nll"]["values"] == pytest.approx(eb["metrics"]["nll"]["values"])


def test_cli_compare_json_and_exit_codes(tmp_path):
    proc = _cli([*ARGS, "--losses", "ce,gce", "--seeds", "1", "--epochs", "1", "--out", str(tmp_path / "c")], tmp_path)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    import json

    data = json.loads(out)
    assert data["schema"] == "losscli/compare/v2" and data["baseline"] == "ce"


def test_default_directory_is_named_after_the_grid():
    from losscli.app.compare.grid import default_out_dir

    preset = build_config("default")
    assert str(default_out_dir("default", preset, preset)) == "compare/default"
    custom = build_config("default", {"losses": ["ce", "gce"]})
    other = default_out_dir("default", custom, preset)
    assert other.name.startswith("default-") and other != default_out_dir("default", preset, preset)
    assert default_out_dir("default", build_config("default", {"losses": ["ce", "gce"]}), preset) == other  # stable
    assert default_out_dir("default", build_config("default", {"jobs": 1}), preset).name == "default"  # how, not what


@pytest.mark.parametrize("clean_val", [False, True])
def test_validation_labels_are_noisy_by_default_and_the_report_says_which(tmp_path, clean_val):
    """Under label noise the runs select on validation labels as noisy as training (a practitioner's);
    --clean-val keeps them clean and the report's setup calls that optimistic."""
    from tests.grids import SYNTH

    cfg = _cfg(losses=["ce"], seeds=1, noise=["sym:0.4"], dataset={**SYNTH, "clean_val": clean_val})
    report = run_compare(cfg, tmp_path, progress=False)
    (run,) = (tmp_path / "runs").iterdir()
    noise = yaml.safe_load((run / "report.yaml").read_text())["data"]["noise"]
    setup = (tmp_path / "report.md").read_text().split("## Verdicts")[0]
    line = next(x for x in setup.splitlines() if x.startswith("| validation labels |"))
    if clean_val:
        assert noise["validation"] == "clean" and "val_num_flipped" not in noise
        assert report["config"]["validation"].startswith("clean") and "optimistic" in line
    else:
        assert noise["validation"].startswith("noisy") and noise["val_num_flipped"] > 0
        assert report["config"]["validation"] == "as noisy as the training labels" and "noisy" in line
        assert "optimistic" not in line


def test_report_cache_reparses_only_a_replaced_report(tmp_path, count_report_parses):
    from losscli.engine import rundir

    cache, run = rundir.ReportCache(), tmp_path / "run"
    assert cache.read(run) is None  # not started yet: nothing cached, so a report written later is seen
    run.mkdir()
    rundir.write_report(run, {"status": "pending"}, None)
    parsed = count_report_parses()
    assert cache.read(run) == cache.read(run) == {"status": "pending"}
    rundir.write_report(run, {"status": "failed", "error": "boom"}, None)  # the run finished in between
    assert cache.read(run) == {"status": "failed", "error": "boom"}
    assert len(parsed) == 2


@pytest.mark.parametrize("text,ours", [
    ("schema: losscli/compare/v2\nresults: []\n", True),
    ("baseline: ce\nschema: losscli/compare/v1\n", True),  # not first: the whole file is read
    ("schema: losscli/run/v1\nstatus: ok\n", False),  # a run's directory
    ("results: [1, 2\n", False),  # not YAML: not ours
    ("- schema\n", False),
])
def test_out_with_a_report_yaml_is_refused_unless_a_compare_wrote_it(tmp_path, text, ours):
    from losscli.app.compare.run import _check_out

    (tmp_path / "report.yaml").write_text(text)
    if ours:
        _check_out(tmp_path)
    else:
        with pytest.raises(UsageError, match="not a losscli compare's"):
            _check_out(tmp_path)


@pytest.fixture
def count_report_parses(monkeypatch):
    """Call it to start counting: the list of run report.yaml files parsed (one item per parse)."""
    from losscli.engine import rundir

    def start():
        seen: list[str] = []
        real = rundir.load_yaml

        def counting(text, what):
            if what.endswith(rundir.REPORT):
                seen.append(what)
            return real(text, what)

        monkeypatch.setattr(rundir, "load_yaml", counting)
        return seen

    return start
