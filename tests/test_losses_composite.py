"""Composite losses: parsing, canonical specs and hashing, one contract for reduction / weight /
ignore_index, derived metadata, and the combinations that are refused (one line each)."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from losscli.errors import UsageError
from losscli.losses import LossInputError, LossSpec, build_loss, resolve_loss
from losscli.lossspec import format_composite, split_composite

N, C = 10, 4


def _data(seed=0, n=N, c=C):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, c, generator=g, dtype=torch.float64) * 2, torch.randint(0, c, (n,), generator=g)


# ---------------------------------------------------------------------------------- spec strings
@pytest.mark.parametrize("text,parts,options", [
    ("ce + 0.5*focal(gamma=3)", [(1.0, "ce"), (0.5, "focal(gamma=3)")], {}),
    ("ce+focal", [(1.0, "ce"), (1.0, "focal")], {}),
    ("2 * ce + .5*focal", [(2.0, "ce"), (0.5, "focal")], {}),
    ("1e+3*ce + 2E-3*logz_penalty", [(1000.0, "ce"), (0.002, "logz_penalty")], {}),  # exponent signs are not sums
    ("ce + focal(alpha=[1e+2,2])", [(1.0, "ce"), (1.0, "focal(alpha=[1e+2,2])")], {}),  # nor are bracketed ones
    ("(ce + focal)(weight=[1,2])", [(1.0, "ce"), (1.0, "focal")], {"weight": [1, 2]}),
])
def test_split_composite(text, parts, options):
    assert split_composite(text) == (parts, options)


@pytest.mark.parametrize("text", ["ce", "focal(gamma=2)", "focal(gamma=1e+3)"])
def test_single_losses_are_not_composites(text):
    assert split_composite(text) is None


@pytest.mark.parametrize("text,needle", [
    ("0.5*focal", "at least two"), ("(ce)", "at least two"), ("ce + ", "empty term"), ("ce + +focal", "empty term"),
    ("ce + 0*focal", "positive finite"), ("ce + -1*focal", "positive finite"), ("ce + inf*focal", "positive finite"),
    ("ce + nan*focal", "positive finite"), ("ce + x*focal", "positive finite"), ("ce + 2*", "no loss after it"),
    ("ce + focal(gamma=2", "unbalanced"),
])
def test_bad_composite_strings_are_one_line(text, needle):
    with pytest.raises(UsageError, match=needle):
        split_composite(text)


def test_format_composite_round_trips():
    parts = [(1.0, "ce"), (0.5, "focal(gamma=3)"), (1e-05, "logz_penalty")]
    text = format_composite(parts)
    assert text == "ce + 0.5*focal(gamma=3) + 1e-05*logz_penalty"
    assert split_composite(text) == (parts, {})
    assert split_composite(format_composite(parts, {"ignore_index": 3})) == (parts, {"ignore_index": 3})


# ---------------------------------------------------------------------------------- canonical specs
def test_equal_configurations_are_one_spec():
    a, b = resolve_loss("ce + 1*focal(gamma=2)"), resolve_loss("ce+FOCAL(gamma=2.0)")
    assert a == b and a.label == b.label == "ce + focal"
    assert resolve_loss("ce + 0.50*focal(gamma=3)").label == "ce + 0.5*focal(gamma=3)"
    assert resolve_loss("ce + focal") != resolve_loss("focal + ce")  # the order given is kept
    assert resolve_loss("ce + focal") != resolve_loss("ce + 2*focal")


@pytest.mark.parametrize("text", ["ce + 0.5*focal(gamma=3)", "(ce + 2*label_smoothing(epsilon=0.2))(weight=[1,2,3,4])",
                                  "ce + 0.5*multi_similarity", "pld(temperature=4) + 0.1*logz_penalty"])
def test_spec_round_trips_through_label_resolved_and_dict(text):
    spec = resolve_loss(text)
    assert resolve_loss(spec.label) == spec
    assert resolve_loss(spec.resolved()) == spec  # a run's config.yaml
    assert resolve_loss(spec.to_dict()) == spec  # a report's loss entry
    assert resolve_loss(spec) == spec
    assert resolve_loss({"name": spec.label}) == spec  # a config's losses list may hold a mapping


def test_run_keys_hash_composites_canonically():
    from losscli.config import build_config
    from losscli.engine.runspec import RunSpec

    cfg = build_config(None, {"device": "cpu"})
    key = lambda text: RunSpec.from_config(cfg, resolve_loss(text, for_engine=True)).key()  # noqa: E731
    assert key("ce + 1*focal(gamma=2)") == key("ce+focal")
    assert key("ce + focal") != key("ce + 0.5*focal") != key("ce + focal(gamma=3)")
    assert key("ce + focal") != key("ce")
    spec = RunSpec.from_config(cfg, resolve_loss("ce + 0.5*focal(gamma=3)", for_engine=True))
    assert RunSpec.from_resolved(spec.resolved()).key() == spec.key()


def test_config_lists_dedupe_composites_canonically():
    from losscli.config import build_config

    cfg = build_config(None, {"losses": "ce,ce + 0.5*focal(gamma=3),focal"})
    assert [s.label for s in cfg.loss_specs()] == ["ce", "ce + 0.5*focal(gamma=3)", "focal"]
    with pytest.raises(UsageError, match="twice"):
        build_config(None, {"losses": ["ce + 1*focal(gamma=2)", "ce+focal"]}).loss_specs()


@pytest.mark.parametrize("text,needle", [
    ("ce + ce", "twice"), ("ce + focal + focal(gamma=2)", "twice"),
    ("ce(weight=[1,2]) + focal", r"whole sum.*\(ce \+ focal\)\(weight=\.\.\.\)"),
    ("ce + oko", "sets of examples"), ("ce + hl_gauss", "regression loss"), ("ce + ldam", "own output layer"),
    ("ce + dhkd", "own output layer"), ("ce + bce", "multi-label and single-label"),
    ("ce + focl", "Did you mean 'focal'"), ("ce + focal(gama=2)", "unknown parameter"),
    ("(ce + multi_similarity)(weight=[1,1,1,1])", "does not support per-class weights"),
])
def test_refused_composites_say_why(text, needle):
    with pytest.raises(UsageError, match=needle):
        resolve_loss(text)


def test_parameters_of_the_sum_belong_to_its_parts():
    with pytest.raises(UsageError, match=r"unknown parameter.*inside it"):
        resolve_loss("ce + focal", {"gamma": 2})
    with pytest.raises(UsageError, match="unknown parameter"):
        build_loss("ce + focal", gamma=2.0)


def test_engine_refuses_what_it_sets_itself_and_embeddings_alone():
    with pytest.raises(UsageError, match="remove reduction"):
        resolve_loss("(ce + focal)(reduction=sum)", for_engine=True)
    for text in ("multi_similarity", "tcm", "multi_similarity + 0.5*tcm(base=none)"):
        with pytest.raises(UsageError, match=r"trains embeddings, not a classifier.*'ce \+ 0.5\*"):
            resolve_loss(text, for_engine=True)
    assert resolve_loss("ce + 0.5*multi_similarity", for_engine=True).parts  # summed with a classifier: fine


# ---------------------------------------------------------------------------------- the loss
def test_value_is_the_weighted_sum_of_the_parts():
    z, y = _data()
    ours = build_loss("ce + 0.5*focal(gamma=3) + 0.1*logz_penalty")(z, y)
    ref = F.cross_entropy(z, y) + 0.5 * build_loss("focal", gamma=3.0)(z, y) + 0.1 * build_loss("logz_penalty")(z, y)
    torch.testing.assert_close(ours, ref)


def test_one_contract_for_reduction_weight_and_ignore_index():
    z, y = _data(1)
    y[3] = -100
    w = torch.tensor([0.5, 2.0, 1.0, 3.0], dtype=torch.float64)
    text = "ce + 0.5*focal(gamma=3)"
    per = build_loss(text, weight=w, reduction="none")(z, y)
    total = build_loss(text, weight=w, reduction="sum")(z, y)
    mean = build_loss(text, weight=w)(z, y)
    assert per[3] == 0
    torch.testing.assert_close(total, per.sum())
    valid = y != -100
    torch.testing.assert_close(mean, per.sum() / w[y[valid]].sum())  # torch's weighted mean of the sum
    ref = F.cross_entropy(z, y, weight=w) + 0.5 * build_loss("focal", gamma=3.0, weight=w)(z, y)
    torch.testing.assert_close(mean, ref)  # = the sum of the parts' weighted means


def test_mixed_logits_and_embeddings():
    from losscli.losses.multi_similarity import multi_similarity_per_anchor

    z, y = _data(2, n=12)
    emb = torch.randn(12, 5, dtype=torch.float64)
    fn = build_loss("ce + 0.5*multi_similarity")
    assert fn.info.input == "logits" and "embeddings" in fn.info.needs and not fn.info.stackable
    ms = multi_similarity_per_anchor(emb, y, torch.ones(12, dtype=torch.bool), 2.0, 40.0, 0.5, 0.1).mean()
    torch.testing.assert_close(fn(z, y, embeddings=emb), F.cross_entropy(z, y) + 0.5 * ms)
    with pytest.raises(LossInputError, match="embeddings="):
        fn(z, y)
    with pytest.raises(LossInputError, match="unknown keyword"):
        fn(z, y, embeddings=emb, features=emb)


def test_derived_metadata():
    info = resolve_loss("mae + 0.5*rce").info()
    assert info.bounded and info.symmetric and info.family == "composite"
    parts = [build_loss("mae"), build_loss("rce")]
    bound = info.upper_bound({}, C)
    assert bound == pytest.approx(parts[0].info.upper_bound(parts[0].params, C)
                                  + 0.5 * parts[1].info.upper_bound(parts[1].params, C))
    mixed = resolve_loss("ce + 0.5*mae").info()
    assert not mixed.bounded and mixed.upper_bound is None and not mixed.symmetric
    coupled = resolve_loss("ce + 0.2*tcm(base=none)").info()
    assert coupled.batch_coupled and coupled.needs == ("embeddings",)
    ctx = resolve_loss("pld + 0.5*aslp").info()
    assert set(ctx.needs) == {"teacher_logits", "index"} and ctx.uses == ("epoch",)
    assert resolve_loss("ce + logit_adjusted").info().needs_class_counts
    assert resolve_loss("ce + 0.1*logz_penalty").info().stackable


def test_parts_keep_their_state_and_epoch_hooks():
    fn = build_loss("ce + 0.5*aslp")
    assert fn.keeps_epoch_state and not build_loss("ce + focal").keeps_epoch_state
    fn.on_epoch_end(0, 0.75)
    assert float(fn.parts[1].val_accuracy) == 0.75
    z, y = _data(3)
    fn(z.float(), y, index=torch.arange(N), epoch=6)
    assert any(k.startswith("parts.1.") for k in fn.state_dict())  # the per-sample alphas are checkpointed


def test_a_copy_with_another_reduction_does_not_leak_into_the_original():
    """The batched trainer shares one loss between runs through a shallow copy with reduction none."""
    z, y = _data(4)
    fn = build_loss("ce + 0.1*logz_penalty")
    shared = copy.copy(fn)
    shared.reduction = "none"
    assert shared(z, y).shape == (N,)
    assert fn(z, y).shape == ()  # the parts take the reduction of each call


def test_batched_training_accepts_stackable_composites():
    from losscli.engine.batched import batchable
    from losscli.models import build_model

    model = build_model("mlp", (6,), C, kind="vector")
    assert batchable(build_loss("ce + 0.1*logz_penalty"), model) is None
    assert "stacked (it reads the model's embeddings)" in batchable(build_loss("ce + 0.5*multi_similarity"), model)
    assert "end of each epoch" in batchable(build_loss("ce + 0.5*aslp"), model)


def test_composite_spec_type():
    spec = resolve_loss("ce + 0.5*focal(gamma=3)")
    assert isinstance(spec, LossSpec) and spec.is_composite and spec.params == {}
    assert [(w, p.label) for w, p in spec.parts] == [(1.0, "ce"), (0.5, "focal(gamma=3)")]
    assert spec.to_dict()["parts"][1] == {"weight": 0.5, **spec.parts[1][1].to_dict()}


# ---------------------------------------------------------------------------------- the CLI
def test_losses_command_shows_kinds_and_composites(capsys):
    import json

    from tests.test_regression import _invoke

    code, out, _ = _invoke(["losses", "-f", "json"], capsys)
    kinds = {d["name"]: (d["properties"]["input"], d["properties"]["target"]) for d in json.loads(out)}
    assert kinds["oko"] == ("sets", "class") and kinds["hl_gauss"] == ("logits", "regression")
    code, out, _ = _invoke(["losses"], capsys)
    assert code == 0 and "input/target" in out and "embeddings/class" in out
    code, out, _ = _invoke(["losses", "mae + 0.5*rce"], capsys)
    assert code == 0 and "parts:" in out and "0.5 * rce" in out and "symmetric=True" in out
    code, out, _ = _invoke(["losses", "ce + 0.5*multi_similarity", "-f", "json"], capsys)
    data = json.loads(out)
    assert [p["label"] for p in data["parts"]] == ["ce", "multi_similarity"]
    assert data["properties"]["needs"] == ["embeddings"] and data["properties"]["stackable"] is False
    code, _, err = _invoke(["losses", "ce + oko"], capsys)
    assert code == 2 and "sets of examples" in err and len(err.strip().splitlines()) == 1


def test_train_accepts_a_composite_and_its_options(tmp_path, capsys):
    import yaml

    from losscli.app.train import default_run_dir
    from losscli.config import build_config
    from tests.test_regression import _invoke

    data = ["-d", "synthetic", "--set", "dataset.options.classes=3", "--set", "dataset.options.n_train=90",
            "--set", "dataset.options.n_test=30", "-m", "linear", "--epochs", "1", "--device", "cpu", "-q"]
    code, out, err = _invoke(["train", "--loss", "ce + 1*focal(gamma=2)", "-p", "weight=[1,2,1]", *data,
                              "--out", str(tmp_path / "run"), "-f", "yaml"], capsys)
    assert code == 0, err
    report = yaml.safe_load(out)
    assert report["loss"]["label"] == "(ce + focal)(weight=[1,2,1])"
    assert [p["label"] for p in report["loss"]["parts"]] == ["ce", "focal"]
    code, _, err = _invoke(["train", "--loss", "ce + focal", "-p", "gamma=3", *data, "--out", str(tmp_path / "x")],
                           capsys)
    assert code == 2 and "inside it" in err and len(err.strip().splitlines()) == 1
    cfg = build_config(None, {"loss": "ce + 0.5*focal(gamma=3)", "dataset": {"name": "mnist1d"}})
    assert default_run_dir(cfg).name == "ce+focal-mnist1d-s0"
