"""LDR-KL and ALDR-KL: explicit loops over samples, golden value, per-sample lambda state."""

from __future__ import annotations

import math

import pytest
import torch

from losscli.losses import LOSSES, LossInputError, build_loss

Z = [[1.5, -0.3, 0.2, 2.1], [0.0, 3.0, -1.0, 0.5], [-2.0, 0.4, 1.1, 0.3]]
Y = [3, 0, 2]


def softplus(x):
    return max(x, 0.0) + math.log1p(math.exp(-abs(x)))


def normalised(row):
    s = [softplus(v) for v in row]
    m = sum(s) / len(s)
    return [v / m for v in s]


def ldr_ref(row, y, margin=0.1, lam=10.0):
    zt = normalised(row)
    c = len(row)
    d = [(margin if k != y else 0.0) + zt[k] - zt[y] for k in range(c)]
    return lam * math.log(sum(math.exp(v / lam) for v in d) / c)


def aldr_ref(row, y, lam_prev, margin=0.1, lam=10.0, alpha=2.0):
    """Returns (loss, lam_new) following ALDRLoss_V1 with the softplus normalisation."""
    zt = normalised(row)
    c = len(row)
    e = [math.exp(v / lam_prev) for v in zt]
    q = [v / sum(e) + 1e-5 for v in e]
    q = [v / sum(q) for v in q]
    kl = sum(v * math.log(c * v) for v in q)
    lam_new = lam - lam * kl / (alpha * math.log(c))
    value = ldr_ref(row, y, margin, lam_new) - alpha * math.log(c) / (2 * lam) * (lam_new - lam) ** 2
    return value, lam_new


def ldr_autograd_ref(z, y, margin, lam):
    """Plain-autograd LDR-KL (float64, no underflow at these logits): ``lam`` float or [N]."""
    zt = z.shape[1] * torch.softmax(torch.log(torch.nn.functional.softplus(z)), dim=1)
    idx = y.unsqueeze(1)
    d = (zt - zt.gather(1, idx) + margin).scatter(1, idx, 0.0)
    lam = lam.unsqueeze(1) if isinstance(lam, torch.Tensor) else lam
    return (lam * (torch.logsumexp(d / lam, dim=1, keepdim=True) - math.log(z.shape[1]))).squeeze(1)


def _random(n=8, c=5, seed=0, scale=3.0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, c, generator=g, dtype=torch.float64) * scale, torch.randint(0, c, (n,), generator=g)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_ldr_kl_golden(dtype):
    v = build_loss("ldr_kl")(torch.tensor(Z, dtype=dtype), torch.tensor(Y))
    assert v.item() == pytest.approx(-0.212199, abs=2e-6)
    assert LOSSES.get("ldr_kl").info.can_be_negative


@pytest.mark.parametrize("params", [{}, {"margin": 2.0, "lam": 1.0}, {"margin": 0.0, "lam": 0.1}])
def test_ldr_kl_matches_loop_reference(params):
    z, y = _random(seed=1)
    ours = build_loss("ldr_kl", reduction="none", **params)(z, y)
    expected = [ldr_ref(z[i].tolist(), int(y[i]), **params) for i in range(len(y))]
    torch.testing.assert_close(ours, torch.tensor(expected, dtype=torch.float64), rtol=1e-10, atol=1e-12)


def test_ldr_kl_underflowing_softplus_stays_exact():
    # every softplus(z) < 1e-40 in float32: the naive s / mean(s) is 0/0 or loses all precision
    z = torch.tensor([[-100.0, -101.0, -99.0, -103.0], [-1e4, -1e4 + 1, 5.0, -2.0]], requires_grad=True)
    y = torch.tensor([2, 0])
    v = build_loss("ldr_kl", reduction="none")(z, y)
    # float64 reference: exp(-100) is representable there
    expected = [ldr_ref([-100.0, -101.0, -99.0, -103.0], 2), ldr_ref([-1e4, -1e4 + 1, 5.0, -2.0], 0)]
    torch.testing.assert_close(v, torch.tensor(expected, dtype=torch.float32), rtol=1e-5, atol=1e-6)
    v.sum().backward()
    assert torch.isfinite(z.grad).all() and z.grad[0].abs().sum() > 0


@pytest.mark.parametrize("name", ["ldr_kl", "aldr_kl"])
def test_gradient_at_a_dominant_softplus_is_exact_in_float32(name):
    """One logit far above the rest (its softplus > 7/8 of the row's sum): the dominant entry's gradient is a
    small difference of two nearly equal terms, which float32 lost (1.5% of it for linspace(-110, 0)); it is
    computed from the differences now. Float32 against float64 within float32 rounding of the row, and the
    float64 gradient against plain autograd."""
    z = torch.stack([torch.linspace(b, top, 10, dtype=torch.float64) for b, top in
                     [(-110.0, 0.0), (-90.0, 5.0), (-60.0, -3.0), (-20.0, 0.0)]] + [torch.randn(10, dtype=torch.float64)])
    y = torch.tensor([5, 9, 0, 2, 3])
    index = torch.arange(5)
    grads = {}
    for dtype in (torch.float64, torch.float32):
        zz = z.to(dtype).requires_grad_(True)
        fn = build_loss(name, reduction="none")
        v = fn(zz, y, **({"index": index} if name == "aldr_kl" else {}))
        grads[dtype] = torch.autograd.grad(v.sum(), zz)[0].double()
    err = (grads[torch.float32] - grads[torch.float64]).abs().amax(1) / grads[torch.float64].abs().amax(1)
    assert err.max() < 3e-6, err
    if name == "ldr_kl":
        zr = z.clone().requires_grad_(True)
        (ref,) = torch.autograd.grad(ldr_autograd_ref(zr, y, 0.1, 10.0).sum(), zr)
        torch.testing.assert_close(grads[torch.float64], ref, rtol=1e-9, atol=1e-15)


def test_ldr_kl_bounds():
    z, y = _random(n=64, c=4, seed=2, scale=50.0)
    fn = build_loss("ldr_kl", reduction="none")
    v = fn(z, y)
    assert (v <= LOSSES.get("ldr_kl").info.upper_bound(fn.params, 4)).all()
    # Jensen: l >= mean_k d_k, and it is negative for confident correct rows
    confident = torch.tensor([[20.0, -5.0, -5.0, -5.0]])
    assert fn(confident, torch.tensor([0])).item() < 0


def test_aldr_first_visit_then_state():
    z, y = _random(n=6, c=5, seed=3)
    fn = build_loss("aldr_kl", reduction="none")
    ids = torch.tensor([10, 3, 7, 0, 25, 4])
    first = fn(z, y, index=ids)
    exp_first, lams = zip(*[aldr_ref(z[i].tolist(), int(y[i]), 10.0) for i in range(6)])
    torch.testing.assert_close(first, torch.tensor(exp_first, dtype=torch.float64), rtol=1e-8, atol=1e-10)
    # second visit, new logits, permuted: each sample uses its own stored lambda
    z2, _ = _random(n=6, c=5, seed=4)
    perm = torch.tensor([5, 2, 0, 4, 1, 3])
    second = fn(z2[perm], y[perm], index=ids[perm])
    exp_second = [aldr_ref(z2[j].tolist(), int(y[j]), lams[j])[0] for j in perm.tolist()]
    torch.testing.assert_close(second, torch.tensor(exp_second, dtype=torch.float64), rtol=1e-6, atol=1e-8)
    assert fn.lam_state.numel() >= 26 and torch.isnan(fn.lam_state[1])  # never visited


def test_aldr_lambda_range_and_eval_mode_does_not_write():
    z, y = _random(n=32, c=4, seed=5, scale=20.0)
    fn = build_loss("aldr_kl", alpha=2.0)
    ids = torch.arange(32)
    fn(z, y, index=ids)
    lam = fn.lam_state[:32]
    assert (lam >= 10.0 * (1 - 1 / 2.0) - 1e-5).all() and (lam <= 10.0 + 1e-6).all()
    before = fn.lam_state.clone()
    fn.eval()
    fn(z * 0.1, y, index=ids)
    torch.testing.assert_close(fn.lam_state, before, equal_nan=True)


def test_aldr_lambda_is_detached():
    # autograd gradient = gradient of the LDR term with the (detached) lambda_i held fixed
    z, y = _random(n=5, c=4, seed=6, scale=1.5)
    z.requires_grad_(True)
    fn = build_loss("aldr_kl")
    loss = fn(z, y, index=torch.arange(5))
    (g,) = torch.autograd.grad(loss, z)
    lams = fn.lam_state[:5].double()
    fixed = ldr_autograd_ref(z, y, 0.1, lams).mean()
    (g_ref,) = torch.autograd.grad(fixed, z)
    torch.testing.assert_close(g, g_ref, rtol=1e-10, atol=1e-12)


def test_aldr_needs_index_and_checks_it():
    z, y = _random(n=4, c=3)
    fn = build_loss("aldr_kl")
    with pytest.raises(LossInputError, match="index"):
        fn(z, y)
    with pytest.raises(LossInputError):
        fn(z, y, index=torch.arange(3))
    with pytest.raises(LossInputError):
        fn(z, y, index=torch.tensor([0, 1, -2, 3]))
    assert LOSSES.get("aldr_kl").info.needs == ("index",)


def test_aldr_reduces_to_ldr_when_lambda_cannot_move():
    z, y = _random(seed=7)
    a = build_loss("aldr_kl", alpha=1e12)(z, y, index=torch.arange(len(y)))
    torch.testing.assert_close(a, build_loss("ldr_kl")(z, y), rtol=1e-9, atol=1e-9)


def test_aldr_state_round_trips_through_a_checkpoint():
    import torch

    from losscli.losses import build_loss

    trained = build_loss("aldr_kl")
    logits, target = torch.randn(6, 4), torch.tensor([0, 1, 2, 3, 0, 1])
    trained(logits, target, index=torch.arange(10, 16))
    fresh = build_loss("aldr_kl")
    fresh.load_state_dict(trained.state_dict())
    torch.testing.assert_close(fresh.lam_state, trained.lam_state, equal_nan=True)
    torch.testing.assert_close(fresh(logits, target, index=torch.arange(10, 16)),
                               trained(logits, target, index=torch.arange(10, 16)))
