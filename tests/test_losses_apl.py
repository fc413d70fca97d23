"""Active-Passive family: independent per-sample references, golden values, identities."""

from __future__ import annotations

import math

import pytest
import torch

from losscli.losses import LOSSES, build_loss

Z = [[1.5, -0.3, 0.2, 2.1], [0.0, 3.0, -1.0, 0.5], [-2.0, 0.4, 1.1, 0.3]]
Y = [3, 0, 2]
A = -math.log(1e-4)

GOLDEN = {  # LOSSES.md, official APL code, reduction mean
    "gce": 0.764729,
    "mae": 0.631835,
    "rce": 5.819412,
    "nce": 0.162085,
    "nfl": 0.148129,
    "ngce": 0.199320,
    "nce_rce": 5.981497,
    "sce": 5.966420,
}


# ------------------------------------------------------------------ plain-python references
def softmax(row):
    m = max(row)
    e = [math.exp(v - m) for v in row]
    s = sum(e)
    return [v / s for v in e]


def ref(name, row, y, **p):
    """Per-sample value from the formulas of LOSSES.md §5-§6, one row at a time."""
    prob = softmax(row)
    logp = [math.log(v) for v in prob]
    c = len(row)
    if name == "gce":
        q = p.get("q", 0.7)
        return (1 - max(prob[y], 1e-7) ** q) / q
    if name == "mae":
        return p.get("scale", 1.0) * (1 - prob[y])
    if name == "rce":
        onehot = [1.0 if k == y else 0.0 for k in range(c)]
        return p.get("scale", 1.0) * -sum(max(prob[k], 1e-7) * math.log(max(onehot[k], 1e-4)) for k in range(c))
    if name == "ce":
        return -logp[y]
    if name == "sce":
        return p.get("alpha", 0.1) * ref("ce", row, y) + p.get("beta", 1.0) * ref("rce", row, y)
    if name == "nce":
        return p.get("scale", 1.0) * logp[y] / sum(logp)
    if name == "nfl":
        g = p.get("gamma", 0.5)
        terms = [(1 - prob[k]) ** g * logp[k] for k in range(c)]
        return p.get("scale", 1.0) * terms[y] / sum(terms)
    if name == "ngce":
        q = p.get("q", 0.7)
        pc = [min(max(v, 1e-7), 1.0) for v in prob]
        return p.get("scale", 1.0) * (1 - pc[y] ** q) / (c - sum(v ** q for v in pc))
    if name == "nce_rce":
        return p.get("alpha", 1.0) * ref("nce", row, y) + p.get("beta", 1.0) * ref("rce", row, y)
    if name == "nce_mae":
        return p.get("alpha", 1.0) * ref("nce", row, y) + p.get("beta", 1.0) * ref("mae", row, y)
    if name == "nfl_rce":
        return p.get("alpha", 1.0) * ref("nfl", row, y, gamma=p.get("gamma", 0.5)) + p.get("beta", 1.0) * ref("rce", row, y)
    raise KeyError(name)


NAMES = ["gce", "mae", "rce", "sce", "nce", "nfl", "ngce", "nce_rce", "nce_mae", "nfl_rce"]
PARAMS = {
    "gce": {"q": 0.4},
    "mae": {"scale": 2.0},
    "rce": {"scale": 0.5},
    "sce": {"alpha": 6.0, "beta": 0.1},
    "nce": {"scale": 3.0},
    "nfl": {"gamma": 2.0, "scale": 10.0},
    "ngce": {"q": 0.1, "scale": 2.0},
    "nce_rce": {"alpha": 10.0, "beta": 0.1},
    "nce_mae": {"alpha": 10.0, "beta": 1.0},
    "nfl_rce": {"alpha": 10.0, "beta": 0.1, "gamma": 1.5},
}


def _random(n=7, c=5, seed=0, scale=3.0):
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, c, generator=g, dtype=torch.float64) * scale
    y = torch.randint(0, c, (n,), generator=g)
    return z, y


@pytest.mark.parametrize("name", sorted(GOLDEN))
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_golden_values(name, dtype):
    value = build_loss(name)(torch.tensor(Z, dtype=dtype), torch.tensor(Y))
    assert value.item() == pytest.approx(GOLDEN[name], abs=2e-6)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("use_params", [False, True])
def test_matches_per_sample_reference(name, use_params):
    params = PARAMS[name] if use_params else {}
    z, y = _random(seed=1 + use_params)
    ours = build_loss(name, reduction="none", **params)(z, y)
    expected = [ref(name, z[i].tolist(), int(y[i]), **params) for i in range(len(y))]
    torch.testing.assert_close(ours, torch.tensor(expected, dtype=torch.float64), rtol=1e-10, atol=1e-12)


def test_defaults_are_part_a():
    want = {
        "gce": {"q": 0.7}, "mae": {"scale": 1.0}, "rce": {"scale": 1.0}, "sce": {"alpha": 0.1, "beta": 1.0},
        "nce": {"scale": 1.0}, "nfl": {"gamma": 0.5, "scale": 1.0}, "ngce": {"q": 0.7, "scale": 1.0},
        "nce_rce": {"alpha": 1.0, "beta": 1.0}, "nce_mae": {"alpha": 1.0, "beta": 1.0},
        "nfl_rce": {"alpha": 1.0, "beta": 1.0, "gamma": 0.5},
    }
    for name, defaults in want.items():
        assert LOSSES.get(name).info.defaults() == defaults, name


@pytest.mark.parametrize(
    "name,total",
    [("mae", lambda c: c - 1), ("rce", lambda c: A * (c - 1)), ("nce", lambda c: 1.0), ("nfl", lambda c: 1.0),
     ("ngce", lambda c: 1.0), ("nce_mae", lambda c: 1.0 + (c - 1))],
)
def test_symmetric_sum_over_labels(name, total):
    z, _ = _random(n=4, c=6, seed=3, scale=2.0)
    fn = build_loss(name, reduction="none")
    s = sum(fn(z, torch.full((4,), k)) for k in range(6))
    torch.testing.assert_close(s, torch.full((4,), float(total(6)), dtype=torch.float64), rtol=1e-6, atol=1e-6)
    assert LOSSES.get(name).info.symmetric


def test_sce_is_not_symmetric():
    assert not LOSSES.get("sce").info.symmetric and not LOSSES.get("gce").info.symmetric


def test_gce_bounded_by_one_over_q_and_limits():
    z, y = _random(n=50, c=4, seed=4, scale=40.0)  # many p_y ~ 0: the clamp is active
    for q in (0.1, 0.7, 1.0):
        v = build_loss("gce", q=q, reduction="none")(z, y)
        assert (v <= 1.0 / q).all() and (v >= 0).all()
        assert LOSSES.get("gce").info.upper_bound({"q": q}, 4) == pytest.approx(1.0 / q)
    z, y = _random(seed=5)
    # q = 1 is 1 - p_y (= mae); q -> 0 is CE
    torch.testing.assert_close(build_loss("gce", q=1.0)(z, y), build_loss("mae")(z, y))
    ce = torch.nn.functional.cross_entropy(z, y)
    assert build_loss("gce", q=1e-6)(z, y).item() == pytest.approx(ce.item(), rel=1e-4)


def test_gce_clamp_at_1e_minus_7():
    # p_y = e^-40 << 1e-7: APL clamps, so the value is (1 - 1e-7^q)/q and the gradient is 0
    z = torch.tensor([[40.0, 0.0]], dtype=torch.float64, requires_grad=True)
    v = build_loss("gce")(z, torch.tensor([1]))
    assert v.item() == pytest.approx((1 - 1e-7 ** 0.7) / 0.7, rel=1e-12)
    v.backward()
    assert torch.all(z.grad == 0)


def test_rce_uses_the_1e4_clamp_constant():
    # uniform p: RCE = A * (C-1)/C
    z = torch.zeros(2, 5, dtype=torch.float64)
    v = build_loss("rce", reduction="none")(z, torch.tensor([0, 3]))
    torch.testing.assert_close(v, torch.full((2,), A * 4 / 5, dtype=torch.float64))


def _nfl_apl_detached(z, y, gamma):
    """APL's NFL with its stop-gradients (for contrast only)."""
    logp = torch.log_softmax(z, 1)
    p = logp.detach().exp()
    num = (1 - p.gather(1, y[:, None]).squeeze(1)) ** gamma * logp.gather(1, y[:, None]).squeeze(1)
    den = ((1 - p) ** gamma * logp).sum(1)
    return (num / den).mean()


def test_nfl_has_the_true_gradient_not_apls_detached_one():
    z, y = _random(n=5, c=4, seed=6, scale=1.5)
    z.requires_grad_(True)
    fn = build_loss("nfl", gamma=0.5)
    assert torch.autograd.gradcheck(lambda t: fn(t, y), (z,), eps=1e-6, atol=1e-7, rtol=1e-5)
    (ours,) = torch.autograd.grad(fn(z, y), z)
    (apl,) = torch.autograd.grad(_nfl_apl_detached(z, y, 0.5), z)
    torch.testing.assert_close(fn(z, y), _nfl_apl_detached(z, y, 0.5))  # same value
    assert (ours - apl).abs().max() > 1e-3  # different gradient


@pytest.mark.parametrize("name", NAMES)
def test_confident_logits_keep_precision_and_finite_grads(name):
    # p_y = 1 - ~1e-30 in float32: values stay accurate, gradients finite (fractional powers at 0)
    z = torch.tensor([[70.0, 0.0, 1.0, -3.0], [0.0, 80.0, -80.0, 2.0]], requires_grad=True)
    y = torch.tensor([0, 1])
    v = build_loss(name, reduction="none")(z, y)
    expected = torch.tensor([ref(name, z[i].tolist(), int(y[i])) for i in range(2)], dtype=torch.float32)
    torch.testing.assert_close(v, expected, rtol=1e-5, atol=1e-6)
    v.sum().backward()
    assert torch.isfinite(z.grad).all()


def test_weight_is_torch_weighted_mean():
    z, y = _random(seed=7)
    w = torch.tensor([1.0, 2.0, 0.5, 3.0, 1.5], dtype=torch.float64)
    per = build_loss("nce_rce", reduction="none")(z, y)
    ours = build_loss("nce_rce", weight=w)(z, y)
    torch.testing.assert_close(ours, (w[y] * per).sum() / w[y].sum())


def test_upper_bounds_hold_for_combos():
    z, y = _random(n=64, c=5, seed=8, scale=30.0)
    for name in ("nce_rce", "nfl_rce", "nce_mae", "rce", "nfl", "ngce"):
        info = LOSSES.get(name).info
        fn = build_loss(name, reduction="none", **PARAMS[name])
        bound = info.upper_bound(fn.params, 5)
        assert (fn(z, y) <= bound + 1e-9).all(), name
