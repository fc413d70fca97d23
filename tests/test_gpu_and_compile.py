"""GPU paths (skipped without CUDA) and the one torch.compile test (opt-in: `pytest -m compile`)."""

from __future__ import annotations

import pytest
import torch

from losscli.config import build_config
from losscli.engine.runspec import RunSpec

SYNTH = {"name": "synthetic", "options": {"classes": 4, "dim": 8, "n_train": 512, "n_test": 128}}


def _spec(loss="ce", seed=0, **top):
    cfg = build_config(None, {"dataset": SYNTH, "model": {"name": "mlp"},
                              "train": {"epochs": 2, "batch_size": 64, "lr": 0.01}, **top})
    from losscli.data.settings import parse_imbalance_spec, parse_noise_spec
    from losscli.losses import resolve_loss

    return RunSpec.from_config(cfg, resolve_loss(loss, for_engine=True), seed=seed, noise=parse_noise_spec("none"),
                               imbalance=parse_imbalance_spec("none"))


@pytest.mark.compile
def test_compiled_training_matches_eager_on_cpu(tmp_path):
    from losscli.engine.trainer import train_run

    eager = train_run(_spec(device="cpu", compile=False), tmp_path / "eager", progress=False)
    compiled = train_run(_spec(device="cpu", compile=True), tmp_path / "compiled", progress=False)
    assert compiled["env"]["compiled"] is True
    assert compiled["timing"]["compile_seconds"] > 0
    for a, b in zip(eager["history"], compiled["history"]):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-3)


@pytest.mark.gpu
def test_cuda_training_with_compile_and_bf16(tmp_path):
    from losscli.engine.trainer import train_run

    report = train_run(_spec("focal", device="cuda"), tmp_path / "run", progress=False)
    assert report["status"] == "ok"
    assert report["env"]["compiled"] is True and report["env"]["dtype"] == "bfloat16-autocast"
    assert report["metrics"]["test"]["accuracy"] > 0.5


@pytest.mark.gpu
def test_cuda_batched_equals_separate_in_fp32(tmp_path):
    from losscli.engine.batched import train_group
    from losscli.engine.trainer import train_run

    specs = [_spec(l, seed=s, device="cuda", compile=False, precision="fp32") for s, l in enumerate(["ce", "gce", "poly1"])]
    batched = train_group(specs, [tmp_path / f"b{i}" for i in range(3)])
    for i, spec in enumerate(specs):
        single = train_run(spec, tmp_path / f"s{i}", progress=False)
        for hb, hs in zip(batched[i]["history"], single["history"]):
            assert hb["train_loss"] == pytest.approx(hs["train_loss"], rel=1e-3, abs=1e-5)


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_every_loss_runs_on_cuda(dtype):
    from losscli.losses import LOSSES
    from tests.loss_cases import make_context, make_inputs, make_loss

    for name in LOSSES.names():
        x, target = make_inputs(name, 64, 10, scale=5.0)  # the loss's input kind (logits, embeddings, sets)
        logits = x.cuda().to(dtype).requires_grad_(True)
        target = target.cuda()
        fn = make_loss(name, 10).cuda()
        loss = fn(logits, target, **make_context(name, logits.detach().float()))
        loss.backward()
        assert torch.isfinite(loss), name
        assert torch.isfinite(logits.grad.float()).all(), name


@pytest.mark.gpu
def test_every_loss_matches_cpu_on_cuda_in_float64():
    """Fused kernels and custom autograd nodes give the same values and gradients on both devices."""
    from losscli.losses import LOSSES
    from tests.loss_cases import make_context, make_inputs, make_loss

    for name in LOSSES.names():
        if not LOSSES.get(name).info.deterministic:
            continue
        base, target = make_inputs(name, 32, 6, dtype=torch.float64)
        results = []
        for device in ("cpu", "cuda"):
            logits = base.clone().to(device).requires_grad_(True)
            fn = make_loss(name, 6).to(device)
            loss = fn(logits, target.to(device), **make_context(name, logits.detach()))
            loss.backward()
            results.append((loss.detach().cpu(), logits.grad.cpu()))
        torch.testing.assert_close(results[0][0], results[1][0], rtol=1e-9, atol=1e-9, msg=name)
        torch.testing.assert_close(results[0][1], results[1][1], rtol=1e-8, atol=1e-9, msg=name)


@pytest.mark.gpu
@pytest.mark.compile
def test_compiled_losses_match_eager_on_cuda():
    """torch.compile of every loss (custom autograd nodes included) gives eager's value and gradient."""
    from losscli.losses import LOSSES
    from tests.loss_cases import make_context, make_inputs, make_loss

    failures = []
    for name in LOSSES.names():
        if not LOSSES.get(name).info.deterministic:
            continue
        torch._dynamo.reset()
        base, target = make_inputs(name, 64, 12, seed=1)
        base, target = base.cuda(), target.cuda()
        out = []
        for compiled in (False, True):
            fn = make_loss(name, 12).cuda()
            call = torch.compile(fn) if compiled else fn
            logits = base.clone().requires_grad_(True)
            loss = call(logits, target, **make_context(name, logits.detach()))
            loss.backward()
            out.append((loss.detach(), logits.grad))
        try:
            torch.testing.assert_close(out[0][0], out[1][0], rtol=1e-4, atol=1e-5)
            torch.testing.assert_close(out[0][1], out[1][1], rtol=1e-3, atol=1e-5)
        except AssertionError as exc:
            failures.append(f"{name}: {str(exc).splitlines()[0]}")
    assert not failures, failures
