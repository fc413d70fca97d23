"""Registry-wide properties: every registered loss is covered with no test edits, and so are a few
composite losses (weighted sums, ``tests.loss_cases.COMPOSITES``) under the same contract."""

from __future__ import annotations

import math

import pytest
import torch

from losscli.errors import UsageError
from losscli.losses import LOSSES, LossInputError, build_loss
from losscli.losses.meta import INPUT_KINDS, TARGET_KINDS
from tests.loss_cases import COMPOSITES, info_of, make_context, make_inputs, make_loss

REGISTERED = LOSSES.names()
ALL = REGISTERED + COMPOSITES
N, C = 12, 5


def _inputs(name, dtype=torch.float32, scale=3.0, seed=0, n=N, c=C):
    """Inputs of the loss's declared kind (logits, embeddings, sets; class or regression targets)."""
    return make_inputs(name, n, c, seed=seed, dtype=dtype, scale=scale)


def test_registry_has_the_required_losses():
    required = """ce label_smoothing focal poly1 poly1_focal gce mae rce sce nce nfl ngce nce_rce nce_mae
    nfl_rce taylor_ce comp_sum ldr_kl aldr_kl ldam logit_adjusted balanced_softmax class_balanced squentropy
    square spherical_z logz_penalty harmonic encouraging logitclip logitnorm ovr dice jaccard anyloss ensloss
    mbls acls circle kd bce sigmoid_focal asl asl_single power_law_weighted""".split()
    missing = [n for n in required if n not in LOSSES]
    assert not missing, f"not registered: {missing}"


def test_alias_resolves():
    assert LOSSES.canonical("cross_entropy") == "ce"


def test_unknown_loss_suggests():
    with pytest.raises(UsageError, match="Did you mean 'focal'"):
        build_loss("focl")


@pytest.mark.parametrize("name", ALL)
def test_metadata_complete(name):
    info = info_of(name)
    assert info.reference.title and info.reference.year > 1900
    assert info.formula
    d = info.to_dict()
    assert set(d) >= {"name", "family", "params", "reference"}
    assert info.input in INPUT_KINDS and info.target in TARGET_KINDS
    assert d["properties"]["input"] == info.input and d["properties"]["target"] == info.target
    # every loss takes the trainer's epoch-end call (a no-op unless it keeps epoch-level state)
    make_loss(name, C).on_epoch_end(0, 0.5)


@pytest.mark.parametrize("name", ALL)
def test_unknown_param_rejected(name):
    with pytest.raises(UsageError, match="unknown parameter"):
        make_loss(name, C, not_a_param=1.0)


@pytest.mark.parametrize("name", ALL)
def test_shapes_and_reductions(name):
    logits, target = _inputs(name)
    ctx = make_context(name, logits)
    info = info_of(name)
    mean = make_loss(name, C)(logits, target, **ctx)
    assert mean.shape == () and torch.isfinite(mean)
    if info.batch_coupled:
        with pytest.raises(LossInputError):
            make_loss(name, C, reduction="sum")(logits, target, **ctx)
        return
    none = make_loss(name, C, reduction="none")(logits, target, **make_context(name, logits))
    total = make_loss(name, C, reduction="sum")(logits, target, **make_context(name, logits))
    assert none.shape == (N,)
    torch.testing.assert_close(total, none.sum(), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(mean, total / N, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", ALL)
def test_batch_permutation_invariance(name):
    logits, target = _inputs(name, seed=1)
    perm = torch.randperm(N, generator=torch.Generator().manual_seed(3))
    ctx = make_context(name, logits)
    a = make_loss(name, C)(logits, target, **ctx)
    ctx_p = {k: (v[perm] if isinstance(v, torch.Tensor) and v.dim() > 0 else v) for k, v in ctx.items()}
    if "index" in ctx_p:  # per-sample state follows the sample, not its position
        ctx_p["index"] = ctx["index"][perm]
    if not info_of(name).deterministic:
        pytest.skip(f"{name} is random by design")
    b = make_loss(name, C)(logits[perm], target[perm], **ctx_p)
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("magnitude", [1e2, 1e4])
def test_finite_at_extreme_logits_float32(name, magnitude):
    logits, target = _inputs(name, seed=2)
    logits = (logits.sign() * magnitude).float().requires_grad_(True)
    loss = make_loss(name, C)(logits, target, **make_context(name, logits.detach()))
    loss.backward()
    assert torch.isfinite(loss), f"{name}: loss {loss} at |z|={magnitude}"
    assert torch.isfinite(logits.grad).all(), f"{name}: non-finite gradient at |z|={magnitude}"


@pytest.mark.parametrize("name", ALL)
def test_finite_in_bfloat16(name):
    logits, target = _inputs(name, seed=4, scale=20.0)
    logits = logits.bfloat16().requires_grad_(True)
    loss = make_loss(name, C)(logits, target, **make_context(name, logits.detach().float()))
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(logits.grad.float()).all()
    assert logits.grad.dtype == torch.bfloat16


@pytest.mark.parametrize("name", ALL)
def test_gradcheck_float64(name):
    info = info_of(name)
    if not info.exact_gradient:
        pytest.skip(f"{name} defines its gradient with stop-gradients or random derivatives (tested in its own module)")
    logits, target = _inputs(name, dtype=torch.float64, seed=5, scale=1.5, n=6, c=4)
    logits.requires_grad_(True)
    fn = make_loss(name, 4)
    ctx = make_context(name, logits.detach())

    def f(z):
        return fn(z, target, **ctx)

    # Points where a loss has a kink (clamps, max, hinge) are measure-zero at random inputs.
    assert torch.autograd.gradcheck(f, (logits,), eps=1e-6, atol=1e-5, rtol=1e-4), name


@pytest.mark.parametrize("name", ALL)
def test_bounded_losses_stay_within_bound(name):
    info = info_of(name)
    if not info.bounded or info.upper_bound is None:
        pytest.skip("not bounded (or bound not stated)")
    fn = make_loss(name, C, reduction="none") if not info.batch_coupled else make_loss(name, C)
    bound = info.upper_bound(fn.params, C)
    for seed in range(5):
        logits, target = _inputs(name, seed=seed, scale=30.0)
        value = fn(logits, target, **make_context(name, logits))
        assert (value <= bound * (1 + 1e-5) + 1e-6).all(), f"{name}: {value.max()} > bound {bound}"


@pytest.mark.parametrize("name", ALL)
def test_symmetric_losses_sum_is_constant(name):
    info = info_of(name)
    if not info.symmetric:
        pytest.skip("not symmetric")
    fn = make_loss(name, C, reduction="none")
    totals = []
    for seed in range(4):
        logits, _ = _inputs(name, seed=seed, n=3)
        s = sum(fn(logits, torch.full((3,), k), **make_context(name, logits)) for k in range(C))  # class targets
        totals.append(s)
    totals = torch.cat(totals)
    assert (totals.max() - totals.min()).abs() < 1e-4 * max(1.0, totals.abs().max().item()), totals


@pytest.mark.parametrize("name", ALL)
def test_wrong_shapes_raise_clear_errors(name):
    fn = make_loss(name, C)
    logits, target = _inputs(name)
    with pytest.raises(LossInputError):
        fn(logits[0], target)
    with pytest.raises(LossInputError):
        fn(logits, target[:-1])


def test_ignore_index_and_weight_follow_torch():
    logits, target = _inputs("ce", seed=9)
    target[2] = -100
    w = torch.rand(C) + 0.5
    ours = build_loss("ce", weight=w)(logits, target)
    ref = torch.nn.functional.cross_entropy(logits, target, weight=w)
    torch.testing.assert_close(ours, ref)


def test_out_of_range_param_rejected():
    with pytest.raises(UsageError, match="epsilon"):
        build_loss("label_smoothing", epsilon=1.5)


@pytest.mark.parametrize("name", [n for n in ALL if info_of(n).multilabel])
def test_multilabel_losses_respect_ignore_index_with_class_targets(name):
    logits, target = _inputs(name, seed=11)
    target[3] = -100
    per = make_loss(name, C, reduction="none")(logits, target)
    assert per[3] == 0
    mean = make_loss(name, C)(logits, target)
    keep = torch.arange(N) != 3
    torch.testing.assert_close(mean, per[keep].mean())


def test_list_losses_filters_by_family_and_properties():
    from losscli.losses import list_losses, loss_info

    robust = list_losses(family="noise-robust")
    assert "gce" in robust and "ce" not in robust
    multilabel = list_losses(multilabel=True)
    assert set(multilabel) == {"bce", "sigmoid_focal", "asl"}
    assert all(loss_info(n).needs_class_counts for n in list_losses(needs_class_counts=True))
    assert loss_info("cross_entropy").name == "ce"
