"""Plugin losses whose constructor has arguments without a default: required hyperparameters.

``my_loss(margin=0.5)`` with ``__init__(self, margin)`` builds; without ``margin`` every command says
in one line which argument is missing and how to give it (exit 2). The canonical label always shows
a required argument, so specs, run hashes and config.yaml round-trip.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
import yaml

from losscli.errors import UsageError
from losscli.losses import LOSSES, build_loss, resolve_loss
from tests.cli_helpers import SYN, invoke, one_line_exit_2

FX = "tests.plugin_fixtures"
MARGIN = f"{FX}:RequiredMargin"
MISSING = f"parameter 'margin' has no default (the plugin's constructor requires a value); give it in the spec, " \
          f"as in '{MARGIN}(margin=VALUE)'"


@pytest.fixture(autouse=True)
def _forget_plugins():
    yield
    LOSSES.forget_plugins()


def test_a_required_argument_given_in_the_spec_builds():
    spec = resolve_loss(f"{MARGIN}(margin=0.5)")
    assert spec.params == {"margin": 0.5} and spec.label == f"{MARGIN}(margin=0.5)"
    z, y = torch.randn(6, 3, generator=torch.Generator().manual_seed(0)), torch.arange(6) % 3
    shifted = z - 0.5 * F.one_hot(y, 3).float()
    torch.testing.assert_close(build_loss(spec)(z, y), F.cross_entropy(shifted, y))
    torch.testing.assert_close(build_loss(MARGIN, margin=0.5)(z, y), F.cross_entropy(shifted, y))
    param = spec.info().params[0]
    assert param.required and param.kind == "float" and not param.nullable
    assert spec.info().to_dict()["param_ranges"] == {"margin": "required, a float"}


def test_the_label_always_shows_a_required_argument_and_round_trips():
    """Even a value equal to the placeholder default (None) or 0 stays in the label: the label and
    config.yaml's resolved spec read back to the same spec, which compare hashes."""
    for text in (f"{MARGIN}(margin=0)", f"{MARGIN}(margin=5e-1)", f"{MARGIN}(margin=2)"):
        spec = resolve_loss(text)
        assert "margin=" in spec.label
        assert resolve_loss(spec.label) == spec and resolve_loss(spec.resolved()) == spec
    assert resolve_loss(f"{MARGIN}(margin=0.5)") == resolve_loss(f"{MARGIN}(margin=5e-1)")
    assert resolve_loss(f"ce + 0.5*{MARGIN}(margin=1)").label == f"ce + 0.5*{MARGIN}(margin=1)"


def test_a_required_argument_that_may_be_none_round_trips():
    spec = resolve_loss(f"{FX}:RequiredNullable(x=null)")
    assert spec.params == {"x": None} and spec.label == f"{FX}:RequiredNullable(x=null)"
    assert resolve_loss(spec.label) == spec and resolve_loss(spec.resolved()) == spec  # "x=None" read back as text
    with pytest.raises(UsageError, match="parameter 'x' has no default"):
        resolve_loss(f"{FX}:RequiredNullable")


def test_annotations_type_required_arguments():
    info = LOSSES.get(f"{FX}:RequiredTyped").info
    assert {p.name: (p.kind, p.required) for p in info.params} == {
        "k": ("int", True), "tag": ("str", True), "scale": ("float", False)}
    with pytest.raises(UsageError, match="parameter 'k' must be a int"):
        resolve_loss(f"{FX}:RequiredTyped(k=1.5,tag=a)")
    with pytest.raises(UsageError, match="parameters 'k', 'tag' have no default"):
        resolve_loss(f"{FX}:RequiredTyped(scale=2)")
    assert resolve_loss(f"{FX}:RequiredTyped(k=2,tag=a)").label == f"{FX}:RequiredTyped(k=2,tag=a)"


@pytest.mark.parametrize("spec", [f"{FX}:factory_with_required(margin=1)", "os:system(command=true)"])
def test_a_factory_function_with_a_required_argument_is_refused(spec):
    """A factory can be any function: a spec's values (a shared preset, a config.yaml) must not reach one,
    or `os:system(command=...)` would run a shell. Only an nn.Module subclass may require arguments."""
    with pytest.raises(UsageError) as err:
        resolve_loss(spec)
    assert "has no default; a factory function takes only arguments with defaults" in str(err.value)


@pytest.mark.parametrize("spec, needle", [
    (MARGIN, MISSING),
    (f"{MARGIN}()", MISSING),
    (f"{MARGIN}(margin=null)", "parameter 'margin' cannot be None"),
    (f"{MARGIN}(margin=abc)", "parameter 'margin' must be a float"),
    (f"ce + {MARGIN}", MISSING),
])
def test_a_missing_required_argument_is_one_line(spec, needle):
    with pytest.raises(UsageError) as err:
        build_loss(spec)
    assert needle in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("args", [
    ["check-loss", MARGIN],
    ["train", "--loss", MARGIN, *SYN],
    ["compare", "--losses", f"ce,{MARGIN}", "--seeds", "1", *SYN],
    ["compare", "--losses", "ce", "--baseline", MARGIN, "--seeds", "1", *SYN],
    ["profile", "--losses", MARGIN, "--repeats", "1", "--batch", "8", "--classes", "4", "--device", "cpu"],
])
def test_every_command_names_the_missing_argument(args, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    one_line_exit_2(args, capsys, needle=MISSING)


def test_commands_accept_a_given_required_argument(capsys, tmp_path):
    code, out, err = invoke(["check-loss", MARGIN, "-p", "margin=0.25", "-c", "mean", "-c", "weight"], capsys)
    assert code == 0, err
    code, out, err = invoke(["losses", MARGIN, "--format", "json"], capsys)  # described, not refused
    assert code == 0 and '"margin": "required, a float"' in out, err
    run = tmp_path / "run"
    code, out, err = invoke(["train", "--loss", f"{MARGIN}(margin=0.5)", *SYN, "--out", str(run)], capsys)
    assert code == 0, err
    config = yaml.safe_load((run / "config.yaml").read_text())
    assert config["loss"]["name"] == MARGIN and config["loss"]["params"] == {"margin": 0.5}
    code, out, err = invoke(["eval", str(run), "--format", "json"], capsys)  # rebuilt from config.yaml
    assert code == 0, err
