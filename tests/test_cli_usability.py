"""Outputs people can use: --format csv on every table, shell completion (fast, torch-free), defaults
in --help, help text that wraps between words, Hugging Face's bars off with --quiet."""

from __future__ import annotations

import csv
import io
import os
import re
import subprocess
import sys
import time

import pytest

import losscli.cli as cli
from tests.cli_helpers import invoke as _invoke

cli._register_commands()



def _csv(text):
    rows = list(csv.reader(io.StringIO(text)))
    assert rows and all(len(r) == len(rows[0]) for r in rows), text[:500]
    return rows[0], rows[1:]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    from losscli.app.train import run_train
    from losscli.config import build_config

    out = tmp_path_factory.mktemp("csv") / "run"
    cfg = build_config(None, {"dataset": {"name": "synthetic", "options": {"n_train": 300, "classes": 4}},
                              "train": {"epochs": 2}, "device": "cpu"})
    run_train(cfg, out=out, progress=False)
    return out


@pytest.mark.parametrize("args,column,min_rows", [
    (["losses"], "family", 20),
    (["losses", "focal"], "params", 1),
    (["presets"], "description", 3),
    (["presets", "quick"], "value", 10),
    (["profile", "--losses", "ce,focal", "--batch", "64", "--classes", "10", "--repeats", "1", "--warmup", "0",
      "--no-memory", "--device", "cpu", "--quiet"], "total_ms", 2),
    (["profile", "--shape", "--losses", "ce,mae", "--quiet"], "bounded", 2),
])
def test_format_csv_everywhere(args, column, min_rows, capsys):
    code, out, err = _invoke([*args, "--format", "csv"], capsys)
    assert code == 0, err
    header, rows = _csv(out)
    assert column in header and len(rows) >= min_rows


def test_format_csv_for_runs(run_dir, capsys):
    code, out, err = _invoke(["eval", str(run_dir), "--format", "csv", "--device", "cpu"], capsys)
    assert code == 0, err
    header, rows = _csv(out)
    assert {"split", "accuracy", "nll"} <= set(header) and [r[0] for r in rows] == ["test", "val"]
    code, out, err = _invoke(["calibrate", str(run_dir), "--methods", "temperature,histogram", "--format", "csv"], capsys)
    assert code == 0, err
    header, rows = _csv(out)
    assert "method" in header and len(rows) == 3  # uncalibrated, temperature, histogram
    code, out, err = _invoke(["train", "--dataset", "synthetic", "--set", "dataset.options.n_train=200", "--epochs", "1",
                              "--device", "cpu", "--quiet", "--format", "csv", "--out", str(run_dir.parent / "t")], capsys)
    header, rows = _csv(out)
    assert code == 0 and header[:3] == ["loss", "status", "accuracy"] and rows[0][:2] == ["ce", "ok"]


# --------------------------------------------------------------------------- completion
def _complete(words, cword):
    code = (
        "import sys\n"
        "from losscli.cli import main\n"
        "try:\n    main([])\nexcept SystemExit:\n    pass\n"
        "assert 'torch' not in sys.modules, 'torch imported by completion'\n"
        "assert 'numpy' not in sys.modules, 'numpy imported by completion'\n"
    )
    env = {**os.environ, "_LOSSCLI_COMPLETE": "complete_bash", "COMP_WORDS": words, "COMP_CWORD": str(cword)}
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.split(), time.perf_counter() - t0


@pytest.mark.parametrize("words,cword,expected", [
    ("losscli train --loss foc", 3, "focal"),
    ("losscli compare --losses ce,gc", 3, "ce,gce"),
    ("losscli train --dataset mnist", 3, "mnist1d"),
    ("losscli train --dataset fol", 3, "folder:"),
    ("losscli compare --model ml", 3, "mlp"),
    ("losscli train --preset qu", 3, "quick"),
    ("losscli losses gc", 2, "gce"),
    ("losscli train --tracker ml", 3, "mlflow"),
    ("losscli check-loss foc", 2, "focal"),
    ("losscli profile --losses ce,gc", 3, "ce,gce"),
    ("losscli calibrate run --methods temperature,h_c", 4, "temperature,h_calibration"),
    ("losscli eval run --dataset mnist", 4, "mnist1d"),
    ("losscli eval run --calibrator temp", 4, "temperature"),
])
def test_completion_offers_names_without_torch(words, cword, expected):
    offered, seconds = _complete(words, cword)
    assert expected in offered, offered
    assert seconds < 20  # measured about 0.4 s (Python start-up and Typer); torch alone takes longer


def test_completion_names_match_the_registries():
    from losscli.cli import names
    from losscli.data import DATASETS
    from losscli.losses import LOSSES
    from losscli.models import MODELS

    assert set(names.loss_names()) == set(LOSSES.names())
    assert set(names.dataset_names()) == set(DATASETS.names()) - {"file", "hf", "folder"}
    assert set(names.model_names()) == set(MODELS.names()) | {"auto"}
    from losscli.calibrate import CALIBRATORS

    assert set(names.calibrator_names()) == set(CALIBRATORS.names())
    assert {"default", "quick"} <= set(names.preset_names())


def test_dataset_completion_lists_files_and_folders(tmp_path, monkeypatch):
    from losscli.cli import names

    (tmp_path / "data.csv").write_text("a,label\n")
    (tmp_path / "notes.txt").write_text("")
    (tmp_path / "photos").mkdir()
    monkeypatch.chdir(tmp_path)
    assert names.complete_dataset("./") == ["./data.csv", "./photos/"]
    assert names.complete_dataset("folder:ph") == ["folder:photos/"]
    assert names.complete_dataset("hf:d") == ["hf:data.csv"]


def test_show_completion_script():
    proc = subprocess.run([sys.executable, "-m", "losscli", "--show-completion", "bash"], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0 and "_LOSSCLI_COMPLETE=complete_bash" in proc.stdout


# --------------------------------------------------------------------------- help
def _help(*args, columns=100):
    proc = subprocess.run([sys.executable, "-m", "losscli", *args, "--help"], capture_output=True, text=True,
                          env={**os.environ, "COLUMNS": str(columns)}, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return " ".join(proc.stdout.split())  # the help as one line: wrapping does not matter


def test_help_shows_effective_defaults():
    from losscli.config import build_config

    train, compare = _help("train"), _help("compare")
    assert "Training epochs. [default: 100 (from the config)]" in train
    assert "Peak learning rate. [default: 0.01 (from the config)]" in train
    assert "(from the config))" not in train  # not click's "[default: (100 (from the config))]"
    assert "[default: mnist1d (from the config)]" in train and "[default: auto (from the config)]" in train
    preset = build_config("default")
    assert f"Training epochs. [default: {preset.train.epochs} (from the default preset)]" in compare
    assert "[default: cnn1d (from the default preset; auto with another --dataset)]" in compare
    assert "[default: " + ",".join(preset.losses) + " (from the default preset)]" in compare


def test_help_says_plugins_are_taken_where_names_are():
    # README: "Anywhere losscli takes a name, it also takes your code's import path"; --help did not say so
    train, compare = _help("train"), _help("compare")
    for needle in ("my_package.losses:MyLoss", "my_package.models:make", "my_package.data:load"):
        assert needle in train and needle in compare, needle


@pytest.mark.parametrize("columns", [40, 60, 80, 120])
def test_calibrate_method_list_wraps_between_words(columns):
    from losscli.calibrate.fitting import DEFAULT_METHODS

    proc = subprocess.run([sys.executable, "-m", "losscli", "calibrate", "--help"], capture_output=True, text=True,
                          env={**os.environ, "COLUMNS": str(columns)}, timeout=60)
    words = set(re.findall(r"[A-Za-z_]+", proc.stdout))
    assert set(DEFAULT_METHODS) <= words, (columns, proc.stdout)


def test_calibrate_help_names_every_builtin_calibrator():
    # h_calibration and correctness_aware (issue 13) were missing from --help and the README
    from losscli.calibrate import CALIBRATORS

    assert set(CALIBRATORS.names()) <= set(re.findall(r"[A-Za-z_]+", _help("calibrate")))


@pytest.mark.parametrize("quiet,tty,enabled", [(False, True, True), (True, True, False), (False, False, False)])
def test_hugging_face_bars_off_with_quiet(quiet, tty, enabled):
    """datasets reads its switch when imported: a fresh process each, stderr a terminal or not."""
    code = (
        "import io, sys\n"
        "class Err(io.StringIO):\n"
        f"    def isatty(self): return {tty}\n"
        "sys.stderr = Err()\n"
        "from losscli.cli.common import quiet_libraries\n"
        f"quiet_libraries({quiet})\n"
        "import datasets\n"
        "print(datasets.is_progress_bar_enabled())\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.endswith("_DISABLE_PROGRESS_BARS")}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == str(enabled)


def test_quiet_train_on_hugging_face_data_prints_nothing(tmp_path, capsys):
    (tmp_path / "t.csv").write_text("u,label\n" + "".join(f"{i % 7},{i % 2}\n" for i in range(60)))
    code, _, err = _invoke(["train", "--dataset", f"hf:{tmp_path / 't.csv'}", "--epochs", "1", "--device", "cpu",
                            "--quiet", "--out", str(tmp_path / "run")], capsys)
    assert code == 0 and err == "", err  # not a line from datasets ("Generating train split") either


def test_ctrl_c_says_what_is_kept(monkeypatch, tmp_path, capsys):
    """Typer turns Ctrl-C into a returned 130 outside standalone mode: train, profile, eval and calibrate
    exited 130 without a word (compare said it). Train names the checkpoint and --resume."""
    import losscli.engine.trainer as trainer
    import losscli.profiling.harness as harness

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(trainer, "train_run", interrupted)
    out = tmp_path / "run"
    code, _, err = _invoke(["train", "--dataset", "synthetic", "--model", "mlp", "--epochs", "1", "--device", "cpu",
                            "--quiet", "--out", str(out)], capsys)
    assert code == 130 and len(err.strip().splitlines()) == 1
    assert "interrupted" in err and f"--resume --out {out}" in err
    monkeypatch.setattr(harness, "profile_losses", interrupted)
    code, _, err = _invoke(["profile", "--losses", "ce", "--batch", "8", "--classes", "3", "--device", "cpu",
                            "--quiet"], capsys)
    assert code == 130 and err.strip() == "error: interrupted before the command finished; no file was left half-written"


def test_sigterm_stops_train_as_ctrl_c_does_and_it_resumes(tmp_path):
    EPOCHS = 300  # noqa: N806 - ~4 s of training here: the signal lands mid-run, and the resume is quick
    """`kill PID` (a scheduler preempting the job) ended train at once, exit -15, without a word; it
    now takes Ctrl-C's path: one line naming the checkpoint, exit 143 (128 + SIGTERM), and --resume
    finishes the run."""
    import signal

    out = tmp_path / "run"
    args = [sys.executable, "-m", "losscli", "train", "--dataset", "synthetic", "--model", "mlp", "--device", "cpu",
            "--quiet", "--out", str(out)]
    proc = subprocess.Popen([*args, "--epochs", str(EPOCHS)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not (out / "checkpoint.pt").is_file() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "interrupted" in lines[0] and f"--resume --out {out}" in lines[0]
    assert (out / "checkpoint.pt").is_file()
    resumed = subprocess.run([*args, "--epochs", str(EPOCHS), "--resume"], capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert not (out / "checkpoint.pt").exists() and (out / "report.yaml").is_file()


def test_losses_shows_a_spec_with_parameters(capsys):
    # 'focal(gamma=3)' said "unknown loss 'focal(gamma=3)'" and listed focal among the known ones
    code, out, _ = _invoke(["losses", "focal(gamma=3)"], capsys)
    assert code == 0 and "gamma = 3.0" in out
    code, _, err = _invoke(["losses", "focal(gamma=abc)"], capsys)
    assert code == 2 and "gamma" in err and "unknown loss" not in err
