"""Regression datasets and hl_gauss end to end: float targets -> a regression bundle, MSE / MAE / R²
from the loss's decoded predictions, best epoch by validation MSE, and one-line refusals for every
mismatch (a classification loss on regression data and the reverse, noise, imbalance, calibrators)."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch
import yaml

import losscli.cli as cli
from losscli.data import apply_imbalance, apply_noise, load_dataset
from losscli.errors import UsageError
from tests.cli_helpers import invoke as _invoke

cli._register_commands()
HL = "hl_gauss(vmin=-3,vmax=4,num_bins=32)"  # the support covers standardised targets



def _linear_regression_npz(path, n=300, d=5, noise=0.3, seed=0):
    """y = x w + noise, standardised: a regression task a small MLP learns within a few epochs."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d)).astype(np.float32)
    y = x @ rng.normal(size=d) + noise * rng.normal(size=n)
    np.savez(path, x=x, y=((y - y.mean()) / y.std()).astype(np.float32))
    return path


@pytest.fixture(scope="module")
def diabetes_npz(tmp_path_factory):
    """scikit-learn's bundled diabetes data (offline), inputs and targets standardised."""
    datasets = pytest.importorskip("sklearn.datasets")
    x, y = datasets.load_diabetes(return_X_y=True)
    path = tmp_path_factory.mktemp("diabetes") / "diabetes.npz"
    np.savez(path, x=((x - x.mean(0)) / x.std(0)).astype(np.float32), y=((y - y.mean()) / y.std()).astype(np.float32))
    return path


# ---------------------------------------------------------------------------------- data
def test_float_targets_make_a_regression_bundle(tmp_path):
    b = load_dataset(str(_linear_regression_npz(tmp_path / "r.npz")), val_fraction=0.1)
    assert b.task == "regression" and b.is_regression and b.num_classes == 0
    assert b.y_train.dtype == torch.float32 and b.y_test.dtype == torch.float32
    assert (len(b.y_train), len(b.y_val), len(b.y_test)) == (216, 24, 60)  # carved at random, not per value
    assert b.info["task"] == "regression" and set(b.info["target"]) == {"mean", "std", "min", "max"}
    with pytest.raises(UsageError, match="no class counts"):
        b.class_counts


def test_integer_valued_targets_need_the_task_option(tmp_path):
    path = tmp_path / "counts.npz"
    np.savez(path, x=np.random.default_rng(0).normal(size=(40, 3)), y=np.arange(40, dtype=np.float64) % 4)
    assert load_dataset(str(path)).task == "classification"  # integer-valued floats are class labels
    b = load_dataset(str(path), options={"task": "regression"})
    assert b.is_regression and b.y_train.dtype == torch.float32
    with pytest.raises(UsageError, match="option task must be one of"):
        load_dataset(str(path), options={"task": "ranking"})
    with pytest.raises(UsageError, match="num_classes does not apply"):
        load_dataset(str(path), options={"task": "regression", "num_classes": 4})
    np.savez(path, x=np.zeros((4, 2)), y=np.array([0.5, np.nan, 1.0, 2.0]))
    with pytest.raises(UsageError, match="must be finite"):
        load_dataset(str(path))
    # negative whole numbers (e.g. integer temperatures) said only "labels must be >= 0"
    np.savez(path, x=np.zeros((40, 2)), y=np.arange(40, dtype=np.float32) - 20)
    with pytest.raises(UsageError, match=r"labels must be >= 0.*--set dataset\.options\.task=regression"):
        load_dataset(str(path))
    assert load_dataset(str(path), options={"task": "regression"}).is_regression
    np.savez(path, x=np.zeros((40, 2)), y=np.arange(40) - 20)  # integer labels: no regression hint
    with pytest.raises(UsageError, match=r"labels must be >= 0, got -\d+$"):
        load_dataset(str(path))


def test_many_whole_number_float_classes_warn_that_they_may_be_a_regression_target(tmp_path):
    # sklearn's diabetes targets (25..346, whole numbers) trained silently as a 300-class problem
    path = tmp_path / "scores.npz"
    rng = np.random.default_rng(0)
    np.savez(path, x=rng.normal(size=(400, 3)), y=(np.arange(400) % 60).astype(np.float64))
    (warning,) = load_dataset(str(path)).info["warnings"]
    assert "read as 60 class labels" in warning and "--set dataset.options.task=regression" in warning
    assert "warnings" not in load_dataset(str(path), options={"task": "regression"}).info
    np.savez(path, x=rng.normal(size=(400, 3)), y=np.arange(400) % 60)  # integer labels: classes, no doubt
    assert "warnings" not in load_dataset(str(path)).info
    np.savez(path, x=rng.normal(size=(400, 3)), y=(np.arange(400) % 10).astype(np.float32))  # few classes
    assert "warnings" not in load_dataset(str(path)).info


def test_csv_files(tmp_path):
    path = tmp_path / "table.csv"
    rows = ["a,y,b"] + [f"{i},{i * 0.5 + 0.25},{-i}" for i in range(30)]
    path.write_text("\n".join(rows) + "\n")
    b = load_dataset(str(path), options={"normalize": False})
    assert b.is_regression and b.input_shape == (2,)
    full = torch.cat([b.x_train, b.x_val, b.x_test])
    assert sorted(full[:, 0].tolist()) == [float(i) for i in range(30)]  # column a, without the target
    torch.testing.assert_close(torch.cat([b.y_train, b.y_val, b.y_test]).sort()[0], torch.arange(30) * 0.5 + 0.25)
    path.write_text("f1,label\n" + "".join(f"{i},{i % 3}\n" for i in range(30)))
    assert load_dataset(str(path), options={"label_column": "label"}).num_classes == 3
    assert load_dataset(str(path)).num_classes == 3  # 'label' is found by name
    with pytest.raises(UsageError, match="no label column 'y'"):
        load_dataset(str(path), options={"label_column": "y"})
    path.write_text("a,y\n1,2\n3,x\n")
    with pytest.raises(UsageError, match="line 3: column 'y' mixes numbers and text"):
        load_dataset(str(path))


def test_noise_and_imbalance_are_refused_for_regression(tmp_path):
    b = load_dataset(str(_linear_regression_npz(tmp_path / "r.npz")))
    with pytest.raises(UsageError, match="regression dataset"):
        apply_noise(b, "sym:0.2", seed=0)
    with pytest.raises(UsageError, match="regression dataset"):
        apply_imbalance(b, "exp:10")
    assert apply_imbalance(apply_noise(b, "none", seed=0), "none").is_regression  # no-ops keep the task


# ---------------------------------------------------------------------------------- metrics
def test_regression_metrics_match_scikit_learn():
    skm = pytest.importorskip("sklearn.metrics")
    from losscli.metrics import METRICS, compute_regression_metrics

    g = torch.Generator().manual_seed(0)
    y = torch.randn(50, generator=g)
    p = y + 0.5 * torch.randn(50, generator=g)
    m = compute_regression_metrics(p, y)
    assert m["mse"] == pytest.approx(skm.mean_squared_error(y, p))
    assert m["mae"] == pytest.approx(skm.mean_absolute_error(y, p))
    assert m["r2"] == pytest.approx(skm.r2_score(y, p))
    assert compute_regression_metrics(torch.full((50,), float(y.mean())), y)["r2"] == pytest.approx(0.0, abs=1e-12)
    assert METRICS["r2"].higher_is_better and not METRICS["mse"].higher_is_better and not METRICS["mae"].higher_is_better
    with pytest.raises(UsageError, match="mismatch"):
        compute_regression_metrics(p[:3], y)


# ---------------------------------------------------------------------------------- training
def _spec(dataset, loss=HL, epochs=15, device="cpu", **train):
    from losscli.config import build_config
    from losscli.engine.runspec import RunSpec
    from losscli.losses import resolve_loss

    cfg = build_config(None, {"dataset": {"name": str(dataset)}, "model": {"name": "mlp"}, "device": device,
                              "train": {"epochs": epochs, "batch_size": 32, "lr": 0.003, **train}})
    return RunSpec.from_config(cfg, resolve_loss(loss, for_engine=True))


def test_hl_gauss_trains_and_reports_regression_metrics(tmp_path):
    from losscli.report.run import render_run_markdown
    from losscli.engine import rundir
    from losscli.engine.trainer import train_run

    data = _linear_regression_npz(tmp_path / "r.npz")
    report = train_run(_spec(data), tmp_path / "run", progress=False, render_markdown=render_run_markdown)
    assert report["status"] == "ok" and report["task"] == "regression"
    test = report["metrics"]["test"]
    assert set(test) == {"mse", "mae", "r2"} and test["r2"] > 0.7  # a near-linear target: learnt well
    history = report["history"]
    assert set(history[0]) >= {"val_mse", "test_mse"} and "val_accuracy" not in history[0]
    best = report["metrics"]["best_epoch"]
    assert best["val_mse"] == min(h["val_mse"] for h in history)  # best epoch: lowest validation MSE
    assert rundir.run_status(tmp_path / "run") == "ok"  # a finished regression run is not "pending"
    assert "best epoch (by validation MSE)" in (tmp_path / "run" / "report.md").read_text()
    state = torch.load(tmp_path / "run" / "model.pt", weights_only=True)
    assert state["model.head.weight"].shape[0] == 32  # one output per bin


@pytest.mark.gpu
def test_hl_gauss_trains_on_cuda(tmp_path):
    """The CUDA defaults (torch.compile, bf16 autocast): decoding runs on float32 logits."""
    from losscli.engine.trainer import train_run

    report = train_run(_spec(_linear_regression_npz(tmp_path / "r.npz"), device="cuda"), tmp_path / "run", progress=False)
    assert report["status"] == "ok" and report["env"]["compiled"] is True
    assert report["metrics"]["test"]["r2"] > 0.7


def test_epoch_callback_gets_a_higher_is_better_score(tmp_path):
    from losscli.engine.trainer import train_trial

    seen = []
    out = train_trial(_spec(_linear_regression_npz(tmp_path / "r.npz"), epochs=3), on_epoch=lambda e, s: seen.append(s))
    assert [-s for s in seen] == [h["val_mse"] for h in out["history"]]


def test_diabetes_end_to_end_through_the_cli(diabetes_npz, tmp_path, capsys):
    out = tmp_path / "diabetes-run"
    code, stdout, err = _invoke(["train", "--loss", HL, "-d", str(diabetes_npz), "-m", "mlp", "--epochs", "30",
                                 "--lr", "0.003", "--out", str(out), "-q", "-f", "json"], capsys)
    assert code == 0, err
    report = json.loads(stdout)
    # a constant predictor has R² <= 0 on the test split; linear models reach about 0.5 on this data
    assert report["metrics"]["test"]["r2"] > 0.25, report["metrics"]["test"]
    code, stdout, err = _invoke(["eval", str(out), "-f", "yaml"], capsys)
    assert code == 0, err
    evaluated = yaml.safe_load(stdout)
    assert evaluated["metrics"]["test"]["mse"] == pytest.approx(report["metrics"]["test"]["mse"], rel=1e-5)
    for args in (["calibrate", str(out)], ["eval", str(out), "--calibrator", "temperature"]):
        code, _, err = _invoke(args, capsys)
        assert code == 2 and "regression run" in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("loss,data,needle", [
    ("ce", "regression", "ce is a classification loss but r.npz is a regression dataset"),
    ("ce + 0.5*focal", "regression", "classification loss"),
    (HL, "synthetic", "hl_gauss.* is a regression loss but synthetic is a classification dataset"),
])
def test_task_mismatch_is_one_line_and_exit_2(loss, data, needle, tmp_path, capsys):
    dataset = str(_linear_regression_npz(tmp_path / "r.npz")) if data == "regression" else data
    out = tmp_path / "never"
    code, _, err = _invoke(["train", "--loss", loss, "-d", dataset, "--epochs", "1", "--out", str(out), "-q"], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert re.search(needle, err), err
    assert not out.exists()  # refused before anything is written


@pytest.mark.parametrize("flag", [["--noise", "sym:0.2"], ["--imbalance", "exp:10"]])
def test_noise_and_imbalance_flags_on_regression_data_exit_2(flag, tmp_path, capsys):
    data = str(_linear_regression_npz(tmp_path / "r.npz"))
    code, _, err = _invoke(["train", "--loss", HL, "-d", data, "--epochs", "1", "--out", str(tmp_path / "x"), "-q",
                            *flag], capsys)
    assert code == 2 and "regression dataset" in err and len(err.strip().splitlines()) == 1


def test_targets_outside_the_support_are_refused_in_train_and_compare(tmp_path, capsys):
    # raw diabetes-like targets (25..346) with a support made for standardised ones were all clamped to
    # vmax: the run "trained" to R² < 0 without a word, and compare recorded failed runs (exit 1)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(120, 3)).astype(np.float32)
    y = (150 + 40 * x[:, 0]).clip(25, 346).round().astype(np.float32)  # whole-number float targets, as in load_diabetes
    data = tmp_path / "raw.npz"
    np.savez(data, x=x, y=y)
    code, _, err = _invoke(["train", "--loss", HL, "-d", str(data), "--epochs", "1", "--out", str(tmp_path / "a"),
                            "-q"], capsys)
    assert code == 2 and "--set dataset.options.task=regression" in err, err  # whole numbers read as labels
    task = ["--set", "dataset.options.task=regression"]
    code, _, err = _invoke(["train", "--loss", HL, "-d", str(data), *task, "--epochs", "1",
                            "--out", str(tmp_path / "b"), "-q"], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1 and "outside its support [-3, 4]" in err, err
    assert not (tmp_path / "b").exists()
    code, _, err = _invoke(["compare", "--losses", HL, "-d", str(data), *task, "--seeds", "1", "--noise", "none",
                            "--epochs", "1", "--jobs", "1", "--out", str(tmp_path / "c"), "-q"], capsys)
    assert code == 2 and "outside its support" in err, err
    covered = f"hl_gauss(vmin={y.min() - 1:g},vmax={y.max() + 1:g},num_bins=32)"
    code, _, err = _invoke(["train", "--loss", covered, "-d", str(data), *task, "--epochs", "1",
                            "--out", str(tmp_path / "d"), "-q"], capsys)
    assert code == 0, err


def test_compare_on_regression_data_refuses_the_inherited_noise_grid_up_front(tmp_path, capsys):
    # the default preset's grid has sym:0.4; on float targets every run of it failed (exit 1, half the
    # grid recorded as failed) instead of one line before the first run
    data = str(_linear_regression_npz(tmp_path / "r.npz"))
    out = tmp_path / "c"
    code, _, err = _invoke(["compare", "--losses", HL, "-d", data, "--seeds", "1", "--epochs", "1", "--jobs", "1",
                            "--out", str(out), "-q"], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert "regression dataset" in err and "sym:0.4" in err and "--noise none" in err, err
    assert not list((out / "runs").glob("*/report.yaml"))  # no run started
    code, _, err = _invoke(["compare", "--losses", HL, "-d", data, "--seeds", "1", "--epochs", "1", "--jobs", "1",
                            "--noise", "none", "--out", str(out), "-q"], capsys)
    assert code == 0, err
