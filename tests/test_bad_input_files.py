"""Bad data files and corrupted run directories: one line saying what was wrong (and what to do), exit 2,
and no code run from a data file (split from test_bad_input.py)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.cli_helpers import SYN, train_tiny_run
from tests.cli_helpers import invoke as _invoke
from tests.cli_helpers import one_line_exit_2 as _one_line_exit_2


def test_numbers_in_scientific_notation_are_numbers(tmp_path):
    from losscli.config import build_config, validate

    preset = tmp_path / "p.yaml"
    preset.write_text("train:\n  lr: 1e-3\n  weight_decay: 5e-4\n")
    cfg = validate(build_config(str(preset), sets=["train.momentum=9e-1"]))
    assert (cfg.train.lr, cfg.train.weight_decay, cfg.train.momentum) == (1e-3, 5e-4, 0.9)


def test_data_files_with_mismatched_lengths(capsys, tmp_path):
    bad = tmp_path / "bad.npz"
    np.savez(bad, x=np.zeros((10, 3), np.float32), y=np.zeros(9, np.int64))
    _one_line_exit_2(["train", "--dataset", str(bad), "--model", "mlp", "--epochs", "1", "--device", "cpu", "--quiet",
                      "--out", str(tmp_path / "r")], capsys, "labels")
    tiny = tmp_path / "tiny.npz"
    np.savez(tiny, x=np.zeros((3, 3), np.float32), y=np.array([0, 1, 0]))
    err = _one_line_exit_2(["train", "--dataset", str(tiny), "--model", "mlp", "--epochs", "1", "--device", "cpu",
                            "--quiet", "--out", str(tmp_path / "r2")], capsys)
    assert "logits" not in err  # says what is wrong with the data, not a shape error deep in a loss


BAD_DATA_FILES = {  # each exited 1 with raw exception text, printed a multi-line warning, or trained on garbage
    "text x": (dict(x=np.array(["a"] * 20), y=np.arange(20) % 2), "real numbers"),
    "text y": (dict(x=np.zeros((20, 3), np.float32), y=np.array(["a", "b"] * 10)), "real numbers"),
    "complex x": (dict(x=np.ones((20, 3), np.complex64), y=np.arange(20) % 2), "real numbers"),
    "0-d x": (dict(x=np.float32(1), y=np.int64(1)), "single value"),
    "2-D y": (dict(x=np.zeros((20, 3), np.float32), y=(np.arange(20) % 2).reshape(10, 2)), "one label per row"),
    "NaN in x": (dict(x=np.full((20, 3), np.nan, np.float32), y=np.arange(20) % 2), "NaN"),
    "inf in x": (dict(x=np.full((20, 3), np.inf, np.float32), y=np.arange(20) % 2), "NaN or inf"),
    "label 10**9": (dict(x=np.zeros((20, 3), np.float32), y=np.where(np.arange(20) % 2, 10**9, 0)), "renumber"),
}


@pytest.mark.parametrize("name", list(BAD_DATA_FILES))
def test_bad_data_files(name, capsys, tmp_path):
    arrays, needle = BAD_DATA_FILES[name]
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    _one_line_exit_2(["train", "--dataset", str(path), "--model", "mlp", "--epochs", "1", "--device", "cpu", "--quiet",
                      "--out", str(tmp_path / "r")], capsys, needle)
    assert not (tmp_path / "r").exists()


def test_garbage_pt_and_2d_noise_file(capsys, tmp_path):
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"\x80\x04garbage")  # torch printed a two-line UserWarning before losscli's line
    _one_line_exit_2(["train", "--dataset", str(garbage), "--model", "mlp", "--epochs", "1", "--device", "cpu",
                      "--quiet", "--out", str(tmp_path / "r")], capsys)
    good = tmp_path / "good.npz"
    np.savez(good, x=np.random.default_rng(0).normal(size=(40, 3)).astype(np.float32), y=np.arange(40) % 2)
    noise = tmp_path / "noise.npy"
    np.save(noise, np.stack([np.arange(40) % 2] * 2, axis=1))  # [N, 2]: read as 2N misaligned labels before
    _one_line_exit_2(["train", "--dataset", str(good), "--model", "mlp", "--epochs", "1", "--device", "cpu", "--quiet",
                      "--noise", f"file:{noise}", "--out", str(tmp_path / "r2")], capsys, "one label per training row")


# ---------------------------------------------------------------------------- corrupted run directories


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    return train_tiny_run(tmp_path_factory.mktemp("runs") / "ok")


def _copy(src: Path, dst: Path) -> Path:
    import shutil

    shutil.copytree(src, dst)
    return dst


CORRUPTIONS = {
    "empty model.pt": lambda d: (d / "model.pt").write_bytes(b""),
    "truncated model.pt": lambda d: (d / "model.pt").write_bytes((d / "model.pt").read_bytes()[:50]),
    "malformed config.yaml": lambda d: (d / "config.yaml").write_text("loss: [unclosed\n"),
    "config missing keys": lambda d: (d / "config.yaml").write_text("seed: 0\n"),
    "binary report.yaml": lambda d: (d / "report.yaml").write_bytes(b"\x00\x01\x02\xff"),
    "report.yaml is a directory": lambda d: ((d / "report.yaml").unlink(), (d / "report.yaml").mkdir()),
    "model.pt of another shape": lambda d: _reshape_first_weight(d / "model.pt"),
}


def _reshape_first_weight(path: Path) -> None:
    state = torch.load(path, weights_only=True)
    key = next(k for k in state if k.startswith("model.") and k.endswith("weight"))
    state[key] = torch.zeros(state[key].shape[0] + 1, *state[key].shape[1:])
    torch.save(state, path)


@pytest.mark.parametrize("name", list(CORRUPTIONS))
def test_corrupted_run_dir_given_to_eval_and_teacher(name, finished_run, tmp_path, capsys):
    run = _copy(finished_run, tmp_path / "run")
    CORRUPTIONS[name](run)
    err = _one_line_exit_2(["eval", str(run)], capsys)
    assert str(run) in err or "run" in err
    if name == "model.pt of another shape":  # the mismatch itself, not torch's "Error(s) in loading ... for MLP:"
        assert "size mismatch for" in err and "retrain the run" in err
    err = _one_line_exit_2(["train", *SYN, "--loss", "kd", "--teacher", str(run), "--out", str(tmp_path / "s")], capsys)
    assert not (tmp_path / "s").exists()


def test_malicious_pickle_never_runs(tmp_path, capsys):
    """A crafted CIFAR batch whose unpickling would run a command: refused, the command never runs."""
    import pickle

    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    d = tmp_path / "data" / "cifar-10-batches-py"
    d.mkdir(parents=True)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        (d / name).write_bytes(pickle.dumps({"data": Payload(), "labels": [0]}))
    err = _one_line_exit_2(["train", "--dataset", "cifar10", "--data-dir", str(tmp_path / "data"), "--epochs", "1",
                            "--device", "cpu", "--quiet", "--out", str(tmp_path / "r")], capsys, "never code")
    assert "posix.system" in err or "os.system" in err or "system" in err
    assert not marker.exists()


class _NotData:
    pass


def test_pt_file_with_code_gets_losscli_message(tmp_path, capsys):
    bad = tmp_path / "data.pt"
    torch.save({"x": torch.zeros(4, 3), "y": torch.zeros(4, dtype=torch.long), "extra": _NotData()}, bad)
    err = _one_line_exit_2(["train", "--dataset", str(bad), "--model", "mlp", "--epochs", "1", "--device", "cpu",
                            "--quiet", "--out", str(tmp_path / "r")], capsys, "never loads code")
    assert "weights_only=False" not in err


def test_compare_dir_where_one_run_is_wanted(capsys, tmp_path):
    """eval/calibrate/--teacher given a compare's directory said "KeyError: 'dataset'" (its config.yaml read as
    a run's) and advised deleting the directory: they name it a compare directory and point at one of its runs."""
    out = tmp_path / "cmp"
    code, _, err = _invoke(["compare", *SYN, "--losses", "ce", "--seeds", "1", "--noise", "none", "--imbalance", "none",
                            "--jobs", "1", "--out", str(out)], capsys)
    assert code == 0, err
    (run,) = sorted((out / "runs").iterdir())
    for args in (["eval", str(out)], ["calibrate", str(out)],
                 ["train", *SYN, "--loss", "kd", "--teacher", str(out), "--out", str(tmp_path / "s")],
                 ["train", "--resume", "--out", str(out)]):
        err = _one_line_exit_2(args, capsys, "is a compare directory")
        assert "KeyError" not in err and "delete" not in err
        assert f"e.g. {run}" in err  # a run that exists, to pass instead
    assert _invoke(["eval", str(run), "--format", "json"], capsys)[0] == 0  # the run named is one eval takes
    assert not (tmp_path / "s").exists()


def test_a_damaged_torch_file_is_named_with_the_first_sentence_of_the_reason(tmp_path):
    """torch's zip error runs on ("This is an internal miniz error. If you are seeing this error, ...") and
    was cut mid-word at 160 characters."""
    from losscli.errors import UsageError
    from losscli.safeload import load_torch

    path = tmp_path / "logits.pt"
    torch.save({"x": torch.zeros(3)}, path)
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(UsageError) as info:
        load_torch(path, "the saved logits")
    message = str(info.value)
    assert message.endswith("failed finding central directory.)"), message
    assert "miniz" not in message
