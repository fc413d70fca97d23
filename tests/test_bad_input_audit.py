"""Hostile inputs found by the audit of issues 9 and 10 that still exited 1 with raw exception text
(or took seconds and gigabytes first): each is now one line, exit 2, before anything is written."""

from __future__ import annotations

import pytest
import torch

from tests.cli_helpers import invoke as _invoke
from tests.cli_helpers import SYN
from tests.cli_helpers import one_line_exit_2 as _one_line_exit_2

BOMB = "[&a [x,x,x,x,x,x,x,x,x], " + ", ".join(
    f"&{n} [{', '.join(['*' + p] * 9)}]" for p, n in zip("abcde", "bcdef")) + ", [*f,*f,*f,*f,*f,*f,*f,*f,*f]]"

TRAIN_CASES = [
    # OverflowError "int too big to convert" in the first step
    (["--loss", f"ce(ignore_index={2**70})"], "64-bit"),
    (["--loss", f"(ce + focal)(ignore_index={-2**64})"], "64-bit"),
    # RecursionError: values nested thousands deep (presets refused them; flags and specs did not)
    (["--loss", "focal(gamma=" + "[" * 4900 + "]" * 4900 + ")"], "nested too deeply"),
    (["--set", "train.lr=" + "[" * 3000 + "]" * 3000], "nested too deeply"),
    (["--set", "train.lr=" + "{a: " * 2000 + "1" + "}" * 2000], "nested too deeply"),
    (["--set", "train.lr=" + "[" * 40 + "]" * 40], "more than 32 levels"),
    # YAML aliases: refused in presets, not in values; each level multiplies the size (a short value
    # grew to 28 million characters once validated, one more level to a MemoryError)
    (["--set", f"dataset.options.nope={BOMB}"], "YAML alias"),
    (["--loss", f"ce(weight={BOMB})"], "YAML alias"),
    (["--set", "train.lr=*a"], "YAML alias"),
]


@pytest.mark.parametrize("extra,needle", TRAIN_CASES, ids=[str(i) for i in range(len(TRAIN_CASES))])
def test_train_bad_input(extra, needle, capsys, tmp_path):
    out = tmp_path / "run"
    _one_line_exit_2(["train", *SYN, "--out", str(out), *extra], capsys, needle)
    assert not out.exists()


def test_build_loss_checks_ignore_index_up_front():
    from losscli.errors import UsageError
    from losscli.losses import build_loss

    with pytest.raises(UsageError, match="64-bit"):
        build_loss("ce", ignore_index=2**70)
    with pytest.raises(UsageError, match="integer class index"):
        build_loss("ce", ignore_index=1.5)  # was truncated to 1 without a word
    import numpy as np

    assert build_loss("ce", ignore_index=np.int64(3)).ignore_index == 3  # numpy and torch integers still work
    assert build_loss("ce", ignore_index=torch.tensor(-1)).ignore_index == -1


def test_cifar_batch_with_a_damaged_length_field(tmp_path, capsys):
    """A byte string claiming 2**62 bytes: the unpickler's MemoryError exited 1 as raw text."""
    import struct

    d = tmp_path / "data" / "cifar-10-batches-py"
    d.mkdir(parents=True)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        (d / name).write_bytes(b"\x80\x04\x8e" + struct.pack("<Q", 2**62) + b"abc.")  # BINBYTES8, huge length
    err = _one_line_exit_2(["train", "--dataset", "cifar10", "--data-dir", str(tmp_path / "data"), "--epochs", "1",
                            "--device", "cpu", "--quiet", "--out", str(tmp_path / "r")], capsys, "not a readable data pickle")
    assert "data_batch_1" in err and not (tmp_path / "r").exists()


def test_compare_losses_given_as_an_alias_bomb(capsys, tmp_path):
    out = tmp_path / "cmp"
    _one_line_exit_2(["compare", *SYN, "--set", f"losses={BOMB}", "--out", str(out)], capsys, "YAML alias")
    assert not out.exists()


def test_paths_that_are_not_utf8(capsys, tmp_path):
    """A name in another encoding reaches Python as lone surrogates (b'\\xff' -> '\\udcff'): runs
    trained, then writing report.yaml failed (exit 1, UnicodeEncodeError) and nothing was finished."""
    bad = str(tmp_path / "r\udcff")
    _one_line_exit_2(["train", *SYN, "--out", bad], capsys, "not valid UTF-8")
    _one_line_exit_2(["compare", *SYN, "--losses", "ce", "--seeds", "1", "--noise", "none", "--out", bad], capsys,
                     "not valid UTF-8")
    import numpy as np

    data = tmp_path / "d\udcff.npz"
    np.savez(data, x=np.zeros((40, 3), np.float32), y=np.arange(40) % 2)
    _one_line_exit_2(["train", "--dataset", str(data), "--model", "mlp", "--epochs", "1", "--device", "cpu", "--quiet",
                      "--out", str(tmp_path / "r")], capsys, "config key 'dataset.name' is not valid UTF-8")
    assert sorted(p.name for p in tmp_path.iterdir()) == [data.name]  # nothing trained, nothing written


def test_out_directories_holding_files_that_are_not_ours(capsys, tmp_path):
    """train replaces config.yaml and deletes report.* and metrics.jsonl; compare replaces config.yaml and
    report.*: into a compare's directory or a folder of the user's own, they did so without a word."""
    mine = tmp_path / "project"
    mine.mkdir()
    (mine / "config.yaml").write_text("my: settings\n")
    (mine / "report.md").write_text("my notes\n")
    _one_line_exit_2(["train", *SYN, "--out", str(mine)], capsys, "not a losscli run")
    _one_line_exit_2(["compare", *SYN, "--losses", "ce", "--seeds", "1", "--noise", "none", "--out", str(mine)],
                     capsys, "not a losscli compare's")
    assert (mine / "config.yaml").read_text() == "my: settings\n" and (mine / "report.md").read_text() == "my notes\n"
    assert sorted(p.name for p in mine.iterdir()) == ["config.yaml", "report.md"]

    cmp_dir = tmp_path / "cmp"
    code, _, err = _invoke(["compare", *SYN, "--losses", "ce", "--seeds", "1", "--noise", "none", "--jobs", "1",
                            "--out", str(cmp_dir)], capsys)
    assert code == 0, err
    report = (cmp_dir / "report.md").read_text()
    _one_line_exit_2(["train", *SYN, "--out", str(cmp_dir)], capsys, "is a compare directory")
    _one_line_exit_2(["train", *SYN, "--out", str(cmp_dir), "--overwrite"], capsys, "is a compare directory")
    assert (cmp_dir / "report.md").read_text() == report and (cmp_dir / "report.yaml").is_file()
    (run,) = (cmp_dir / "runs").iterdir()  # a run's directory is not a compare's
    _one_line_exit_2(["compare", *SYN, "--losses", "ce", "--seeds", "1", "--noise", "none", "--out", str(run)],
                     capsys, "not a losscli compare's")
    # what stays allowed: --overwrite replaces files of your own; a rerun of the compare resumes
    code, _, err = _invoke(["train", *SYN, "--out", str(mine), "--overwrite"], capsys)
    assert code == 0, err
    code, _, err = _invoke(["compare", *SYN, "--losses", "ce", "--seeds", "1", "--noise", "none", "--jobs", "1",
                            "--out", str(cmp_dir)], capsys)
    assert code == 0, err
    assert (cmp_dir / "report.md").read_text().startswith("# losscli compare report")


def test_losses_with_an_empty_name(capsys):
    # an unset shell variable (`losscli losses "$LOSS"`) listed every loss, exit 0: check-loss and
    # `profile --losses ''` refuse the empty spec, and so does this
    _one_line_exit_2(["losses", ""], capsys, "empty loss spec")
    _one_line_exit_2(["losses", "  "], capsys, "empty loss spec")
    code, out, _ = _invoke(["losses", "--format", "json"], capsys)
    assert code == 0 and '"name": "focal"' in out  # no argument: the whole registry, as before


@pytest.mark.parametrize("losses", ["focal,FOCAL", "focal,focal(gamma=2.0)", "ce,ce", "dice,dsc", "ce+focal,ce + 1*focal"])
def test_profile_refuses_one_configuration_listed_twice(losses, capsys):
    # measured twice, under two labels (ce alone was deduplicated, as the baseline): compare refuses the same
    _one_line_exit_2(["profile", "--losses", losses, "--batch", "8", "--classes", "3", "--device", "cpu", "--repeats",
                      "1", "--quiet"], capsys, "twice")


def test_empty_out(capsys, tmp_path, monkeypatch):
    # an unset shell variable: the run went to the default directory without a word
    monkeypatch.chdir(tmp_path)
    _one_line_exit_2(["train", *SYN, "--out", ""], capsys, "--out is empty")
    _one_line_exit_2(["compare", *SYN, "--losses", "ce", "--seeds", "1", "--out", " "], capsys, "--out is empty")
    assert not any(tmp_path.iterdir())


def test_compare_refuses_a_teacher_no_compared_loss_uses(capsys, tmp_path):
    """`--teacher` (or a preset's `teacher:`) with no distilling loss in the grid was recorded and ignored; `train`
    already refused it. The directory need not exist: nothing reads it."""
    out = tmp_path / "cmp"
    for how in (["--teacher", str(tmp_path)], ["--set", f"teacher={tmp_path}"]):
        _one_line_exit_2(["compare", *SYN, "--losses", "ce,focal", *how, "--out", str(out)], capsys,
                         "none of the compared losses distils")
    assert not out.exists()


#: refused only once the data is loaded or the loss first meets it: after the old code had deleted the
#: finished run that --overwrite was to replace (focal's alpha length failed the first training step)
OVERWRITE_CASES = [
    (["--set", "dataset.options.dim=0"], "option 'dim' must be an integer >= 1"),
    (["--loss", "no_such_module:Loss"], "no module named 'no_such_module'"),
    (["--loss", "focal(alpha=[1,2])"], "focal: alpha has 2 entries but the logits have C=3 classes"),
]


@pytest.mark.parametrize("extra,needle", OVERWRITE_CASES, ids=[str(i) for i in range(len(OVERWRITE_CASES))])
def test_refused_overwrite_keeps_the_finished_run(extra, needle, capsys, tmp_path):
    out = tmp_path / "run"
    code, _, err = _invoke(["train", *SYN, "--out", str(out)], capsys)
    assert code == 0, err
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    _one_line_exit_2(["train", *SYN, "--out", str(out), "--overwrite", *extra], capsys, needle)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_compare_refuses_a_per_class_parameter_of_the_wrong_length(capsys, tmp_path):
    """Every focal run failed in its first step (exit 1 after the others had trained): refused up front."""
    out = tmp_path / "cmp"
    _one_line_exit_2(["compare", "--losses", "ce,focal(alpha=[1,2])", "--seeds", "1", *SYN, "--out", str(out)], capsys,
                     "focal(alpha=[1,2]) fails on a batch of synthetic")
    assert not out.exists()


@pytest.mark.parametrize("dim", ["1000000000", "4000000000000"])
def test_profile_linear_dim_that_cannot_fit(dim, capsys):
    """The OOM killer ended it (exit 137, no message) after minutes of allocating."""
    _one_line_exit_2(["profile", "--losses", "ce", "--batch", "8", "--classes", "4", "--device", "cpu", "--repeats",
                      "1", "--quiet", "--linear-dim", dim], capsys, "lower --batch, --classes or --linear-dim")


@pytest.mark.parametrize("command", ["train", "compare"])
def test_hugging_face_column_options_reach_the_data_in_train_and_compare(command, capsys, tmp_path):
    """README lists --image-column/--text-column for Hugging Face data; compare lacked them
    ("No such option"), so its data could only be pointed at a column through --set."""
    (tmp_path / "x.csv").write_text("a,b\n1,2\n")
    out = tmp_path / "out"
    _one_line_exit_2([command, "--dataset", f"hf:{tmp_path / 'x.csv'}", "--label-column", "a", "--text-column", "nope",
                      "--epochs", "1", "--device", "cpu", "--quiet", "--out", str(out)], capsys, "no text column 'nope'")
    assert not out.exists()
