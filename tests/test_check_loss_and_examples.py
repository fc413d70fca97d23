"""``losscli check-loss`` and the ``examples/`` folder: the example loss, model and data train through
the CLI, pass the loss contract, and deliberately broken losses fail the check meant to catch them."""

from __future__ import annotations

import csv
import io
import json

import pytest
import yaml

from losscli.losses.contract import CHECKS, check_loss
from tests.plugin_fixtures import BROKEN
from tests.test_cli_basics import _invoke

FX = "tests.plugin_fixtures"
EXAMPLE_LOSSES = ["examples.custom_loss:SoftCappedCE(cap=2)", "examples.custom_loss:smoothed_ce",
                  "examples.custom_loss:TemperedGCE(q=0.5)"]
SYNTH = ["--dataset", "synthetic", "--set", "dataset.options.classes=3", "--set", "dataset.options.dim=6",
         "--set", "dataset.options.n_train=150", "--set", "dataset.options.n_test=60", "--epochs", "2",
         "--batch-size", "32", "--device", "cpu", "--quiet"]


@pytest.fixture(autouse=True)
def _forget_plugins():
    from losscli.losses import LOSSES
    from losscli.models import MODELS
    from losscli.data.registry import DATASETS

    yield
    for registry in (LOSSES, MODELS, DATASETS):
        registry.forget_plugins()


# --------------------------------------------------------------------------- check-loss
@pytest.mark.parametrize("spec", EXAMPLE_LOSSES)
def test_example_losses_pass_the_contract(spec, capsys):
    code, out, err = _invoke(["check-loss", spec, "--format", "json"], capsys)
    assert code == 0, err
    data = json.loads(out)
    assert data["passed"] and [c["check"] for c in data["checks"]] == list(CHECKS)
    status = {c["check"]: c["status"] for c in data["checks"]}
    assert status["gradcheck"] == status["ignore_index"] == status["weight"] == "pass"
    if "TemperedGCE" in spec:  # claims a bound and soft targets: both verified, not skipped
        assert status["bounded"] == status["soft_targets"] == "pass"
    else:
        assert status["bounded"] == "skip"  # a plain module claims nothing


@pytest.mark.parametrize("name", sorted(BROKEN))
def test_broken_losses_fail_the_check_meant_to_catch_them(name):
    results = {r.check: r for r in check_loss(f"{FX}:{name}")}
    assert results[BROKEN[name]].status == "fail", results[BROKEN[name]]
    if BROKEN[name] == "builds":  # nothing else can run
        assert all(r.status == "skip" for c, r in results.items() if c != "builds")


def test_a_failing_check_exits_1_with_a_table(capsys):
    code, out, err = _invoke(["check-loss", f"{FX}:Unchecked"], capsys)
    assert code == 1
    assert "bad_inputs" in out and "fail" in out and "not a LossInputError" in out
    assert err.strip().splitlines()[-1] == f"error: {FX}:Unchecked fails the loss contract: bad_inputs"


def test_a_plugins_warnings_go_into_the_check_detail():
    # torch's two-line broadcasting warning, once per check, came before the table on stderr
    import warnings

    from losscli.losses.contract import run_check

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = run_check("torch.nn:MSELoss", "reductions")
    assert result.status == "fail" and "(warning: UserWarning: Using a target size" in result.detail
    assert not [w for w in caught if issubclass(w.category, UserWarning)]


def test_formats_and_options(capsys):
    code, out, _ = _invoke(["check-loss", "focal", "-p", "gamma=3", "--check", "mean", "--check", "weight",
                            "--format", "yaml"], capsys)
    assert code == 0
    data = yaml.safe_load(out)
    assert data["loss"] == "focal(gamma=3)" and [c["check"] for c in data["checks"]] == ["mean", "weight"]
    code, out, _ = _invoke(["check-loss", "(ce + 0.5*mae)", "--format", "csv", "--classes", "3"], capsys)
    rows = list(csv.DictReader(io.StringIO(out)))
    assert code == 0 and {r["result"] for r in rows} <= {"pass", "skip"} and rows[0]["loss"] == "ce + 0.5*mae"
    code, out, _ = _invoke(["check-loss", "mae", "--format", "md", "--quiet"], capsys)
    assert code == 0 and out.startswith("| check") and "| symmetric " in out


def test_the_help_lists_every_check():
    from losscli.cli.cmd_check_loss import CHECK_NAMES

    assert CHECK_NAMES.split(", ") == list(CHECKS)


@pytest.mark.parametrize("args, needle", [
    (["check-loss", "ce", "--check", "meen"], "Did you mean 'mean'"),
    (["check-loss", "ce", "--classes", "1"], "2 to 1000 classes"),
    (["check-loss", "ce(weight=[1,2])"], "remove weight"),
    (["check-loss", "no_such_module_xyz:Loss"], "no module named 'no_such_module_xyz'"),
    (["check-loss", f"{FX}:NeedsArgument"], "parameter 'k' has no default"),
])
def test_check_loss_bad_input_is_one_line_exit_2(args, needle, capsys):
    code, _, err = _invoke(args, capsys)
    assert code == 2 and needle in err and len(err.strip().splitlines()) == 1, err


# --------------------------------------------------------------------------- train, eval, compare
def test_example_loss_and_model_train(tmp_path, capsys):
    out = tmp_path / "run"
    code, stdout, err = _invoke(["train", "--loss", "examples.custom_loss:SoftCappedCE(cap=2)", "--model",
                                 "examples.custom_model:residual_mlp", "--set", "model.options.width=16",
                                 *SYNTH, "--out", str(out), "--format", "json"], capsys)
    assert code == 0, err
    report = json.loads(stdout)
    assert report["status"] == "ok" and report["loss"]["label"] == "examples.custom_loss:SoftCappedCE(cap=2)"
    config = yaml.safe_load((out / "config.yaml").read_text())
    assert config["loss"]["name"] == "examples.custom_loss:SoftCappedCE"
    assert config["model"] == {"name": "examples.custom_model:residual_mlp", "options": {"width": 16},
                               "resolved_name": "examples.custom_model:residual_mlp"}
    code, stdout, err = _invoke(["eval", str(out), "--format", "json"], capsys)  # rebuilt from config.yaml
    assert code == 0, err


@pytest.mark.parametrize("loss", ["ldam", "ce + 0.5*multi_similarity"])
def test_losses_that_use_the_model_head_or_features(loss, tmp_path, capsys):
    """The example model has features and head, so loss-provided heads and embeddings work; a plugin
    model with only forward(x) is refused in one line for those losses and trains the others."""
    code, _, err = _invoke(["train", "--loss", loss, "--model", "examples.custom_model:residual_mlp", *SYNTH,
                            "--out", str(tmp_path / "with_head")], capsys)
    assert code == 0, err
    code, _, err = _invoke(["train", "--loss", loss, "--model", f"{FX}:Headless", *SYNTH,
                            "--out", str(tmp_path / "headless")], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert f"model '{FX}:Headless' has no" in err and "examples/custom_model.py" in err
    code, _, err = _invoke(["train", "--loss", "examples.custom_loss:smoothed_ce", "--model", f"{FX}:Headless",
                            *SYNTH, "--out", str(tmp_path / "headless_ce")], capsys)
    assert code == 0, err


def test_compare_with_plugins_and_example_data(tmp_path, capsys):
    out = tmp_path / "cmp"
    code, _, err = _invoke(["compare", "--losses", "ce,examples.custom_loss:TemperedGCE(q=0.5)", "--dataset",
                            "examples.custom_data:spirals", "--set", "dataset.options.n_train=120", "--set",
                            "dataset.options.n_test=60", "--model", "examples.custom_model:residual_mlp",
                            "--seeds", "2", "--epochs", "1", "--noise", "none", "--jobs", "1", "--device", "cpu",
                            "--out", str(out), "--quiet"], capsys)
    assert code == 0, err
    report = yaml.safe_load((out / "report.yaml").read_text())
    text = json.dumps(report)
    assert "examples.custom_loss:TemperedGCE(q=0.5)" in text and "examples.custom_data:spirals" in text
    assert len(list((out / "runs").iterdir())) == 4  # 2 losses x 2 seeds, each its own key


def test_default_run_dir_has_no_colon():
    from losscli.app.train import default_run_dir
    from losscli.config import build_config

    cfg = build_config(None, {"loss": "examples.custom_loss:SoftCappedCE", "dataset": {"name": "a.b:load"}})
    assert ":" not in str(default_run_dir(cfg))


def test_losses_shows_no_year_0_for_a_plugin_without_a_paper(capsys):
    # the paper column read " 0" (empty authors, year 0) for plain-module plugins and composite parts
    code, out, _ = _invoke(["losses", "examples.custom_loss:SoftCappedCE", "--format", "csv"], capsys)
    assert code == 0 and next(csv.DictReader(io.StringIO(out)))["paper"] == "-"
    code, out, _ = _invoke(["losses", "ce + 0.5*examples.custom_loss:smoothed_ce"], capsys)
    assert code == 0 and "(plugin; -)" in out and " 0)" not in out
