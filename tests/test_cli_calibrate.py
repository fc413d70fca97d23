"""``losscli calibrate`` on a saved run dir and on external logits files."""

import json

import numpy as np
import pytest
import torch
import yaml
from typer.testing import CliRunner

import losscli.cli
from losscli.app.calibrate import load_calibrator
from losscli.errors import UsageError
from losscli.metrics import compute_metrics

losscli.cli._register_commands()
runner = CliRunner()


def _logits(n, c, seed, t_true=2.0):
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, c, generator=g) * 3
    y = torch.multinomial(torch.softmax(z.double() / t_true, 1), 1, generator=g).squeeze(1)
    return z.float(), y.long()


@pytest.fixture()
def run_dir(tmp_path):
    zv, yv = _logits(500, 3, 0)
    zt, yt = _logits(500, 3, 1)
    d = tmp_path / "run"
    d.mkdir()
    torch.save({"val_logits": zv, "val_labels": yv, "test_logits": zt, "test_labels": yt}, d / "logits.pt")
    return d


def invoke(args):
    return runner.invoke(losscli.cli.app, args)


def run_main(args, capsys):
    """The console entry point: exit code and stderr as a user sees them."""
    with pytest.raises(SystemExit) as exc:
        losscli.cli.main(args)
    code = exc.value.code if exc.value.code is not None else 0
    return code, capsys.readouterr()


def test_run_dir_json_and_files(run_dir):
    res = invoke(["calibrate", str(run_dir), "--methods", "temperature,histogram", "--format", "json"])
    assert res.exit_code == 0, res.output
    report = json.loads(res.stdout)
    assert report["schema"] == "losscli/calibration/v1"
    assert list(report["methods"]) == ["temperature", "histogram"]
    assert report["methods"]["temperature"]["test"]["accuracy"] == report["uncalibrated"]["test"]["accuracy"]
    assert report["methods"]["temperature"]["test"]["ece"] < report["uncalibrated"]["test"]["ece"]
    for name in ("calibration.yaml", "calibration.md", "reliability_uncalibrated.png", "reliability_temperature.png",
                 "reliability_histogram.png", "calibrators/temperature.pt", "calibrators/histogram.pt"):
        assert (run_dir / name).is_file(), name
    assert (run_dir / "reliability_temperature.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    on_disk = yaml.safe_load((run_dir / "calibration.yaml").read_text())
    assert on_disk["schema"] == "losscli/calibration/v1"
    assert on_disk["methods"]["temperature"]["params"]["temperature"] == pytest.approx(
        report["methods"]["temperature"]["params"]["temperature"])
    md = (run_dir / "calibration.md").read_text()
    assert "(reliability_temperature.png)" in md and "last bin is closed at 1.0" in md
    assert not list(run_dir.glob("**/*.tmp"))  # atomic writes leave no temp files
    # the saved calibrator loads with weights_only and reproduces the reported test metrics
    saved = torch.load(run_dir / "calibrators" / "temperature.pt", weights_only=True)
    assert saved["method"] == "temperature"
    cal = load_calibrator(run_dir, "temperature")
    data = torch.load(run_dir / "logits.pt", weights_only=True)
    m = compute_metrics(cal.transform(data["test_logits"]), data["test_labels"])
    assert m["nll"] == pytest.approx(report["methods"]["temperature"]["test"]["nll"], rel=1e-9)
    with pytest.raises(UsageError, match="no fitted 'isotonic' calibrator"):
        load_calibrator(run_dir, "isotonic")


def test_run_dir_all_methods_table(run_dir):
    res = invoke(["calibrate", str(run_dir)])
    assert res.exit_code == 0, res.output
    lines = res.stdout.splitlines()
    header = lines[0].split()
    for col in ("method", "accuracy", "nll", "brier", "ece", "adaptive_ece", "classwise_ece", "mce", "params"):
        assert col in header
    for name in ("uncalibrated", "temperature", "vector", "matrix", "dirichlet", "histogram", "isotonic"):
        assert any(line.startswith(name) for line in lines), name
    assert "temperature=" in res.stdout
    assert len(list((run_dir / "calibrators").glob("*.pt"))) == 6


def test_md_and_yaml_formats(run_dir):
    res = invoke(["calibrate", str(run_dir), "-m", "ts", "--bins", "10", "--format", "md"])
    assert res.exit_code == 0, res.output
    assert res.stdout.startswith("# Calibration report") and "| method" in res.stdout
    res = invoke(["calibrate", str(run_dir), "-m", "temperature", "--format", "yaml"])
    assert res.exit_code == 0
    assert yaml.safe_load(res.stdout)["n_bins"] == 15


@pytest.mark.parametrize("kind", ["npy", "npz", "pt"])
def test_external_files(tmp_path, kind):
    zv, yv = _logits(400, 4, 2)
    zt, yt = _logits(400, 4, 3)
    arrays = {"val_logits": zv, "val_labels": yv, "test_logits": zt, "test_labels": yt}
    paths = {}
    for k, v in arrays.items():
        p = tmp_path / f"{k}.{kind}"
        if kind == "npy":
            np.save(p, v.numpy())
        elif kind == "npz":
            np.savez(p, **{k: v.numpy()})
        else:
            torch.save(v, p)
        paths[k] = str(p)
    args = ["calibrate", "--val-logits", paths["val_logits"], "--val-labels", paths["val_labels"],
            "--test-logits", paths["test_logits"], "--test-labels", paths["test_labels"],
            "--methods", "temperature,vector", "--format", "json"]
    res = invoke(args)
    assert res.exit_code == 0, res.output
    report = json.loads(res.stdout)
    assert report["data"] == {"n_val": 400, "n_test": 400, "n_classes": 4}
    assert "files" not in report and not list(tmp_path.glob("*.png"))  # nothing written without --out
    if kind == "npy":
        out = tmp_path / "out"
        res = invoke(args + ["--out", str(out)])
        assert res.exit_code == 0, res.output
        assert (out / "calibration.yaml").is_file() and (out / "calibrators" / "vector.pt").is_file()
        assert load_calibrator(out, "vector").n_classes == 4


def test_usage_errors_exit_2_with_one_line(run_dir, tmp_path, capsys):
    def check(args, needle):
        code, cap = run_main(args, capsys)
        assert code == 2, (args, cap.err)
        assert needle in cap.err
        assert len(cap.err.strip().splitlines()) == 1 and "Traceback" not in cap.err

    check(["calibrate", str(tmp_path / "nope")], "does not exist")
    empty = tmp_path / "empty"
    empty.mkdir()
    check(["calibrate", str(empty)], "logits.pt not found")
    check(["calibrate", str(run_dir), "--methods", "temprature"], "Did you mean 'temperature'")
    bad = tmp_path / "x.txt"
    bad.write_text("1 2 3")
    check(["calibrate", "--val-logits", str(bad), "--val-labels", str(bad), "--test-logits", str(bad),
           "--test-labels", str(bad)], "unsupported file type")
    corrupt = tmp_path / "corrupt.npy"
    corrupt.write_bytes(b"not numpy")
    check(["calibrate", "--val-logits", str(corrupt), "--val-labels", str(corrupt), "--test-logits", str(corrupt),
           "--test-labels", str(corrupt)], "cannot read")
    check(["calibrate", "--val-logits", str(bad)], "missing --val-labels")
    check(["calibrate", str(run_dir), "--val-logits", str(bad)], "not both")
    check(["calibrate"], "give a RUN_DIR")
    # probabilities instead of logits
    zv, yv = _logits(50, 3, 5)
    probs_dir = tmp_path / "probs"
    probs_dir.mkdir()
    torch.save({"val_logits": torch.softmax(zv, 1), "val_labels": yv, "test_logits": zv, "test_labels": yv},
               probs_dir / "logits.pt")
    check(["calibrate", str(probs_dir), "-m", "temperature"], "look like probabilities, pass logits")
    # labels out of range / shape mismatch
    torch.save({"val_logits": zv, "val_labels": yv + 5, "test_logits": zv, "test_labels": yv}, probs_dir / "logits.pt")
    check(["calibrate", str(probs_dir), "-m", "temperature"], "out of range")
    torch.save({"val_logits": zv, "val_labels": yv[:10], "test_logits": zv, "test_labels": yv}, probs_dir / "logits.pt")
    check(["calibrate", str(probs_dir), "-m", "temperature"], "shape mismatch")
    torch.save({"val_logits": zv}, probs_dir / "logits.pt")
    check(["calibrate", str(probs_dir)], "lacks val_labels")


def test_cli_errors_through_clirunner(tmp_path):
    res = invoke(["calibrate", str(tmp_path / "missing")])
    assert res.exit_code != 0 and isinstance(res.exception, UsageError)
    res = invoke(["calibrate", str(tmp_path), "--bins", "0"])
    assert res.exit_code == 2  # typer range check


def test_calibrate_module_does_not_import_torch():
    import subprocess
    import sys

    code = ("import sys, losscli.cli.cmd_calibrate; "
            "sys.exit(1 if 'torch' in sys.modules else 0)")
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
