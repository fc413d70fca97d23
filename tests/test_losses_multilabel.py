"""Multi-label losses (bce, sigmoid_focal, asl) and single-label ASL: loops, golden values, identities."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torchvision.ops import sigmoid_focal_loss

from losscli.losses import LOSSES, build_loss
from losscli.losses.fused import sigmoid_terms

Z = [[1.5, -0.3, 0.2, 2.1], [0.0, 3.0, -1.0, 0.5], [-2.0, 0.4, 1.1, 0.3]]
Y = [3, 0, 2]
YML = [[1, 0, 0, 1], [0, 1, 0, 0], [0, 0, 1, 1]]


def sig(x):
    return 1 / (1 + math.exp(-x)) if x >= 0 else math.exp(x) / (1 + math.exp(x))


def _random_ml(n=6, c=5, seed=0, scale=3.0):
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, c, generator=g, dtype=torch.float64) * scale
    t = (torch.rand(n, c, generator=g) < 0.4).double()
    return z, t


# ------------------------------------------------------------------------------ references
def bce_ref(row, t):
    return sum(-(tk * math.log(sig(x)) + (1 - tk) * math.log(sig(-x))) for x, tk in zip(row, t))


def focal_ref(row, t, alpha=0.25, gamma=2.0):
    out = 0.0
    for x, tk in zip(row, t):
        p = sig(x)
        ce = -(tk * math.log(p) + (1 - tk) * math.log(1 - p))
        pt = p * tk + (1 - p) * (1 - tk)
        a = alpha * tk + (1 - alpha) * (1 - tk) if alpha >= 0 else 1.0
        out += a * (1 - pt) ** gamma * ce
    return out


def asl_ref(row, t, gamma_neg=4.0, gamma_pos=0.0, clip=0.05, eps=1e-8):
    out = 0.0
    for x, tk in zip(row, t):
        p = sig(x)
        pm = max(p - clip, 0.0)
        if tk:
            out -= (1 - p) ** gamma_pos * math.log(max(p, eps))
        else:
            out -= pm ** gamma_neg * math.log(max(1 - pm, eps))
    return out


def asl_single_ref(row, y, gamma_pos=0.0, gamma_neg=4.0, epsilon=0.1):
    m = max(row)
    lse = m + math.log(sum(math.exp(v - m) for v in row))
    logp = [v - lse for v in row]
    c = len(row)
    out = 0.0
    for k in range(c):
        p = math.exp(logp[k])
        t = (1 - epsilon) * (k == y) + epsilon / c
        w = (1 - p) ** gamma_pos if k == y else p ** gamma_neg
        out -= t * w * logp[k]
    return out


# ------------------------------------------------------------------------------ golden values
def test_golden_values():
    z = torch.tensor(Z, dtype=torch.float64)
    yml = torch.tensor(YML, dtype=torch.float64)
    assert build_loss("asl", reduction="sum")(z, yml).item() == pytest.approx(1.448269, abs=2e-6)
    assert build_loss("asl_single")(z, torch.tensor(Y)).item() == pytest.approx(1.360661, abs=2e-6)
    # LOSSES.md quotes torchvision's mean over the N*C entries
    total = build_loss("sigmoid_focal", reduction="sum")(z, yml).item()
    assert total / 12 == pytest.approx(0.080391, abs=1e-6)


@pytest.mark.parametrize(
    "name,ref,params",
    [
        ("bce", bce_ref, {}),
        ("sigmoid_focal", focal_ref, {}),
        ("sigmoid_focal", focal_ref, {"alpha": 0.6, "gamma": 0.5}),
        ("sigmoid_focal", focal_ref, {"alpha": -1.0, "gamma": 1.0}),
        ("asl", asl_ref, {}),
        ("asl", asl_ref, {"gamma_neg": 2.0, "gamma_pos": 1.0, "clip": 0.0}),
        ("asl", asl_ref, {"gamma_neg": 0.5, "gamma_pos": 0.3, "clip": 0.2, "eps": 1e-3}),
    ],
)
def test_multilabel_matches_loop_reference(name, ref, params):
    z, t = _random_ml(seed=len(params))
    ours = build_loss(name, reduction="none", **params)(z, t)
    expected = [ref(z[i].tolist(), t[i].tolist(), **params) for i in range(len(t))]
    torch.testing.assert_close(ours, torch.tensor(expected, dtype=torch.float64), rtol=1e-9, atol=1e-12)


def test_bce_sum_equals_torch():
    z, t = _random_ml(seed=3)
    torch.testing.assert_close(
        build_loss("bce", reduction="sum")(z, t), F.binary_cross_entropy_with_logits(z, t, reduction="sum")
    )
    # mean is the per-sample label sum averaged over N
    torch.testing.assert_close(
        build_loss("bce")(z, t), F.binary_cross_entropy_with_logits(z, t, reduction="sum") / z.shape[0]
    )


@pytest.mark.parametrize("alpha,gamma", [(0.25, 2.0), (-1.0, 2.0), (0.5, 1.0)])
def test_sigmoid_focal_equals_torchvision_value_and_gradient(alpha, gamma):
    z, t = _random_ml(seed=4)
    z1 = z.clone().requires_grad_(True)
    z2 = z.clone().requires_grad_(True)
    ours = build_loss("sigmoid_focal", alpha=alpha, gamma=gamma, reduction="sum")(z1, t)
    tv = sigmoid_focal_loss(z2, t, alpha=alpha, gamma=gamma, reduction="sum")
    torch.testing.assert_close(ours, tv)
    ours.backward()
    tv.backward()
    torch.testing.assert_close(z1.grad, z2.grad)  # torchvision does not detach the focal factor either


def test_class_index_targets_are_one_hot_for_multilabel_losses():
    z, _ = _random_ml(seed=5)
    y = torch.tensor([0, 4, 2, 2, 1, 3])
    for name in ("bce", "sigmoid_focal", "asl"):
        fn = build_loss(name, reduction="none")
        torch.testing.assert_close(fn(z, y), fn(z, F.one_hot(y, 5).double()))
        assert LOSSES.get(name).info.multilabel


@pytest.mark.parametrize("spec", [
    "bce", "sigmoid_focal", "sigmoid_focal(alpha=-1)", "sigmoid_focal(gamma=1.5)", "sigmoid_focal(gamma=0)",
    "asl", "asl(gamma_neg=1)", "asl(gamma_neg=2.5)", "asl(clip=0)", "asl(gamma_pos=1)",
])
@pytest.mark.parametrize("scale", [1.0, 40.0, 1e4])
def test_class_index_kernels_equal_the_one_hot_kernels(spec, scale):
    # class indices skip the [N, C] one-hot (the kernels patch the target column): same values and
    # gradients as the 0/1 path to the bit, ignored rows included, at moderate and saturated logits
    g = torch.Generator().manual_seed(int(scale))
    n, c = 37, 11
    z = torch.randn(n, c, generator=g, dtype=torch.float64) * scale
    y = torch.randint(0, c, (n,), generator=g)
    y[::5] = -100
    fn = build_loss(spec, reduction="none")
    z1, z2 = z.clone().requires_grad_(True), z.clone().requires_grad_(True)
    by_index = fn(z1, y)
    by_one_hot = fn(z2, F.one_hot(y.clamp_min(0), c).double()) * (y >= 0)
    by_index.sum().backward()
    by_one_hot.sum().backward()
    assert torch.equal(by_index, by_one_hot)
    torch.testing.assert_close(z1.grad, z2.grad, rtol=1e-15, atol=0.0)
    assert torch.isfinite(z1.grad).all()


def test_asl_gradient_is_not_detached():
    z, t = _random_ml(n=4, c=3, seed=6, scale=1.5)
    z.requires_grad_(True)
    fn = build_loss("asl", gamma_pos=1.0)
    assert torch.autograd.gradcheck(lambda x: fn(x, t), (z,), eps=1e-6, atol=1e-7, rtol=1e-5)


def test_asl_gamma0_clip0_is_bce():
    z, t = _random_ml(seed=7)
    torch.testing.assert_close(
        build_loss("asl", gamma_neg=0.0, gamma_pos=0.0, clip=0.0)(z, t), build_loss("bce")(z, t)
    )


@pytest.mark.parametrize("params", [{}, {"gamma_pos": 1.0, "gamma_neg": 2.0, "epsilon": 0.3}, {"gamma_neg": 0.0}])
def test_asl_single_matches_loop_reference(params):
    g = torch.Generator().manual_seed(8)
    z = torch.randn(7, 5, generator=g, dtype=torch.float64) * 3
    y = torch.randint(0, 5, (7,), generator=g)
    ours = build_loss("asl_single", reduction="none", **params)(z, y)
    expected = [asl_single_ref(z[i].tolist(), int(y[i]), **params) for i in range(7)]
    torch.testing.assert_close(ours, torch.tensor(expected, dtype=torch.float64), rtol=1e-10, atol=1e-12)


def test_asl_single_without_smoothing_and_focusing_is_ce():
    g = torch.Generator().manual_seed(9)
    z = torch.randn(8, 6, generator=g, dtype=torch.float64, requires_grad=True)
    y = torch.randint(0, 6, (8,), generator=g)
    ours = build_loss("asl_single", epsilon=0.0, gamma_pos=0.0)(z, y)
    ce = F.cross_entropy(z, y)
    torch.testing.assert_close(ours, ce)
    torch.testing.assert_close(torch.autograd.grad(ours, z)[0], torch.autograd.grad(ce, z)[0])


@pytest.mark.parametrize("name", ["sigmoid_focal", "asl"])
def test_fractional_focusing_is_finite_at_saturated_logits(name):
    params = {"gamma": 0.5} if name == "sigmoid_focal" else {"gamma_pos": 0.5, "gamma_neg": 0.5, "clip": 0.0}
    z = torch.tensor([[1e4, -1e4, 50.0], [-50.0, 1e4, -1e4]], requires_grad=True)
    t = torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]])
    v = build_loss(name, **params)(z, t)
    v.backward()
    assert torch.isfinite(v) and torch.isfinite(z.grad).all()


# ------------------------------------------------------------------ fused nodes vs the plain expressions
_PLAIN = {
    "bce": lambda z, t, p: F.binary_cross_entropy_with_logits(z, t, reduction="none").sum(dim=1),
    "sigmoid_focal": lambda z, t, p: sigmoid_terms.plain_sigmoid_focal(z, t, p.get("alpha", 0.25), p.get("gamma", 2.0)),
    "asl": lambda z, t, p: sigmoid_terms.plain_asl(z, t, p.get("gamma_neg", 4.0), p.get("gamma_pos", 0.0),
                                                   p.get("clip", 0.05), p.get("eps", 1e-8)),
}


@pytest.mark.parametrize("name,params", [
    ("bce", {}), ("sigmoid_focal", {}), ("sigmoid_focal", {"alpha": -1.0, "gamma": 3.0}),
    ("sigmoid_focal", {"alpha": 0.6, "gamma": 0.5}), ("asl", {}), ("asl", {"gamma_neg": 1.0}),
    ("asl", {"gamma_neg": 2.5}), ("asl", {"gamma_pos": 1.0}), ("asl", {"clip": 0.0}),
])
@pytest.mark.parametrize("soft", [False, True])
def test_fused_nodes_match_the_plain_expression(name, params, soft):
    g = torch.Generator().manual_seed(3)
    z = torch.randn(40, 7, generator=g, dtype=torch.float64) * 5
    z[0] = torch.tensor([30.0, -30.0, 20.0, -25.0, 0.0, 60.0, -60.0], dtype=torch.float64)
    t = torch.rand(40, 7, generator=g, dtype=torch.float64) if soft else (torch.rand(40, 7, generator=g) < 0.3).double()
    t[0] = torch.tensor([1.0, 0.0, 0.0, 1.0, 1.0, 0.0, 1.0], dtype=torch.float64)
    for dtype, rtol, atol in ((torch.float64, 1e-12, 1e-15), (torch.float32, 2e-5, 1e-6)):
        zz = z.to(dtype).requires_grad_(True)
        ours = build_loss(name, reduction="none", **params)(zz, t.to(dtype))
        zr = z.to(dtype).requires_grad_(True)
        ref = _PLAIN[name](zr, t.to(dtype), params)
        torch.testing.assert_close(ours, ref, rtol=rtol, atol=atol)
        w = torch.rand(40, generator=g, dtype=dtype)
        torch.testing.assert_close(torch.autograd.grad(ours, zz, w)[0], torch.autograd.grad(ref, zr, w)[0],
                                   rtol=rtol * 10, atol=atol * 10)


def test_bce_keeps_relative_precision_of_tiny_losses():
    # every label confidently right: each term is softplus(-30) ~ 9.4e-14 (torch's own BCE rounds it to 0)
    z = torch.tensor([[30.0, -30.0, -30.0], [-30.0, -30.0, 30.0]])
    t = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    v = build_loss("bce", reduction="none")(z, t)
    torch.testing.assert_close(v, torch.full((2,), 3 * math.log1p(math.exp(-30.0))), rtol=1e-5, atol=0)
