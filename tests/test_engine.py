"""Trainer, batched trainer, run directory, NaN handling and eval on synthetic data (tiny budgets)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml

from losscli.config import build_config
from losscli.engine.runspec import RunSpec

SYNTH = {"name": "synthetic", "options": {"classes": 4, "dim": 8, "n_train": 240, "n_test": 100, "separation": 2.0}}


def _cfg(**over):
    base = {"dataset": SYNTH, "model": {"name": "mlp"}, "train": {"epochs": 3, "batch_size": 32, "lr": 0.01},
            "device": "cpu"}
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(base.get(k), dict):
            base[k] = {**base[k], **v}
        else:
            base[k] = v
    return build_config(None, base)


def _spec(loss="ce", seed=0, noise="none", **over):
    from losscli.data.settings import parse_imbalance_spec, parse_noise_spec
    from losscli.losses import resolve_loss

    return RunSpec.from_config(_cfg(**over), resolve_loss(loss, for_engine=True), seed=seed,
                               noise=parse_noise_spec(noise), imbalance=parse_imbalance_spec("none"))


def test_train_run_writes_the_run_directory(tmp_path):
    from losscli.engine.trainer import train_run

    from losscli.report.run import render_run_markdown

    report = train_run(_spec(), tmp_path / "run", progress=False, render_markdown=render_run_markdown)
    run = tmp_path / "run"
    for name in ("config.yaml", "metrics.jsonl", "model.pt", "logits.pt", "report.md", "report.yaml"):
        assert (run / name).is_file(), name
    assert report["status"] == "ok" and report["schema"] == "losscli/run/v1"
    on_disk = yaml.safe_load((run / "report.yaml").read_text())
    assert on_disk["metrics"]["test"]["accuracy"] == pytest.approx(report["metrics"]["test"]["accuracy"])
    lines = [json.loads(l) for l in (run / "metrics.jsonl").read_text().splitlines()]
    assert [l["epoch"] for l in lines] == [1, 2, 3]
    state = torch.load(run / "model.pt", weights_only=True)
    assert any(k.startswith("model.") for k in state)
    logits = torch.load(run / "logits.pt", weights_only=True)
    assert logits["test_logits"].shape == (100, 4) and logits["val_labels"].dtype == torch.int64
    assert report["metrics"]["best_epoch"]["epoch"] in (1, 2, 3)
    assert report["metrics"]["last_epoch"]["epoch"] == 3
    assert report["metrics"]["test"]["accuracy"] > 0.5  # separable data: well above chance (0.25)


def test_rerun_into_completed_dir_needs_overwrite(tmp_path):
    from losscli.engine.trainer import train_run
    from losscli.errors import UsageError

    train_run(_spec(), tmp_path / "run", progress=False)
    with pytest.raises(UsageError, match="--overwrite"):
        train_run(_spec(), tmp_path / "run", progress=False)
    train_run(_spec(), tmp_path / "run", progress=False, overwrite=True)


def test_training_is_deterministic_per_seed(tmp_path):
    from losscli.engine.trainer import train_run

    a = train_run(_spec(seed=3), tmp_path / "a", progress=False)
    b = train_run(_spec(seed=3), tmp_path / "b", progress=False)
    c = train_run(_spec(seed=4), tmp_path / "c", progress=False)
    assert a["history"] == [dict(h, train_seconds=h2["train_seconds"]) for h, h2 in zip(b["history"], a["history"])]
    assert [h["train_loss"] for h in a["history"]] != [h["train_loss"] for h in c["history"]]


def test_nan_stops_the_run_cleanly(tmp_path):
    from losscli.engine.trainer import train_run

    # a huge learning rate on the unbounded square loss diverges within a few steps
    spec = _spec("square", train={"lr": 1e6, "optimizer": "sgd", "epochs": 3, "warmup_epochs": 0})
    report = train_run(spec, tmp_path / "nan", progress=False)
    assert report["status"] == "failed"
    assert "epoch" in report["error"] and "step" in report["error"]
    on_disk = yaml.safe_load((tmp_path / "nan" / "report.yaml").read_text())
    assert on_disk["status"] == "failed"
    assert (tmp_path / "nan" / "config.yaml").is_file()


def test_divergence_in_the_last_step_fails_the_run_cleanly(tmp_path):
    """Every step's loss finite, the weights after the last one not (weight decay 1e300): the final
    metrics raised "logits contains NaN or +inf values" (exit 2, no report); now the run fails like a NaN
    loss, with the report on disk, in both trainers."""
    from losscli.engine.batched import train_group
    from losscli.engine.trainer import train_run

    train = {"epochs": 1, "weight_decay": 1e300, "batch_size": 1024}  # one step: the last one diverges
    report = train_run(_spec(train=train), tmp_path / "wd", progress=False)
    assert report["status"] == "failed" and "outputs became non-finite" in report["error"]
    assert "after epoch 1" in report["error"]
    assert yaml.safe_load((tmp_path / "wd" / "report.yaml").read_text())["status"] == "failed"
    reports = train_group([_spec(train=train), _spec("gce", seed=1, train=train)], [tmp_path / "g0", tmp_path / "g1"])
    assert [r["status"] for r in reports] == ["failed", "failed"]  # a group shares its training settings
    assert all("outputs became non-finite" in r["error"] for r in reports)


def test_noise_reported_in_train_metrics(tmp_path):
    from losscli.engine.trainer import train_run

    report = train_run(_spec(noise="sym:0.4"), tmp_path / "noisy", progress=False)
    train = report["metrics"]["train"]
    assert {"accuracy", "clean_accuracy", "noisy_memorized"} <= set(train)
    assert report["data"]["noise"]["spec"].startswith("sym")


@pytest.mark.parametrize("losses,clip", [(["ce", "focal(gamma=2)", "gce"], None), (["ce", "ce", "label_smoothing"], 0.5)])
def test_batched_training_equals_separate_runs(tmp_path, losses, clip):
    """The torch.func stacked trainer gives each run the same trajectory as a separate run."""
    from losscli.engine.batched import train_group
    from losscli.engine.trainer import train_run

    specs = [_spec(l, seed=s, noise="sym:0.2", train={"grad_clip": clip}) for s, l in enumerate(losses)]
    batched = train_group(specs, [tmp_path / f"b{i}" for i in range(len(specs))])
    for i, spec in enumerate(specs):
        single = train_run(spec, tmp_path / f"s{i}", progress=False)
        for hb, hs in zip(batched[i]["history"], single["history"]):
            assert hb["train_loss"] == pytest.approx(hs["train_loss"], rel=1e-4, abs=1e-6)
            assert hb["test_accuracy"] == pytest.approx(hs["test_accuracy"], abs=1e-9)
        wb = torch.load(tmp_path / f"b{i}" / "model.pt", weights_only=True)
        ws = torch.load(tmp_path / f"s{i}" / "model.pt", weights_only=True)
        for k in ws:
            torch.testing.assert_close(wb[k], ws[k], rtol=1e-4, atol=1e-5)


def test_batchable_reasons():
    from losscli.engine.batched import batchable
    from losscli.losses import build_loss
    from losscli.models import build_model

    mlp = build_model("mlp", (8,), 4)
    assert batchable(build_loss("ce"), mlp) is None
    assert "head" in batchable(build_loss("ldam", class_counts=[10, 5, 3, 1]), mlp)
    assert "state" in batchable(build_loss("aldr_kl"), mlp)


def test_eval_run_recomputes_metrics(tmp_path):
    from losscli.app.evaluate import evaluate_run
    from losscli.engine.trainer import train_run

    report = train_run(_spec("focal"), tmp_path / "run", progress=False)
    ev = evaluate_run(tmp_path / "run", device="cpu")
    assert ev["metrics"]["test"]["accuracy"] == pytest.approx(report["metrics"]["test"]["accuracy"], abs=1e-6)
    assert len(ev["per_class_test_accuracy"]) == 4


def test_cosine_head_loss_trains(tmp_path):
    from losscli.engine.trainer import train_run

    report = train_run(_spec("ldam"), tmp_path / "ldam", progress=False)
    assert report["status"] == "ok"
    state = torch.load(tmp_path / "ldam" / "model.pt", weights_only=True)
    assert any("head" in k for k in state)


def test_kd_distils_from_a_finished_run(tmp_path):
    from losscli.engine.trainer import train_run
    from losscli.errors import UsageError

    train_run(_spec(), tmp_path / "teacher", progress=False)
    with pytest.raises(UsageError, match="teacher"):
        train_run(_spec("kd"), tmp_path / "no-teacher", progress=False)
    spec = _spec("kd", seed=1)
    spec.teacher = str(tmp_path / "teacher")
    report = train_run(spec, tmp_path / "student", progress=False)
    assert report["status"] == "ok" and report["config"]["teacher"] == str(tmp_path / "teacher")


def test_per_sample_state_loss_gets_sample_ids(tmp_path):
    from losscli.engine.trainer import train_run

    report = train_run(_spec("aldr_kl"), tmp_path / "aldr", progress=False)
    assert report["status"] == "ok"
    state = torch.load(tmp_path / "aldr" / "model.pt", weights_only=True)
    assert any(k.startswith("loss.") for k in state)  # the per-sample lambdas are checkpointed


@pytest.fixture
def nan_loss():
    """A throw-away registered loss whose value turns NaN from the 5th call on."""
    from losscli.losses import LOSSES, Loss, Reference, register_loss

    @register_loss("test_nan_after", family="standard", reference=Reference("test", "test", 2000), formula="ce, then nan")
    class NanAfter(Loss):
        calls = 0

        def per_sample(self, logits, target, **context):
            type(self).calls += 1
            ce = torch.nn.functional.cross_entropy(logits, target, reduction="none")
            return ce * float("nan") if type(self).calls > 4 else ce

    yield "test_nan_after"
    LOSSES._entries.pop("test_nan_after")


def test_batched_nan_fails_only_that_run(tmp_path, nan_loss):
    from losscli.engine.batched import train_group

    specs = [_spec("ce", seed=0), _spec(nan_loss, seed=1), _spec("gce", seed=2)]
    reports = train_group(specs, [tmp_path / f"r{i}" for i in range(3)])
    assert [r["status"] for r in reports] == ["ok", "failed", "ok"]
    assert "epoch 1, step" in reports[1]["error"]
    assert len(reports[0]["history"]) == 3 and reports[1]["history"] == []


@pytest.mark.parametrize("optimizer", ["adamw", "sgd"])
def test_stacked_optimizer_updates_equal_separate_ones_bitwise(optimizer):
    """The claim behind batched training: a stacked [R, ...] parameter gets exactly the update R
    separate parameters get; and on a CPU build_optimizer's multi-tensor step (foreach=True) gives
    the per-tensor loop's results bit for bit."""
    from losscli.config import TrainConfig
    from losscli.engine.optim import build_optimizer

    cfg = TrainConfig(optimizer=optimizer, lr=0.01, weight_decay=5e-4, momentum=0.9)
    g = torch.Generator().manual_seed(0)
    shapes = [(37, 13), (13,), (5, 7, 3)]
    separate = [[torch.randn(s, generator=g).requires_grad_() for s in shapes] for _ in range(3)]
    stacked = [torch.stack([separate[r][i].detach() for r in range(3)]).requires_grad_() for i in range(len(shapes))]
    looped = [p.detach().clone().requires_grad_() for p in separate[0]]
    opts = [build_optimizer(p, cfg) for p in separate]
    opt = build_optimizer(stacked, cfg)
    assert all(group["foreach"] is True for o in (*opts, opt) for group in o.param_groups)
    # torch's per-tensor loop, with the same hyperparameters
    reference = (torch.optim.AdamW(looped, lr=0.01, weight_decay=5e-4, foreach=False) if optimizer == "adamw" else
                 torch.optim.SGD(looped, lr=0.01, momentum=0.9, weight_decay=5e-4, nesterov=True, foreach=False))
    for _ in range(10):
        grads = [[torch.randn(s, generator=g) for s in shapes] for _ in range(3)]
        for r in range(3):
            for p, gr in zip(separate[r], grads[r]):
                p.grad = gr.clone()
            opts[r].step()
        for i, p in enumerate(stacked):
            p.grad = torch.stack([grads[r][i] for r in range(3)])
        opt.step()
        for p, gr in zip(looped, grads[0]):
            p.grad = gr.clone()
        reference.step()
    for i in range(len(shapes)):
        assert torch.equal(separate[0][i], looped[i])
        for r in range(3):
            assert torch.equal(stacked[i][r], separate[r][i])
