"""CLI contract: fast --help without torch, exit codes, machine-readable output."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import yaml
from typer.testing import CliRunner

import losscli.cli as cli
from tests.cli_helpers import invoke as _invoke

cli._register_commands()
runner = CliRunner()
COMMANDS = ["losses", "check-loss", "train", "eval", "compare", "profile", "calibrate", "presets"]



def _run(*args, env=None):
    return subprocess.run([sys.executable, "-m", "losscli", *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=120)


@pytest.mark.parametrize("args", [["--help"], *[[c, "--help"] for c in COMMANDS]])
def test_help_does_not_import_torch(args):
    code = (
        "import sys\n"
        "from losscli.cli import main\n"
        f"sys.argv = ['losscli', *{args!r}]\n"
        "try:\n    main()\nexcept SystemExit as e:\n    assert e.code in (0, None), e.code\n"
        "assert 'torch' not in sys.modules, 'torch imported by --help'\n"
        "assert 'numpy' not in sys.modules, 'numpy imported by --help'\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "Usage" in proc.stdout


def test_every_command_is_registered():
    result = runner.invoke(cli.app, ["--help"])
    for command in COMMANDS:
        assert command in result.stdout


def test_version():
    proc = _run("--version")
    assert proc.returncode == 0 and proc.stdout.startswith("losscli ")


def test_unknown_loss_exit_2_with_suggestion():
    proc = _run("losses", "focl")
    assert proc.returncode == 2
    assert "did you mean 'focal'" in proc.stderr.lower()
    assert "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_debug_env_shows_traceback():
    proc = _run("losses", "focl", env={"LOSSCLI_DEBUG": "1"})
    assert proc.returncode != 0 and "Traceback" in proc.stderr


def test_unknown_command_exit_2():
    proc = _run("trian")
    assert proc.returncode == 2


def test_losses_json_lists_every_loss():
    from losscli.losses import LOSSES

    result = runner.invoke(cli.app, ["losses", "--format", "json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert {d["name"] for d in data} == set(LOSSES.names())
    for d in data:
        assert {"name", "family", "params", "reference"} <= set(d)


def test_losses_family_filter_and_yaml():
    result = runner.invoke(cli.app, ["losses", "--family", "noise-robust", "--format", "yaml"])
    assert result.exit_code == 0
    data = yaml.safe_load(result.stdout)
    assert data and all(d["family"] == "noise-robust" for d in data)
    bad = runner.invoke(cli.app, ["losses", "--family", "noise"])
    assert bad.exit_code != 0


def test_losses_show_one():
    result = runner.invoke(cli.app, ["losses", "focal"])
    assert result.exit_code == 0
    assert "gamma" in result.stdout and "Lin" in result.stdout


@pytest.mark.parametrize("name", ["h_calibration", "correctness_aware", "ca"])
def test_losses_describes_a_calibrator_by_name(name):
    # `losscli losses h_calibration` said "unknown loss": the calibrators had no place to be looked up
    result = runner.invoke(cli.app, ["losses", name, "--format", "json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["kind"].startswith("post-hoc calibrator") and data["accuracy_preserving"] is True
    assert data["usage"] == f"losscli calibrate RUN_DIR --methods {data['name']}" and "20" in data["method"]
    text = runner.invoke(cli.app, ["losses", name]).stdout
    assert text.startswith(f"{data['name']} (post-hoc calibrator") and "usage: losscli calibrate" in text


def test_presets_listed_and_each_valid():
    from losscli.config import build_config, list_presets

    result = runner.invoke(cli.app, ["presets", "--format", "json"])
    assert result.exit_code == 0
    names = {p["name"] for p in json.loads(result.stdout)}
    assert {"default", "quick"} <= names
    from losscli.app.compare.grid import expand_grid

    for p in list_presets():
        cfg = build_config(p["name"])
        assert expand_grid(cfg), p["name"]  # every loss, noise and imbalance spec resolves


@pytest.mark.parametrize("args,needle", [
    (["train", "--set", "train.epoch=3"], "train.epochs"),
    (["train", "--set", "train.epochs=abc"], "integer"),
    (["train", "--preset", "nope"], "unknown preset"),
    (["train", "--loss", "focal", "-p", "gama=2"], "unknown parameter"),
    (["train", "--noise", "sym:1.5"], "noise"),
    (["compare", "--losses", "ce,focl"], "did you mean"),
    (["eval", "/nonexistent/run"], "does not exist"),
])
def test_bad_input_is_one_line_exit_2(args, needle, capsys):
    code, _, err = _invoke([*args, "--quiet"] if args[0] in ("train", "compare") else args, capsys)
    assert code == 2, (code, err)
    assert needle.lower() in err.lower(), err
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, err


def test_malformed_preset_yaml(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: [epochs: 3\n")
    code, _, err = _invoke(["train", "--preset", str(bad), "--quiet"], capsys)
    assert code == 2 and "not valid YAML" in err
