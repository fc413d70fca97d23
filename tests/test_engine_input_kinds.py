"""The trainer's paths for the loss input kinds: OKO's sets, LegendreTron's head, composite losses
with embedding parts, and distillation from a teacher run (pld, dhkd), on small synthetic data."""

from __future__ import annotations

import pytest
import torch

from losscli.errors import UsageError
from tests.test_engine import _spec

# well separated, so a few epochs reach accuracy far above chance (0.25)
SEPARABLE = {"name": "synthetic", "options": {"classes": 4, "dim": 8, "n_train": 240, "n_test": 100,
                                              "separation": 4.0}}


def _train(loss, tmp_path, name=None, teacher=None, **over):
    from losscli.engine.trainer import train_run

    over.setdefault("dataset", SEPARABLE)
    spec = _spec(loss, **over)
    spec.teacher = teacher
    return train_run(spec, tmp_path / (name or loss.replace(" ", "").replace("*", "x")), progress=False)


# ---------------------------------------------------------------------------------- OKO
def _steps(loss, batch_size=32, epochs=1):
    from losscli.engine.build import DeviceData, build_run_loss, build_run_model, load_run_data
    from losscli.engine.steps import make_steps
    from losscli.engine.trainer import RunContext

    spec = _spec(loss, dataset=SEPARABLE, train={"batch_size": batch_size, "epochs": epochs})
    bundle = load_run_data(spec)
    loss_fn = build_run_loss(spec, bundle)
    model = build_run_model(spec, bundle, loss_fn)
    ctx = RunContext(spec, model, loss_fn, DeviceData.from_bundle(bundle, torch.device("cpu")), bundle, None,
                     torch.device("cpu"), None, False)
    return make_steps(ctx), bundle


def test_oko_steps_are_batches_of_sets():
    from losscli.engine.steps import SetSteps

    steps, bundle = _steps("oko", batch_size=32)
    n = len(bundle.y_train)
    assert isinstance(steps, SetSteps) and steps.units == n  # one epoch = N_train sets (the paper)
    assert steps.units_per_step == 32 // 3 and steps.examples_per_step == 30  # about an ordinary step's examples
    batches = steps.batches(torch.Generator())
    assert len(batches) == n // 10 and all(b.shape == (10, 3) for b in batches)
    for sets in batches[:3]:  # each set: one pair class twice, one odd class once
        counts = torch.stack([torch.bincount(bundle.y_train[s], minlength=4) for s in sets])
        assert ((counts == 2).sum(1) == 1).all() and ((counts == 1).sum(1) == 1).all()
    again, _ = _steps("oko", batch_size=32)
    assert all(torch.equal(a, b) for a, b in zip(batches, again.batches(torch.Generator())))  # seeded stream
    assert not torch.equal(batches[0], steps.batches(torch.Generator())[0])  # a new draw every epoch
    tiny, _ = _steps("oko(k=2)", batch_size=2)
    assert tiny.units_per_step == 1 and tiny.batches(torch.Generator())[0].shape == (1, 4)  # at least one set


def test_oko_step_loss_is_the_set_loss_of_the_member_logits():
    steps, bundle = _steps("oko")
    sets = steps.batches(torch.Generator())[0]
    model = steps.module()
    with torch.no_grad():
        ours = steps.loss(model, sets, epoch=1)
        member = model(bundle.x_train[sets.reshape(-1)]).reshape(*sets.shape, -1)
        ref = torch.nn.functional.cross_entropy(member.sum(1), torch.mode(bundle.y_train[sets], dim=1).values)
    torch.testing.assert_close(ours, ref)


def test_oko_trains_and_predicts_single_examples(tmp_path):
    report = _train("oko", tmp_path, train={"epochs": 3})
    assert report["status"] == "ok"
    assert report["metrics"]["test"]["accuracy"] > 0.7  # chance is 0.25
    logits = torch.load(tmp_path / "oko" / "logits.pt", weights_only=True)
    assert logits["test_logits"].shape == (100, 4)  # one row per example, not per set
    again = _train("oko", tmp_path, name="again", train={"epochs": 3})
    numbers = lambda r: [(h["train_loss"], h["val_accuracy"]) for h in r["history"]]  # noqa: E731
    assert numbers(again) == numbers(report)  # deterministic per seed (sets included)


# ---------------------------------------------------------------------------------- heads
def test_legendretron_trains_through_its_head(tmp_path):
    report = _train("legendretron", tmp_path, train={"epochs": 15})
    assert report["status"] == "ok"
    assert report["metrics"]["test"]["accuracy"] > 0.7  # chance is 0.25
    state = torch.load(tmp_path / "legendretron" / "model.pt", weights_only=True)
    assert any(".blocks.0.icnn." in k for k in state)  # the learned link is part of the model


# ---------------------------------------------------------------------------------- embeddings
def test_composite_with_an_embedding_part_gets_the_features(tmp_path, monkeypatch):
    from losscli.losses.multi_similarity import MultiSimilarity

    seen = []
    original = MultiSimilarity.forward

    def spy(self, x, target, **context):
        seen.append(tuple(x.shape))
        return original(self, x, target, **context)

    monkeypatch.setattr(MultiSimilarity, "forward", spy)
    report = _train("ce + 0.5*multi_similarity", tmp_path, train={"epochs": 2})
    assert report["status"] == "ok" and report["metrics"]["test"]["accuracy"] > 0.7
    model_features = 100  # the mlp's penultimate width (its head's in_features)
    state = torch.load(tmp_path / "ce+0.5xmulti_similarity" / "model.pt", weights_only=True)
    assert state["model.head.weight"].shape == (4, model_features)
    assert seen and all(shape == (32, model_features) for shape in seen)  # features, not the 4 logits


@pytest.mark.parametrize("loss", ["multi_similarity", "tcm", "multi_similarity + 0.5*tcm(base=none)"])
def test_embedding_losses_alone_are_refused(loss, tmp_path):
    from losscli.engine.build import build_run_loss, load_run_data
    from losscli.engine.runspec import RunSpec
    from losscli.losses import resolve_loss

    with pytest.raises(UsageError, match="trains embeddings, not a classifier"):
        _spec(loss)
    spec = _spec("ce")
    spec = RunSpec(**{**spec.__dict__, "loss": resolve_loss(loss)})  # built by hand, past the config's check
    with pytest.raises(UsageError, match="trains embeddings, not a classifier"):
        build_run_loss(spec, load_run_data(spec))


# ---------------------------------------------------------------------------------- teachers
@pytest.fixture
def teacher_run(tmp_path):
    _train("ce", tmp_path, name="teacher", train={"epochs": 2})
    return str(tmp_path / "teacher")


@pytest.mark.parametrize("loss", ["pld", "dhkd", "pld + 0.1*logz_penalty"])
def test_distillation_from_a_teacher_run(loss, teacher_run, tmp_path):
    with pytest.raises(UsageError, match="distils from a teacher"):
        _train(loss, tmp_path, name="no-teacher")
    report = _train(loss, tmp_path, name="student", teacher=teacher_run, train={"epochs": 2})
    assert report["status"] == "ok" and report["config"]["teacher"] == teacher_run
    assert report["metrics"]["test"]["accuracy"] > 0.7
    if loss == "dhkd":  # the dual head's main half makes the predictions
        state = torch.load(tmp_path / "student" / "model.pt", weights_only=True)
        logits = torch.load(tmp_path / "student" / "logits.pt", weights_only=True)
        assert state["model.head.fc2.weight"].shape == (4, 100) and logits["test_logits"].shape == (100, 4)


def test_dhkd_teacher_through_the_cli(teacher_run, tmp_path, capsys):
    import yaml

    from tests.test_regression import _invoke

    dataset = ["-d", "synthetic", "--set", "dataset.options.classes=4", "--set", "dataset.options.dim=8",
               "--set", "dataset.options.n_train=240", "--set", "dataset.options.n_test=100",
               "--set", "dataset.options.separation=4.0", "-m", "mlp", "--device", "cpu"]
    code, out, err = _invoke(["train", "--loss", "dhkd", *dataset, "--epochs", "2", "--batch-size", "32",
                              "--teacher", teacher_run, "--out", str(tmp_path / "dhkd-cli"), "-q", "-f", "yaml"], capsys)
    assert code == 0, err
    assert yaml.safe_load(out)["config"]["teacher"] == teacher_run
    code, _, err = _invoke(["train", "--loss", "dhkd", *dataset, "--epochs", "1", "--out", str(tmp_path / "x"), "-q"],
                           capsys)
    assert code == 2 and "--teacher" in err and len(err.strip().splitlines()) == 1


def test_compare_refuses_a_teacher_of_other_data_before_any_run(teacher_run, tmp_path, capsys):
    # the teacher saw 8 features; a compare on 6 used to fail every pld run (exit 1) with the reason
    # buried in the report, not one line before the first run
    from tests.test_regression import _invoke

    dataset = ["-d", "synthetic", "--set", "dataset.options.classes=4", "--set", "dataset.options.dim=6",
               "--set", "dataset.options.n_train=120", "-m", "mlp", "--device", "cpu"]
    out = tmp_path / "cmp"
    code, _, err = _invoke(["compare", "--losses", "ce,pld", *dataset, "--teacher", teacher_run, "--seeds", "1",
                            "--noise", "none", "--epochs", "1", "--jobs", "1", "--out", str(out), "-q"], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert "was trained on 4 classes with inputs (8,)" in err and "(6,)" in err, err
    assert not list((out / "runs").glob("*/report.yaml"))  # no run started


def test_config_teacher_goes_to_distilling_losses_only():
    from losscli.config import build_config
    from losscli.engine.runspec import RunSpec
    from losscli.losses import resolve_loss

    cfg = build_config(None, {"teacher": "runs/t", "device": "cpu"})
    assert RunSpec.from_config(cfg, resolve_loss("pld")).teacher == "runs/t"
    assert RunSpec.from_config(cfg, resolve_loss("ce + 0.5*kd")).teacher == "runs/t"
    plain = RunSpec.from_config(cfg, resolve_loss("ce"))
    assert plain.teacher is None
    assert plain.key() == RunSpec.from_config(build_config(None, {"device": "cpu"}), resolve_loss("ce")).key()


# ---------------------------------------------------------------------------------- compiled / CUDA
@pytest.mark.compile
@pytest.mark.parametrize("loss", ["oko", "legendretron", "ce + 0.5*multi_similarity"])
def test_new_training_paths_compile_on_cpu(loss, tmp_path):
    """torch.compile of the set path, of LegendreTron's head (its link runs eagerly: autograd.grad inside)
    and of the features-and-logits module of a composite with an embedding part."""
    report = _train(loss, tmp_path, compile=True, train={"epochs": 2})
    assert report["status"] == "ok" and report["env"]["compiled"] is True
    assert report["metrics"]["test"]["accuracy"] > 0.4


@pytest.mark.gpu
@pytest.mark.parametrize("loss", ["oko", "legendretron", "ce + 0.5*multi_similarity", "ce + 0.2*tcm(base=none)"])
def test_new_training_paths_on_cuda(loss, tmp_path):
    """The CUDA defaults (torch.compile, bf16 autocast) on every new training path."""
    report = _train(loss, tmp_path, device="cuda", train={"epochs": 3})
    assert report["status"] == "ok" and report["env"]["compiled"] is True
    assert report["metrics"]["test"]["accuracy"] > 0.6


def test_oko_without_enough_classes_is_refused_before_the_run_starts(tmp_path):
    two = {"name": "synthetic", "options": {"classes": 2, "dim": 4, "n_train": 40, "n_test": 10}}
    with pytest.raises(UsageError, match=r"k \+ 1 = 3 classes"):
        _train("oko(k=2)", tmp_path, name="oko", dataset=two)
    assert not (tmp_path / "oko").exists()


def test_stacked_composites_equal_separate_runs(tmp_path):
    """Two runs of one stackable composite share a loss call (a copy with reduction none) in the
    batched trainer; every run still follows its separate trajectory."""
    from tests import test_engine

    test_engine.test_batched_training_equals_separate_runs(
        tmp_path, ["ce + 0.1*logz_penalty", "ce + 0.1*logz_penalty", "ce"], None)
