"""Installed plugins: entry points of a fake distribution (a ``*.dist-info`` directory on sys.path).

Groups ``losscli.losses``, ``losscli.models``, ``losscli.datasets``, ``losscli.calibrators``. An entry
point is imported only when its name is asked for (or when ``losscli losses`` lists them all); a
broken one is one line naming it and never breaks built-in names.
"""

from __future__ import annotations

import json
import sys

import pytest
import torch

from losscli.errors import UsageError
from losscli.losses import LOSSES, build_loss, resolve_loss
from tests.test_cli_basics import _invoke

MODULES = ("fakeplug_losses", "fakeplug_registered", "fakeplug_models", "fakeplug_data")

ENTRY_POINTS = """\
[losscli.losses]
fake_hinge = fakeplug_losses:Hinge
fake_registered = fakeplug_registered:Registered
fake_broken = fakeplug_missing:Nope
focal = fakeplug_losses:Hinge

[losscli.models]
fake_mlp = fakeplug_models:make

[losscli.datasets]
fake_data = fakeplug_data:load

[losscli.calibrators]
fake_shift = tests.plugin_fixtures:Shift
"""

SOURCES = {
    "fakeplug_losses": '''
import torch
from torch import nn

class Hinge(nn.Module):
    """Multi-class hinge (a plain module from an installed plugin)."""
    def __init__(self, margin: float = 1.0, reduction: str = "mean"):
        super().__init__()
        self.margin = margin
    def forward(self, logits, target):
        z_y = logits.gather(1, target[:, None])
        return (self.margin - z_y + logits).clamp_min(0).scatter(1, target[:, None], 0.0).sum(1)
''',
    "fakeplug_registered": '''
import torch.nn.functional as F
from losscli.losses import Loss, Reference, register_loss

@register_loss("fake_registered", family="imbalance", reference=Reference("A plugin paper", "Someone", 2023),
               formula="CE")
class Registered(Loss):
    def per_sample(self, logits, target, **context):
        return F.cross_entropy(logits, target, reduction="none")
''',
    "fakeplug_models": '''
from torch import nn

def make(num_classes, input_shape, hidden: int = 8):
    return nn.Sequential(nn.Flatten(), nn.Linear(input_shape[0], hidden), nn.ReLU(), nn.Linear(hidden, num_classes))
''',
    "fakeplug_data": '''
import torch

def load(n: int = 60):
    g = torch.Generator().manual_seed(0)
    y = torch.arange(n) % 2
    x = torch.randn(n, 3, generator=g) + y[:, None].float() * 2
    return {"x_train": x, "y_train": y, "x_test": x[:20], "y_test": y[:20]}
''',
}


@pytest.fixture
def installed(tmp_path, monkeypatch):
    """A fake installed distribution with losscli entry points, removed (with what it loaded) afterwards."""
    from losscli.calibrate import CALIBRATORS
    from losscli.data.registry import DATASETS
    from losscli.models import MODELS

    dist = tmp_path / "fake_losscli_plugin-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: fake-losscli-plugin\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(ENTRY_POINTS)
    other = tmp_path / "other_losscli_plugin-2.0.dist-info"  # a second distribution reusing a name
    other.mkdir()
    (other / "METADATA").write_text("Metadata-Version: 2.1\nName: other-losscli-plugin\nVersion: 2.0\n")
    (other / "entry_points.txt").write_text("[losscli.losses]\nfake_hinge = fakeplug_losses:Hinge\n")
    for name, source in SOURCES.items():
        (tmp_path / f"{name}.py").write_text(source)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    for registry in (LOSSES, MODELS, DATASETS, CALIBRATORS):
        registry.forget_plugins()
    for name in MODULES:
        sys.modules.pop(name, None)


def test_an_entry_point_is_imported_only_when_named(installed):
    build_loss("ce")
    assert not any(m in sys.modules for m in MODULES)  # built-in names never load plugins
    spec = resolve_loss("fake_hinge(margin=2)")
    assert spec.label == "fake_hinge(margin=2)" and spec.info().family == "plugin"
    assert "fakeplug_losses" in sys.modules and "fakeplug_registered" not in sys.modules
    assert "fake_hinge" in LOSSES.names()  # listed from now on
    z, y = torch.randn(6, 3), torch.arange(6) % 3
    h = (2 - z.gather(1, y[:, None]) + z).clamp_min(0).scatter(1, y[:, None], 0.0).sum(1)
    torch.testing.assert_close(build_loss(spec)(z, y), h.mean())


def test_a_module_that_registers_itself_keeps_its_metadata(installed):
    info = LOSSES.get("fake_registered").info
    assert info.name == "fake_registered" and info.family == "imbalance" and info.reference.year == 2023
    assert LOSSES.names(family="imbalance").count("fake_registered") == 1


def test_a_broken_entry_point_is_one_line_naming_it(installed):
    with pytest.raises(UsageError) as err:
        build_loss("fake_broken")
    message = str(err.value)
    assert message.startswith("loss plugin entry point 'fake_broken' (fakeplug_missing:Nope) of distribution "
                              "fake-losscli-plugin 1.0 failed to load: ModuleNotFoundError")
    assert "\n" not in message
    assert build_loss("focal").info.family != "plugin"  # built-in names win over installed ones


def test_unknown_names_suggest_installed_plugins_without_loading_them(installed):
    with pytest.raises(UsageError, match="Did you mean 'fake_hinge'"):
        build_loss("fake_hinj")
    assert "fakeplug_losses" not in sys.modules


def test_listing_loads_every_plugin_and_warns_about_broken_ones(installed, capsys):
    code, out, err = _invoke(["losses", "--format", "csv"], capsys)
    assert code == 0
    names = [line.split(",")[0] for line in out.splitlines()[1:]]
    assert {"fake_hinge", "fake_registered", "ce", "focal"} <= set(names) and names.count("focal") == 1
    warnings = [line for line in err.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 3, err
    assert any("entry point 'fake_hinge'" in w and "another installed plugin is named 'fake_hinge'" in w
               for w in warnings)
    assert any("'fake_broken'" in w and "failed to load" in w for w in warnings)
    assert any("entry point 'focal'" in w and "is built in" in w for w in warnings)
    code, out, _ = _invoke(["losses", "--family", "plugin", "--format", "json"], capsys)
    assert code == 0 and [d["name"] for d in json.loads(out)] == ["fake_hinge"]  # fake_registered declares its family


def test_models_datasets_and_calibrators_from_entry_points(installed):
    from losscli.calibrate import build_calibrator
    from losscli.data import load_dataset
    from losscli.models import build_model, model_options

    assert build_model("fake_mlp", (3,), 2, kind="vector")(torch.zeros(4, 3)).shape == (4, 2)
    assert model_options("fake_mlp") == {"hidden": 8}
    bundle = load_dataset("fake_data", options={"n": 40})
    assert bundle.name == "fake_data" and bundle.num_classes == 2 and bundle.sizes()["test"] == 20
    z, y = torch.randn(30, 2, dtype=torch.float64), torch.arange(30) % 2
    assert build_calibrator("fake_shift").fit(z, y).state_dict()["method"] == "fake_shift"


def test_forget_plugins_restores_the_builtin_registry(installed):
    before = LOSSES.names()
    LOSSES.load_plugins()
    assert set(LOSSES.names()) - set(before) == {"fake_hinge", "fake_registered"}
    LOSSES.forget_plugins()
    assert LOSSES.names() == before
