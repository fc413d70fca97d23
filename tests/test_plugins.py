"""Plugins named by import path: losses, models, datasets and calibrators (``pkg.module:Name``).

Fixtures live in ``tests/plugin_fixtures.py``; entry points are in ``test_plugins_entry_points.py``.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from losscli.errors import UsageError
from losscli.losses import LOSSES, build_loss, resolve_loss

FX = "tests.plugin_fixtures"


@pytest.fixture(autouse=True)
def _forget_plugins():
    """Each test resolves its plugins afresh; nothing loaded here leaks into other test modules."""
    from losscli.calibrate import CALIBRATORS
    from losscli.data.registry import DATASETS
    from losscli.models import MODELS

    yield
    for registry in (LOSSES, MODELS, DATASETS, CALIBRATORS):
        registry.forget_plugins()


def _batch(n=8, c=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, c, generator=g) * 2, torch.arange(n) % c


# --------------------------------------------------------------------------- losses
def test_torch_module_with_reduction_is_a_full_loss():
    """nn.CrossEntropyLoss by import path: per-sample (built with reduction='none'), so reductions,
    per-class weight and ignore_index are losscli's and equal torch's own."""
    z, y = _batch()
    y[3] = -100
    w = [1.0, 2.0, 0.5, 3.0]
    fn = build_loss("torch.nn:CrossEntropyLoss", weight=w)
    torch.testing.assert_close(fn(z, y), F.cross_entropy(z, y, weight=torch.tensor(w)))
    none = build_loss("torch.nn:CrossEntropyLoss", reduction="none")(z, y)
    torch.testing.assert_close(none, F.cross_entropy(z, y, reduction="none"))
    info = fn.info
    assert info.name == "torch.nn:CrossEntropyLoss" and info.family == "plugin"
    assert not info.batch_coupled and info.supports_weight and not (info.bounded or info.symmetric)
    assert {p.name for p in info.params} == {"size_average", "reduce", "label_smoothing"}  # weight etc. are handled


def test_module_without_reduction_is_the_batch_mean():
    z, y = _batch()
    spec = resolve_loss(f"{FX}:BatchMeanHinge(margin=2)")
    assert spec.label == f"{FX}:BatchMeanHinge(margin=2)" and spec.params == {"margin": 2.0, "squared": False}
    fn = build_loss(spec)
    assert fn.info.batch_coupled and not fn.info.supports_weight
    h = (2.0 - z.gather(1, y[:, None]) + z).clamp_min(0).scatter(1, y[:, None], 0.0).sum(1)
    torch.testing.assert_close(fn(z, y), h.mean())
    ignored = y.clone()
    ignored[0] = -100  # ignored rows are left out of the mean
    torch.testing.assert_close(fn(z, ignored), h[1:].mean())
    with pytest.raises(UsageError, match="only reduction='mean'|batch-level"):
        build_loss(spec, reduction="sum")(z, y)
    with pytest.raises(UsageError, match="does not support per-class weights"):
        build_loss(spec, weight=[1, 1, 1, 1])


def test_params_come_from_the_constructor_and_are_validated():
    info = LOSSES.get(f"{FX}:EpochScaledCE").info
    kinds = {p.name: (p.kind, p.default) for p in info.params}
    assert kinds == {"width": ("int", 3), "names": ("float_list", [0.5, 1.5]), "tag": ("str", "x"),
                     "optional": ("float", None)}
    assert info.needs == ("epoch",) and not info.uses
    with pytest.raises(UsageError, match="parameter 'width' must be a int"):
        resolve_loss(f"{FX}:EpochScaledCE(width=1.5)")
    with pytest.raises(UsageError, match="unknown parameter 'wdth'"):
        resolve_loss(f"{FX}:EpochScaledCE(wdth=2)")
    z, y = _batch()
    fn = build_loss(f"{FX}:EpochScaledCE")
    torch.testing.assert_close(fn(z, y, epoch=2), 3 * F.cross_entropy(z, y))
    with pytest.raises(UsageError, match="needs forward"):
        fn(z, y)


def test_class_counts_argument_receives_the_counts():
    info = LOSSES.get(f"{FX}:CountsCE").info
    assert info.needs_class_counts
    with pytest.raises(UsageError, match="class counts"):
        build_loss(f"{FX}:CountsCE")
    z, y = _batch()
    counts = [10.0, 20.0, 30.0, 40.0]
    prior = torch.log(torch.tensor(counts) / 100)
    torch.testing.assert_close(build_loss(f"{FX}:CountsCE", class_counts=counts)(z, y), F.cross_entropy(z + prior, y))


def test_a_loss_subclass_keeps_its_metadata_under_the_import_path():
    spec = resolve_loss(f"{FX}:WithInfo(scale=0.5)")
    info = spec.info()
    assert info.name == f"{FX}:WithInfo" and info.family == "noise-robust" and info.bounded and info.symmetric
    assert spec.label == f"{FX}:WithInfo(scale=0.5)"
    with pytest.raises(UsageError, match="scale"):
        resolve_loss(f"{FX}:WithInfo(scale=2)")  # the declared range holds
    from tests.plugin_fixtures import WithInfo

    assert WithInfo.info.name == "with_info"  # the plugin's own class is left as it was
    assert "with_info" not in LOSSES  # hand-set metadata registers nothing


def test_identity_is_the_import_path():
    """compare hashes and labels runs by the canonical spec: the path and the parameters count."""
    a, b = resolve_loss(f"{FX}:BatchMeanHinge"), resolve_loss(f"{FX}:BatchMeanHinge(margin=1.0)")
    assert a == b and a.label == b.label == f"{FX}:BatchMeanHinge"
    assert resolve_loss(f"{FX}:BatchMeanHinge(margin=3)") != a
    assert resolve_loss(a.resolved()) == a  # a run's config.yaml reads back
    assert resolve_loss("torch.nn:MultiMarginLoss").label != resolve_loss("torch.nn:MultiLabelMarginLoss").label


def test_plugins_inside_composites():
    spec = resolve_loss(f"ce + 0.5*{FX}:WithInfo(scale=0.5)")
    assert spec.label == f"ce + 0.5*{FX}:WithInfo(scale=0.5)"
    z, y = _batch()
    plugin = build_loss(f"{FX}:WithInfo(scale=0.5)")(z, y)
    torch.testing.assert_close(build_loss(spec)(z, y), F.cross_entropy(z, y) + 0.5 * plugin)
    assert not spec.info().bounded  # ce is not


@pytest.mark.parametrize("name, message", [
    ("no_such_module_xyz:Loss", "no module named 'no_such_module_xyz'"),
    (f"{FX}:Missing", f"module '{FX}' has no attribute 'Missing'"),
    (f"{FX}:NeedsArgument", "parameter 'k' has no default (the plugin's constructor requires a value); give it in "
                            f"the spec, as in '{FX}:NeedsArgument(k=VALUE)'"),
    (f"{FX}:PositionalOnly", "constructor argument 'k' is positional-only"),
    (f"{FX}:NoMetadata", "subclasses losscli.losses.Loss but has no metadata"),
    (f"{FX}:WrongForward", "forward argument 'temperature' is not one losscli passes"),
    (f"{FX}:ClashingArgument", "'eval' clashes with an attribute"),
    (f"{FX}:INSTANCE", "is an nn.Module instance"),
    (f"{FX}:NOT_CALLABLE", "is a int"),
    (f"{FX}:failing_factory", "building it failed: ValueError: scale must be tuned first"),
    (f"{FX}:returns_number", "returned a int, not a loss module"),
    ("torch:Tensor", "not a torch.nn.Module subclass"),
])
def test_bad_plugin_losses_are_one_line(name, message):
    with pytest.raises(UsageError) as err:
        build_loss(name)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_an_error_inside_the_plugin_module_names_it(tmp_path, monkeypatch):
    (tmp_path / "plugin_raises_on_import.py").write_text("import no_such_dependency_xyz\n")
    (tmp_path / "plugin_syntax_error.py").write_text("def broken(:\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(UsageError, match="importing plugin_raises_on_import failed: ModuleNotFoundError: No module "
                                         "named 'no_such_dependency_xyz'"):
        build_loss("plugin_raises_on_import:Loss")
    with pytest.raises(UsageError, match=r"importing plugin_syntax_error failed: SyntaxError: .*line 1"):
        build_loss("plugin_syntax_error:Loss")


def test_plugin_names_are_not_listed_and_do_not_break_builtins():
    build_loss("torch.nn:CrossEntropyLoss")
    assert "torch.nn:CrossEntropyLoss" in LOSSES and all(":" not in n for n in LOSSES.names())
    assert LOSSES.canonical("cross_entropy") == "ce"
    with pytest.raises(UsageError, match="Did you mean 'focal'"):
        build_loss("focl")


# --------------------------------------------------------------------------- models, datasets, calibrators
def test_model_factories_by_keyword_or_position():
    from losscli.models import build_model, model_options

    model = build_model(f"{FX}:Headless", (4,), 3, kind="vector", hidden=5)
    assert model(torch.zeros(2, 4)).shape == (2, 3) and model.net[1].out_features == 5
    assert model_options(f"{FX}:Headless") == {"hidden": 16}
    assert build_model(f"{FX}:positional_model", (2, 3), 4)(torch.zeros(1, 2, 3)).shape == (1, 4)
    with pytest.raises(UsageError, match="unknown option 'width'"):
        build_model(f"{FX}:Headless", (4,), 3, width=2)
    with pytest.raises(UsageError, match="model 'examples.custom_model:residual_mlp' does not support tokens"):
        build_model("examples.custom_model:residual_mlp", (8,), 3, kind="tokens")
    with pytest.raises(UsageError, match="is not a factory"):
        build_model(f"{FX}:INSTANCE", (4,), 3)
    with pytest.raises(UsageError, match="returned a int"):
        build_model(f"{FX}:model_returns_number", (4,), 3)


def test_dataset_from_a_function():
    from losscli.data import load_dataset

    bundle = load_dataset(f"{FX}:blobs", options={"n": "120", "num_classes": 4}, val_fraction=0.25, split_seed=3)
    assert bundle.name == f"{FX}:blobs" and bundle.kind == "vector" and bundle.num_classes == 4
    assert bundle.sizes() == {"train": 88, "val": 32, "test": 60}  # val carved per class (8 of 30)
    again = load_dataset(f"{FX}:blobs", options={"n": 120, "num_classes": 4}, val_fraction=0.25, split_seed=3)
    assert torch.equal(bundle.x_val, again.x_val)  # deterministic, the split carved with split_seed
    with pytest.raises(UsageError, match="unknown option 'classes'"):
        load_dataset(f"{FX}:blobs", options={"classes": 2})
    with pytest.raises(UsageError, match="unknown key\\(s\\) 'labels'"):
        load_dataset(f"{FX}:blobs_bad_key")
    with pytest.raises(UsageError, match="dataset 'no_such_module_xyz:data': no module named"):
        load_dataset("no_such_module_xyz:data")


def test_calibrator_by_import_path_round_trips():
    from losscli.calibrate import build_calibrator, resolve_methods

    assert resolve_methods(f"temperature,{FX}:Shift") == ["temperature", f"{FX}:Shift"]
    z = torch.randn(50, 3, dtype=torch.float64)
    y = torch.arange(50) % 3
    cal = build_calibrator(f"{FX}:Shift").fit(z, y)
    state = cal.state_dict()
    assert state["method"] == f"{FX}:Shift"
    again = build_calibrator(state["method"]).load_state_dict(state)
    torch.testing.assert_close(again.transform(z), z - z.mean(0))
    with pytest.raises(UsageError, match="is not a losscli.calibrate.Calibrator subclass"):
        build_calibrator(f"{FX}:Headless")
