"""compare --tune: search spaces from the registry, equal budgets, validation-only selection,
final runs with the tuned values and fresh seeds, and a study that survives kill -9."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time

import pytest

from losscli.app.tuning.space import LR, search_space
from losscli.losses import LOSSES
from losscli.losses.meta import LossInfo, Param, Reference
from tests.grids import SYNTH, tiny_config


def _cfg(**over):
    """The tiny grid with noise, 3 epochs, one job and 3 tuning trials per loss and setting."""
    return tiny_config(**{"noise": ["sym:0.2"], "train": {"epochs": 3, "batch_size": 32, "lr": 0.01}, "jobs": 1,
                          "tune": {"trials": 3}, **over})


def _info(*params):
    return LossInfo(name="x", family="standard", reference=Reference("t", "a", 2000), formula="f", params=params)


def test_search_space_rules():
    dims = {d.name: d for d in search_space(_info(
        Param("q", 0.7, low=0.0, high=1.0, low_open=True),  # finite range: uniform, strictly inside the open end
        Param("gamma", 2.0, low=0.0),  # half-open: [default/10, default*10], log scale
        Param("coef", 1e-4, low=0.0, high=1.0),  # spans decades... but low = 0: no log scale
        Param("order", 2, kind="int", low=1),  # int: [1, 20] clipped to the valid range
        Param("eps", 1e-8, low=0.0, search=False),  # a numerical guard: not tuned
        Param("shift", 0.0),  # zero default, open range: no scale to search on
        Param("mode", "a", kind="str", choices=("a", "b")),  # modes are not tuned
        Param("beta", 0.999, low=0.0, high=1.0, search=[0.9, 0.99, 0.999]),  # explicit choices
        Param("tau", 1.0, low=0.0, search=(0.01, 1.0, "log")),  # explicit interval
    ), lr=0.01, lr_factor=10.0)}
    assert set(dims) == {"q", "gamma", "coef", "order", "beta", "tau", LR}
    assert dims["q"].low > 0 and dims["q"].high == 1.0 and not dims["q"].log
    assert (dims["gamma"].low, dims["gamma"].high, dims["gamma"].log) == (pytest.approx(0.2), pytest.approx(20.0), True)
    assert not dims["coef"].log
    assert (dims["order"].kind, dims["order"].low, dims["order"].high) == ("int", 1, 20)
    assert dims["beta"].kind == "categorical" and dims["beta"].choices == (0.9, 0.99, 0.999)
    assert (dims["tau"].low, dims["tau"].high, dims["tau"].log) == (0.01, 1.0, True)
    assert (dims[LR].low, dims[LR].high, dims[LR].log) == (pytest.approx(0.001), pytest.approx(0.1), True)


def test_study_seeds_stay_in_optunas_range():
    # the plain sum sampler_seed + a 32-bit hash passed 2**32: Optuna's ValueError, exit 1
    import hashlib

    from losscli.app.tuning.run import study_seed

    seeds = [study_seed(s, f"study-{i}") for s in (0, 2**32 - 1) for i in range(50)]
    assert all(0 <= s < 2**32 for s in seeds)
    assert study_seed(0, "a") == int(hashlib.sha256(b"a").hexdigest()[:8], 16)  # unchanged below 2**32


def test_tuned_lr_stays_in_the_trainers_range():
    # lr * lr_factor above train.lr's limit: every such trial would be refused by the trainer's validation
    from losscli.config.validate import MAX_LR

    (dim,) = search_space(_info(), lr=MAX_LR / 10, lr_factor=1000.0)
    assert dim.name == LR and dim.high == MAX_LR and dim.low == pytest.approx(MAX_LR / 10_000)


def test_every_registered_loss_has_a_valid_search_space():
    for name in LOSSES.names():
        for d in search_space(LOSSES.get(name).info, 0.01, 10.0):
            assert d.kind == "categorical" or d.high > d.low, (name, d)


def test_a_weighted_sum_is_tuned_on_the_learning_rate(tmp_path):
    # compare --tune with "ce + 0.5*focal" stopped with "unknown loss 'ce + 0.5*focal'" before any trial
    from losscli.app.tuning.run import plan_studies
    from losscli.config import build_config

    cfg = build_config(None, {"losses": ["ce + 0.5*focal(gamma=3)"], "noise": "none", "tune": {"trials": 2}})
    (plan,) = plan_studies(cfg, f"sqlite:///{tmp_path / 'tuning.db'}")
    assert plan.label == "ce + 0.5*focal(gamma=3)" and [d.name for d in plan.dims] == [LR]


def test_tuned_compare_end_to_end(tmp_path):
    from losscli.app.compare.run import run_compare

    report = run_compare(_cfg(), tmp_path, progress=False)
    tuning = report["tuning"]
    assert set(tuning) == {"ce", "gce"}
    setting = "noise sym:0.2, imbalance none"
    for lab, entry in tuning.items():  # the same budget for every loss, the baseline included
        done = entry["n_complete"][setting] + entry["n_pruned"][setting] + entry["n_failed"][setting]
        assert entry["n_trials"] == 3 and done == 3 and len(entry["history"][setting]) == 3
        assert LR in entry["best_params"][setting] and 0 < entry["best_value"][setting] <= 1
        assert entry["storage"].startswith("sqlite:///") and (tmp_path / "tuning.db").is_file()
    assert "q" in tuning["gce"]["best_params"][setting]
    # the final runs use the tuned values with fresh seeds (0 and 1; trials used 10000+)
    gce_runs = [r for r in report["runs"] if r["loss"] == "gce"]
    assert sorted(r["seed"] for r in gce_runs) == [0, 1]
    import yaml

    cfg = yaml.safe_load(open(os.path.join(gce_runs[0]["run_dir"], "config.yaml")))
    assert cfg["train"]["lr"] == pytest.approx(tuning["gce"]["best_params"][setting][LR])
    assert cfg["loss"]["params"]["q"] == pytest.approx(tuning["gce"]["best_params"][setting]["q"])
    assert "## Tuning" in (tmp_path / "report.md").read_text()
    assert (tmp_path / "tuning.png").is_file()
    # a rerun repeats nothing: no new trials, no retraining
    stamps = {p: p.stat().st_mtime_ns for p in (tmp_path / "runs").glob("*/report.yaml")}
    again = run_compare(_cfg(), tmp_path, progress=False)
    assert again["tuning"]["gce"]["history"] == tuning["gce"]["history"]
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "runs").glob("*/report.yaml")} == stamps


def test_a_shared_storage_holds_one_study_for_several_compare_directories(tmp_path):
    """--storage URL: the study lives there, not in the compare directory, and a second driver (another
    machine, another --out) with the same grid continues that study instead of starting its own."""
    from losscli.app.compare.run import run_compare
    from losscli.app.tuning.run import redact_storage

    url = f"sqlite:///{tmp_path / 'shared.db'}"
    cfg = _cfg(losses=["ce"], seeds=1, tune={"trials": 2, "storage": url})
    first = run_compare(cfg, tmp_path / "a", progress=False)
    assert first["tuning"]["ce"]["storage"] == url and not (tmp_path / "a" / "tuning.db").exists()
    assert len(_finished_trials(tmp_path / "shared.db")) == 2
    second = run_compare(cfg, tmp_path / "b", progress=False)
    assert len(_finished_trials(tmp_path / "shared.db")) == 2  # the budget was used already: no new trial
    assert second["tuning"]["ce"]["best_params"] == first["tuning"]["ce"]["best_params"]
    # a database password never reaches the report
    assert redact_storage("postgresql://user:secret@db:5432/losscli") == "postgresql://***@db:5432/losscli"


def test_tuning_never_touches_the_test_split(monkeypatch):
    """Trials see a bundle whose test split is empty: selection cannot use it, even by accident."""
    from losscli.app.tuning.run import run_tuning
    from losscli.app.executors.local import LocalExecutor
    from losscli.engine import build

    seen = []
    real = build.DeviceData.from_bundle.__func__

    def spy(cls, bundle, device):
        seen.append((len(bundle.y_test), len(bundle.y_val)))
        return real(cls, bundle, device)

    monkeypatch.setattr(build.DeviceData, "from_bundle", classmethod(spy))
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        out = run_tuning(_cfg(), d, LocalExecutor())
    assert seen and all(n_test == 0 and n_val > 0 for n_test, n_val in seen)
    assert out["best"]


def test_tuning_shows_trial_progress_with_counts_and_an_eta(tmp_path):
    """Tuning is most of a tuned compare's time: it shows done / running / pending / failed trials and
    an ETA on stderr, as the grid does for its runs (it only said "tuning wave N")."""
    from losscli.app.executors.local import LocalExecutor
    from losscli.app.tuning.run import run_tuning

    logs: list[str] = []
    run_tuning(_cfg(), tmp_path, LocalExecutor(), logs.append, progress=True, slots=2)
    counts = [line for line in logs if " trial " in line and " done, " in line]
    assert len(counts) == 6, logs  # 2 losses x 3 trials, one line each
    assert counts[0].endswith(": 1 done, 1 running, 4 pending, 0 failed, ETA " + counts[0].rsplit(" ", 1)[1])
    assert ": 2 done, 0 running, 4 pending, 0 failed" in counts[1]  # a wave ends before the next one starts
    assert counts[-1].endswith("6 done, 0 running, 0 pending, 0 failed")
    logs.clear()
    run_tuning(_cfg(), tmp_path, LocalExecutor(), logs.append, progress=True)  # resumed: nothing left to do
    assert not [line for line in logs if " done, " in line]


class _DyingOn:
    """An executor whose worker always dies on ``doomed``'s trials (a configuration that runs out of
    memory every time) and trains the others here; it stops the test if a study is asked unboundedly."""

    def __init__(self, doomed: str):
        from collections import Counter

        self.doomed, self.asked = doomed, Counter()

    def run(self, tasks):
        for task in tasks:
            self.asked[task.label] += 1
            assert self.asked[task.label] <= 10, f"{task.label} asked unboundedly"
            if task.label == self.doomed:
                yield task.lost("its worker process died 3 times (out of memory?); it stays pending")
            else:
                yield task.execute()

    def close(self) -> None:
        pass


def test_a_study_whose_workers_keep_dying_stops_tuning_with_one_line_after_the_others(tmp_path, monkeypatch, capsys):
    import losscli.app.executors
    from losscli.app.tuning.run import MAX_LOST_IN_A_ROW
    from tests.cli_helpers import invoke

    executor = _DyingOn("gce")
    monkeypatch.setattr(losscli.app.executors, "make_executor", lambda *a, **k: executor)
    options = ", ".join(f"{k}: {v}" for k, v in SYNTH["options"].items())
    code, _, err = invoke(["compare", "--dataset", "synthetic", "--set", f"dataset.options={{{options}}}", "--model",
                           "mlp", "--losses", "ce,gce", "--seeds", "1", "--noise", "none", "--epochs", "2",
                           "--device", "cpu", "--jobs", "1", "--tune", "3", "--out", str(tmp_path / "c")], capsys)
    assert code == 1, err
    last = err.strip().splitlines()[-1]
    assert last.startswith("error: tuning gce (noise none, imbalance none) stopped: its worker process kept dying")
    assert "out of memory?" in last and "kept in the study storage" in last and "rerun the same command" in last
    assert "Traceback" not in err
    assert executor.asked == {"gce": MAX_LOST_IN_A_ROW, "ce": 3}  # bounded, and the other study used its budget
    with sqlite3.connect(tmp_path / "c" / "tuning.db") as con:
        states = [s for (s,) in con.execute("select state from trials")]
    assert len(states) == 3 + MAX_LOST_IN_A_ROW and "RUNNING" not in states  # every trial recorded, none left open


def _finished_trials(db):
    with sqlite3.connect(db) as con:
        rows = con.execute("select number, state from trials").fetchall()
    return rows


@pytest.mark.slow
def test_tuning_resumes_after_kill_9_without_repeating_trials(tmp_path):
    args = [sys.executable, "-m", "losscli", "compare", "--dataset", "synthetic", "--set",
            "dataset.options={classes: 3, dim: 6, n_train: 600, n_test: 60}", "--model", "mlp", "--losses", "ce",
            "--seeds", "1", "--noise", "none", "--epochs", "8", "--batch-size", "16", "--device", "cpu",
            "--jobs", "1", "--tune", "6", "--set", "tune.pruner=none", "--quiet", "--out", str(tmp_path / "c")]
    proc = subprocess.Popen(args, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    db = tmp_path / "c" / "tuning.db"
    deadline = time.time() + 180
    done_before = []
    while time.time() < deadline:
        if db.is_file():
            try:
                done_before = [n for n, state in _finished_trials(db) if state == "COMPLETE"]
            except sqlite3.OperationalError:
                pass
            if len(done_before) >= 2:
                break
        time.sleep(0.1)
    assert proc.poll() is None, "tuning finished before it could be killed; make it longer"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    done_before = [n for n, state in _finished_trials(db) if state == "COMPLETE"]
    assert 2 <= len(done_before) < 6
    resumed = subprocess.run(args, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    rows = _finished_trials(db)
    complete = [n for n, state in rows if state == "COMPLETE"]
    assert len(complete) == 6  # the budget, exactly: finished trials were not repeated
    assert set(done_before) <= set(complete)
    assert len([1 for _, state in rows if state == "RUNNING"]) == 0  # the killed run's trial was released
