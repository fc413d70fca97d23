"""Logs people can follow (one line per epoch off a terminal) and experiment trackers (TensorBoard,
MLflow: local file store, nothing on the network)."""

from __future__ import annotations

import importlib.util
import re

import pytest

import losscli.cli as cli
from tests.cli_helpers import invoke as _invoke

cli._register_commands()
TINY = ["--dataset", "synthetic", "--set", "dataset.options.n_train=200", "--device", "cpu"]



def test_one_line_per_epoch_off_a_terminal(tmp_path, capsys):
    code, _, err = _invoke(["train", *TINY, "--epochs", "3", "--out", str(tmp_path / "a")], capsys)
    assert code == 0, err
    lines = [x for x in err.splitlines() if re.match(r"ce: epoch \d/3 ", x)]
    assert [x.split()[2] for x in lines] == ["1/3", "2/3", "3/3"]
    assert all(re.search(r"loss \d\.\d{4}  val_accuracy \d\.\d{4}  lr \S+  \d+\.\ds$", x) for x in lines), lines
    assert "\r" not in err  # no progress bar redrawn into the log
    code, _, err = _invoke(["train", *TINY, "--epochs", "5", "--log-every", "2", "--out", str(tmp_path / "b")], capsys)
    assert [x.split()[2] for x in err.splitlines() if x.startswith("ce: epoch")] == ["2/5", "4/5", "5/5"]
    code, _, err = _invoke(["train", *TINY, "--epochs", "2", "--quiet", "--out", str(tmp_path / "c")], capsys)
    assert code == 0 and err == ""


def test_terminal_gets_the_bar_not_lines(monkeypatch):
    import sys

    from losscli.engine.progress import EpochProgress

    said = []
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True, raising=False)
    bar = EpochProgress(3, "ce", True, None, said.append)
    assert bar._bar is not None
    bar.epoch(1, 0.5, 0.9, 0.01)
    bar.close()
    assert said == []
    lines = EpochProgress(3, "ce", True, 1, said.append)  # --log-every asks for lines even on a terminal
    lines.epoch(1, 0.5, 0.9, 0.01)
    assert len(said) == 1 and said[0].startswith("ce: epoch 1/3")


def test_compare_progress_off_a_terminal(tmp_path, capsys):
    code, _, err = _invoke(["compare", *TINY, "--losses", "ce,mae", "--seeds", "2", "--noise", "none",
                            "--epochs", "1", "--jobs", "1", "--out", str(tmp_path / "cmp")], capsys)
    assert code == 0, err
    counts = [x for x in err.splitlines() if re.search(r"\d+ done, \d+ running, \d+ pending, \d+ failed", x)]
    assert len(counts) == 4 and "ETA" in counts[0] and counts[-1].strip().endswith("4 done, 0 running, 0 pending, 0 failed")


# --------------------------------------------------------------------------- trackers
def test_missing_or_unknown_tracker_is_one_line(tmp_path, capsys, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "mlflow" else real(name, *a))
    code, _, err = _invoke(["train", *TINY, "--epochs", "1", "--tracker", "mlflow", "--out", str(tmp_path / "r")], capsys)
    assert code == 2 and "pip install 'losscli[mlflow]'" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "r").exists()  # refused before anything ran
    code, _, err = _invoke(["compare", *TINY, "--tracker", "wandb", "--out", str(tmp_path / "c")], capsys)
    assert code == 2 and "unknown tracker 'wandb'" in err


def test_tensorboard_event_files(tmp_path, capsys):
    pytest.importorskip("tensorboard")
    from losscli.app.trackers.tensorboard import scalars

    code, _, err = _invoke(["train", *TINY, "--epochs", "3", "--tracker", "tensorboard", "--quiet",
                            "--out", str(tmp_path / "run")], capsys)
    assert code == 0, err
    found = scalars(tmp_path / "run" / "tensorboard")
    assert [s for s, _ in found["val/accuracy"]] == [1, 2, 3] and [s for s, _ in found["train/train_loss"]] == [1, 2, 3]
    assert "train/lr" in found and found["final/test_accuracy"][0][0] == 3
    import yaml

    report = yaml.safe_load((tmp_path / "run" / "report.yaml").read_text())
    assert found["final/test_accuracy"][0][1] == pytest.approx(report["metrics"]["test"]["accuracy"])


def test_mlflow_local_store_for_train_and_compare(tmp_path, capsys, monkeypatch):
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient

    monkeypatch.chdir(tmp_path)  # the default store is ./mlruns
    code, _, err = _invoke(["train", *TINY, "--epochs", "3", "--tracker", "mlflow", "--quiet", "--out", "run"], capsys)
    assert code == 0, err
    client = MlflowClient((tmp_path / "mlruns").as_uri())
    exp = client.get_experiment_by_name("losscli")
    (run,) = client.search_runs([exp.experiment_id])
    assert run.info.status == "FINISHED" and run.data.params["train.epochs"] == "3"
    assert run.data.tags["losscli.loss"] == "ce" and run.data.tags["losscli.seed"] == "0"
    assert [m.step for m in client.get_metric_history(run.info.run_id, "val_accuracy")] == [1, 2, 3]
    assert "final_test_accuracy" in run.data.metrics
    assert {a.path for a in client.list_artifacts(run.info.run_id)} >= {"report.yaml", "report.md", "metrics.jsonl"}

    store = tmp_path / "store"
    code, _, err = _invoke(["compare", *TINY, "--losses", "ce,mae", "--seeds", "1", "--noise", "none", "--epochs", "1",
                            "--jobs", "1", "--out", "cmp", "--tracker", "mlflow", "--tracking-uri", str(store)], capsys)
    assert code == 0, err
    client = MlflowClient(store.resolve().as_uri())
    exp = client.get_experiment_by_name("losscli compare cmp")
    runs = client.search_runs([exp.experiment_id])
    assert sorted(r.data.tags["losscli.loss"] for r in runs) == ["ce", "mae"]  # one tracker run per training run
    assert {r.data.tags["losscli.compare_dir"] for r in runs} == {str((tmp_path / "cmp").resolve())}
    assert all(r.data.tags["losscli.noise"] == "none" and r.info.status == "FINISHED" for r in runs)


def test_tracker_failure_never_stops_training(tmp_path):
    from losscli.app.trackers import Guarded

    class Broken:
        closed = False

        def started(self, resolved, start):
            raise ConnectionError("server went away")

        def close(self):
            Broken.closed = True

    said = []
    g = Guarded(Broken(), "mlflow", said.append)
    g.started({}, 0)
    g.epoch({"epoch": 1})  # not called on a dead tracker
    assert len(said) == 1 and "mlflow tracking stopped (ConnectionError: server went away)" in said[0]
    assert Broken.closed
