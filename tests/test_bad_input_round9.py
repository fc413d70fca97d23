"""Hostile inputs found by the ninth bad-input audit: each was a raw exception (exit 1), a misleading line, or an
input silently taken for another one. Each is now one line, exit 2, and nothing already on disk is lost."""

from __future__ import annotations

import os
import shutil

import pytest

from tests.cli_helpers import SYN, train_tiny_run
from tests.cli_helpers import invoke as _invoke
from tests.cli_helpers import one_line_exit_2 as _one_line_exit_2


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    return train_tiny_run(tmp_path_factory.mktemp("runs") / "ok")


def test_empty_paths_are_refused_not_taken_for_the_current_directory(finished_run, capsys, tmp_path, monkeypatch):
    """An unset shell variable: `eval ""` was a TypeError (exit 1); calibrate's paths were Paths, and Path('') is '.':
    `calibrate RUN --out ""` wrote calibration.yaml, calibrators/ and the diagrams into the current directory; profile's
    `--plot ""`/`--trace ""` measured and drew or traced nothing, without a word."""
    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    here = tmp_path / "here"
    here.mkdir()
    monkeypatch.chdir(here)
    _one_line_exit_2(["eval", ""], capsys, "RUN_DIR is empty")
    _one_line_exit_2(["eval", " "], capsys, "RUN_DIR is empty")
    _one_line_exit_2(["calibrate", ""], capsys, "RUN_DIR is empty")
    _one_line_exit_2(["calibrate", str(run), "--methods", "temperature", "--out", ""], capsys, "--out is empty")
    files = ["--val-logits", "a.npy", "--val-labels", "b.npy", "--test-logits", "c.npy", "--test-labels", "d.npy"]
    _one_line_exit_2(["calibrate", *files[:3], "", *files[4:]], capsys, "--val-labels is empty")
    profile = ["profile", "--losses", "ce", "--classes", "4", "--batch", "8", "--repeats", "1", "--quiet"]
    _one_line_exit_2([*profile, "--plot", ""], capsys, "--plot is empty")
    _one_line_exit_2([*profile, "--trace", ""], capsys, "--trace is empty")
    assert not any(here.iterdir())
    assert not (run / "calibration.yaml").exists()
    # the same commands with real paths still work
    code, _, err = _invoke(["calibrate", str(run), "--methods", "temperature", "--out", str(tmp_path / "cal")], capsys)
    assert code == 0, err
    assert (tmp_path / "cal" / "calibration.yaml").is_file()


@pytest.mark.parametrize("extra", [
    ["--set", "model.options={hidden: 5, hidden: 7}"],
    ["--loss", "ce(weight={a: 1, a: 2})"],
])
def test_a_key_given_twice_in_a_value_is_refused(extra, capsys, tmp_path):
    """Presets refuse a key given twice; a --set value or a spec parameter kept the last one silently."""
    out = tmp_path / "run"
    _one_line_exit_2(["train", *SYN, *extra, "--out", str(out)], capsys, "twice")
    assert not out.exists()


def test_parse_value_refuses_a_duplicate_key_and_reads_the_rest_as_before():
    from losscli.errors import UsageError
    from losscli.lossspec import parse_value

    with pytest.raises(UsageError, match="gives key 'classes' twice"):
        parse_value("{classes: 3, classes: 4}")
    assert parse_value("{classes: 3, dim: 4}") == {"classes": 3, "dim": 4}
    assert parse_value("[1, 2.5, x]") == [1, 2.5, "x"]
    assert parse_value("1e-3") == 0.001


def test_a_preset_path_that_is_not_a_regular_file_is_not_called_missing(capsys, tmp_path):
    fifo = tmp_path / "preset.yaml"
    os.mkfifo(fifo)
    _one_line_exit_2(["train", *SYN, "--preset", str(fifo), "--out", str(tmp_path / "r")], capsys,
                     "is not a regular file")
    _one_line_exit_2(["train", *SYN, "--preset", str(tmp_path / "nope.yaml"), "--out", str(tmp_path / "r")], capsys,
                     "not found")


def test_a_deleted_working_directory_is_one_line(capsys, tmp_path, monkeypatch):
    """`cd x; rm -rf x; losscli ...`: the entry point's os.getcwd() raised FileNotFoundError before any command."""
    gone = tmp_path / "gone"
    gone.mkdir()
    monkeypatch.chdir(gone)
    gone.rmdir()
    _one_line_exit_2(["presets"], capsys, "current directory no longer exists")


@pytest.mark.parametrize("how", [["--resume"], ["--overwrite"]])
def test_a_directory_where_a_run_file_goes_is_refused_before_anything_is_deleted(how, finished_run, capsys, tmp_path):
    """checkpoint.pt a directory: --resume found no checkpoint, started again, deleted the killed run's metrics.jsonl and
    then failed unlinking the directory (IsADirectoryError, exit 1); --overwrite failed the same way half-way."""
    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    if how == ["--resume"]:
        (run / "report.yaml").unlink()  # a run killed before it finished
    (run / "checkpoint.pt").mkdir()
    before = sorted(p.name for p in run.iterdir())
    metrics = (run / "metrics.jsonl").read_bytes()
    extra = [] if how == ["--resume"] else SYN
    _one_line_exit_2(["train", *extra, *how, "--out", str(run)], capsys, "checkpoint.pt is a directory")
    assert sorted(p.name for p in run.iterdir()) == before
    assert (run / "metrics.jsonl").read_bytes() == metrics


def test_param_applies_to_the_presets_loss(capsys, tmp_path):
    """`--preset P -p gamma=3` with a focal preset applied -p to ce ("ce: unknown parameter 'gamma'"), and with
    `--set loss=focal` the -p values vanished without a word (the run trained with gamma=2)."""
    from losscli.serialize import load_yaml

    preset = tmp_path / "focal.yaml"
    preset.write_text("loss: focal\n")
    out = tmp_path / "run"
    code, _, err = _invoke(["train", *SYN, "--preset", str(preset), "-p", "gamma=3", "--out", str(out)], capsys)
    assert code == 0, err
    assert load_yaml((out / "config.yaml").read_bytes(), "config")["loss"]["params"]["gamma"] == 3.0
    _one_line_exit_2(["train", *SYN, "--preset", str(preset), "-p", "gamma=3", "--set", "loss=focal",
                      "--out", str(tmp_path / "r2")], capsys, "--set loss=... replaces it")
    _one_line_exit_2(["train", *SYN, "--loss", "focal", "-p", "gamma=3", "--set", "loss=focal",
                      "--out", str(tmp_path / "r3")], capsys, "--set loss=... replaces it")
    assert not (tmp_path / "r2").exists() and not (tmp_path / "r3").exists()
    # no preset: -p still applies to ce (or --loss), as before
    _one_line_exit_2(["train", *SYN, "-p", "gamma=3", "--out", str(tmp_path / "r4")], capsys,
                     "ce: unknown parameter 'gamma'")


def test_a_report_swapped_between_compare_runs_is_not_taken_for_the_other_run(capsys, tmp_path):
    """A compare resumed with one run's report.yaml copied over another's counted the copy as the other run's
    result (its loss, seed and setting got the first run's metrics; exit 0). The report names its run's key
    (runs/<key>): a foreign one is pending, and the run is trained again."""
    from losscli.serialize import load_yaml

    out = tmp_path / "cmp"
    args = ["compare", *SYN, "--losses", "ce,focal", "--seeds", "1", "--noise", "none", "--jobs", "1", "--out", str(out)]
    code, _, err = _invoke(args, capsys)
    assert code == 0, err
    a, b = sorted((out / "runs").iterdir())
    original = (b / "report.yaml").read_bytes()
    shutil.copy(a / "report.yaml", b / "report.yaml")
    code, _, err = _invoke(args, capsys)
    assert code == 0, err
    report = load_yaml((b / "report.yaml").read_bytes(), "report")
    assert report["run_key"] == b.name
    assert report["metrics"]["test"] == load_yaml(original, "report")["metrics"]["test"]  # deterministic on CPU


def test_a_path_with_a_name_too_long_for_the_file_system_is_one_line(capsys, tmp_path):
    """Path.exists()/is_dir()/is_file() raise ENAMETOOLONG instead of answering False: eval, --preset and --teacher
    exited 1 with "OSError: [Errno 36] File name too long"; profile --plot measured first, then failed saving."""
    long = str(tmp_path / ("x" * 300))
    _one_line_exit_2(["eval", long], capsys, "too long for the file system")
    _one_line_exit_2(["train", *SYN, "--preset", long + ".yaml", "--out", str(tmp_path / "r")], capsys, "too long")
    _one_line_exit_2(["train", *SYN, "--loss", "kd", "--teacher", long, "--out", str(tmp_path / "r")], capsys, "too long")
    _one_line_exit_2(["profile", "--losses", "ce", "--classes", "4", "--batch", "8", "--repeats", "1", "--quiet",
                      "--plot", long + ".png"], capsys, "--plot")
    assert not (tmp_path / "r").exists()


def test_a_directory_where_compare_keeps_its_lock_file(capsys, tmp_path):
    """OUT/.lock a directory: IsADirectoryError text, exit 1."""
    out = tmp_path / "cmp"
    (out / ".lock").mkdir(parents=True)
    _one_line_exit_2(["compare", *SYN, "--losses", "ce", "--seeds", "1", "--noise", "none", "--jobs", "1",
                      "--out", str(out)], capsys, ".lock is a directory")
    assert not list(out.glob("runs/*/report.yaml"))


@pytest.mark.parametrize("where", ["calibration.yaml", "calibration.md", "reliability_temperature.png",
                                   "calibrators/temperature.pt", "calibrators"])
def test_calibrate_refuses_a_directory_or_file_in_the_way_before_fitting(where, finished_run, capsys, tmp_path):
    """A directory where calibrate writes a file (or a file named calibrators): IsADirectoryError/FileExistsError
    text, exit 1, after fitting and with the files before it in the write order already replaced."""
    out = tmp_path / "cal"
    if where == "calibrators":
        out.mkdir()
        (out / "calibrators").write_text("mine")
    else:
        (out / where).mkdir(parents=True)
    _one_line_exit_2(["calibrate", str(finished_run), "--methods", "temperature", "--out", str(out)], capsys,
                     str(out / where))
    assert not (out / "calibration.yaml").is_file()
    assert not (out / "reliability_uncalibrated.png").exists()


@pytest.mark.parametrize("where", ["report.md", "runs"])
def test_compare_refuses_its_report_or_runs_in_the_way_up_front(where, capsys, tmp_path):
    """OUT/report.md a directory: every run trained, then the report failed (exit 1, naming a temp file);
    OUT/runs a file: "cannot write to --out OUT: File exists"."""
    out = tmp_path / "cmp"
    out.mkdir()
    if where == "runs":
        (out / "runs").write_text("mine")
    else:
        (out / where).mkdir()
    _one_line_exit_2(["compare", *SYN, "--losses", "ce", "--seeds", "1", "--noise", "none", "--jobs", "1",
                      "--out", str(out)], capsys, str(out / where))
    assert sorted(p.name for p in out.iterdir()) == [where]


@pytest.mark.parametrize("args,needle", [
    (["train", *SYN, "--preset", ""], "--preset is empty"),
    (["train", *SYN, "--data-dir", ""], "--data-dir is empty"),
    (["compare", *SYN, "--losses", "ce", "--seeds", "1", "--preset", ""], "--preset is empty"),
    (["compare", *SYN, "--losses", "ce", "--seeds", "1", "--data-dir", " "], "--data-dir is empty"),
])
def test_an_empty_preset_or_data_dir_is_refused(args, needle, capsys, tmp_path):
    """'' (an unset shell variable) meant the default preset (compare: the default grid, minutes of runs) or the
    default data directory, without a word."""
    out = tmp_path / "out"
    _one_line_exit_2([*args, "--out", str(out)], capsys, needle)
    assert not out.exists()


@pytest.mark.parametrize("option", ["--calibrator", "--dataset", "--data-dir"])
def test_eval_refuses_an_empty_option_instead_of_ignoring_it(option, finished_run, capsys):
    """`eval RUN --calibrator ""` printed the uncalibrated metrics, `--dataset ""` the run's own test set: as if the
    option had not been given."""
    _one_line_exit_2(["eval", str(finished_run), option, ""], capsys, f"{option} is empty")
