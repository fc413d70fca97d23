"""pld: Plackett-Luce distillation, against an explicit loop over the teacher-optimal permutation."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from losscli.losses import LossInputError, build_loss


def lse(values):
    m = max(values)
    return m + math.log(sum(math.exp(v - m) for v in values))


def pld_loop(s, t, y, tau):
    total = 0.0
    for srow, trow, yt in zip(s.tolist(), t.tolist(), y.tolist()):
        others = sorted((k for k in range(len(srow)) if k != yt), key=lambda k: (-trow[k], k))
        perm = [yt] + others
        tq = [v / tau for v in trow]
        z = lse(tq)
        q = [math.exp(v - z) for v in tq]
        total += sum(q[perm[k]] * (lse([srow[j] for j in perm[k:]]) - srow[perm[k]]) for k in range(len(perm)))
    return total / len(y)


@pytest.mark.parametrize("tau", [1.0, 4.0, 0.5])
def test_matches_loop(tau):
    g = torch.Generator().manual_seed(int(tau * 10))
    s = torch.randn(7, 6, generator=g, dtype=torch.float64) * 2
    t = torch.randn(7, 6, generator=g, dtype=torch.float64) * 2
    y = torch.randint(0, 6, (7,), generator=g)
    got = build_loss("pld", temperature=tau)(s, y, teacher_logits=t).item()
    assert got == pytest.approx(pld_loop(s, t, y, tau), rel=1e-12)


def test_one_hot_teacher_is_ce_and_uniform_teacher_is_listmle_over_c():
    g = torch.Generator().manual_seed(1)
    s = torch.randn(5, 4, generator=g, dtype=torch.float64)
    y = torch.randint(0, 4, (5,), generator=g)
    sharp = F.one_hot(y, 4).double() * 1e3  # q = e_y
    torch.testing.assert_close(build_loss("pld")(s, y, teacher_logits=sharp), F.cross_entropy(s, y))
    flat = torch.zeros(5, 4, dtype=torch.float64)  # q uniform; ties: classes by index after the label
    listmle = []
    for row, yt in zip(s.tolist(), y.tolist()):
        perm = [yt] + [k for k in range(4) if k != yt]
        listmle.append(sum(lse([row[j] for j in perm[k:]]) - row[perm[k]] for k in range(4)))
    assert build_loss("pld")(s, y, teacher_logits=flat).item() == pytest.approx(sum(listmle) / 5 / 4, rel=1e-12)


def test_translation_invariant_temperature_on_teacher_only_and_teacher_detached():
    g = torch.Generator().manual_seed(2)
    s = torch.randn(4, 5, generator=g, dtype=torch.float64)
    t = torch.randn(4, 5, generator=g, dtype=torch.float64).requires_grad_(True)
    y = torch.randint(0, 5, (4,), generator=g)
    fn = build_loss("pld", temperature=2.0)
    a = fn(s, y, teacher_logits=t)
    torch.testing.assert_close(fn(s + 7.5, y, teacher_logits=t), a)
    s.requires_grad_(True)
    fn(s, y, teacher_logits=t).backward()
    assert t.grad is None and torch.isfinite(s.grad).all()


def test_extreme_logits_finite_and_teacher_shape_checked():
    s = torch.tensor([[1e4, -1e4, 0.0], [-1e4, 1e4, 0.0]], requires_grad=True)
    t = torch.tensor([[0.0, 1e4, -1e4], [1e4, 0.0, 0.0]])
    loss = build_loss("pld")(s, torch.tensor([2, 0]), teacher_logits=t)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(s.grad).all()
    with pytest.raises(LossInputError, match="teacher_logits"):
        build_loss("pld")(s, torch.tensor([2, 0]), teacher_logits=torch.zeros(2, 4))
    with pytest.raises(LossInputError, match="teacher_logits"):
        build_loss("pld")(s, torch.tensor([2, 0]))


# -- the fast paths (numpy order, _PrefixChoiceLoss, row split) against straightforward torch ---------

def pld_autograd_loop(s, t, y, tau):
    """``[N]`` PLD with torch ops over each row's explicit permutation: differentiable, O(C^2) per row."""
    out = []
    for i in range(s.shape[0]):
        trow, yt = t[i].tolist(), int(y[i])
        perm = [yt] + sorted((k for k in range(len(trow)) if k != yt), key=lambda k: (-trow[k], k))
        q = torch.softmax(t[i] / tau, dim=0)
        out.append(sum(q[perm[k]] * (torch.logsumexp(s[i, perm[k:]], dim=0) - s[i, perm[k]]) for k in range(len(perm))))
    return torch.stack(out)


def values_and_grads(fn, s, *args):
    s = s.clone().requires_grad_(True)
    out = fn(s, *args)
    upstream = torch.linspace(0.5, 1.5, out.shape[0], dtype=torch.float64).to(out.dtype)  # not a plain mean
    (out * upstream).sum().backward()
    return out.detach().double(), s.grad.double()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16, torch.float64])
def test_teacher_order_is_the_stable_order(dtype):
    from losscli.losses.pld import reversed_teacher_order, teacher_optimal_order

    g = torch.Generator().manual_seed(3)
    t = (torch.randn(40, 9, generator=g) * 2).round()  # many ties
    t[0, :4] = torch.tensor([-0.0, 0.0, -0.0, 0.0])  # the two zeros tie
    t[1, 5], t[2, 0], t[2, 7] = float("-inf"), 6e4, -6e4  # (finite in float16)
    t = t.to(dtype)
    y = torch.randint(0, 9, (40,), generator=g)
    expected = [[int(yt)] + sorted((k for k in range(9) if k != yt), key=lambda k: (-float(row[k]), k))
                for row, yt in zip(t.float(), y)]
    assert teacher_optimal_order(t, y).tolist() == expected
    assert torch.equal(reversed_teacher_order(t, y), teacher_optimal_order(t, y).flip(1))


def test_teacher_order_of_nan_and_inf_is_torch_sorts():
    """NaN sorts above +inf (whatever its sign bit), and a +inf teacher logit ties with the label by index."""
    from losscli.losses.pld import teacher_optimal_order

    t = torch.tensor([[0.5, float("nan"), 2.0, -float("nan"), 1.0], [1.0, float("inf"), 0.0, float("inf"), 2.0]])
    y = torch.tensor([4, 2])
    keyed = t.scatter(1, y.unsqueeze(1), float("inf"))
    assert torch.equal(teacher_optimal_order(t, y), torch.sort(keyed, dim=1, descending=True, stable=True).indices)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("spread", ["small", "wide", "mixed"])
def test_fast_paths_match_the_loop_in_values_and_gradients(dtype, spread):
    """small: float32 arithmetic; wide (spread > 60): float64; mixed: rows spread > 600 take logcumsumexp."""
    from losscli.losses.pld import pld_per_sample

    g = torch.Generator().manual_seed(11)
    s = torch.randn(12, 8, generator=g, dtype=torch.float64) * {"small": 3.0, "wide": 40.0, "mixed": 3.0}[spread]
    if spread == "mixed":
        s[::3] *= 400.0  # a few rows spread by ~1e3 (their last-placed logit far below their max)
    t = torch.randn(12, 8, generator=g, dtype=torch.float64) * 2
    y = torch.randint(0, 8, (12,), generator=g)
    s = s.to(dtype).double()  # the same (rounded) inputs for both sides
    ref = values_and_grads(lambda z: pld_autograd_loop(z, t, y, 2.0), s)
    got = values_and_grads(lambda z: pld_per_sample(z, t.to(dtype), y, 2.0), s.to(dtype))
    # float32 logits of magnitude 1e3 (mixed) are themselves rounded by ~1e-4: the reference is
    # computed from the rounded values, but logcumsumexp in float32 rounds at that scale too
    tol = 1e-10 if dtype == torch.float64 else (5e-4 if spread == "mixed" else 2e-6)
    torch.testing.assert_close(got[0], ref[0], rtol=tol, atol=tol * float(ref[0].abs().max()))
    torch.testing.assert_close(got[1], ref[1], rtol=tol, atol=tol * float(ref[1].abs().max()))


def test_prefix_choice_gradient_is_autograds_and_float32_agrees():
    """The closed-form value and gradient against autograd through logcumsumexp (float64), and the float32
    arithmetic against the float64 one."""
    from losscli.losses.pld import prefix_choice

    g = torch.Generator().manual_seed(5)
    r = torch.randn(6, 7, generator=g, dtype=torch.float64) * 4
    w = torch.softmax(torch.randn(6, 7, generator=g, dtype=torch.float64), dim=1)
    leaf = r.clone().requires_grad_(True)
    ref = (w * (torch.logcumsumexp(leaf, dim=1) - leaf)).sum(dim=1)
    (ref_grad,) = torch.autograd.grad(ref.sum(), leaf)
    value, grad = prefix_choice(r, w, torch.float64, True)
    torch.testing.assert_close(value, ref.detach(), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(grad, ref_grad, rtol=1e-12, atol=1e-12)
    value32, grad32 = prefix_choice(r.float(), w.float(), torch.float32, True)
    torch.testing.assert_close(value32.double(), value, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(grad32.double(), grad, rtol=1e-6, atol=1e-6)
    assert prefix_choice(r, w, torch.float64, False)[1] is None


def test_gradcheck_through_the_row_split():
    """Rows spread beyond float64's bound (logcumsumexp) and ordinary rows in one batch, float64."""
    from losscli.losses.pld import pld_per_sample

    g = torch.Generator().manual_seed(6)
    s = torch.randn(5, 6, generator=g, dtype=torch.float64)
    s[1] *= 1e3
    s[3, :] = torch.tensor([-900.0, 0.0, 1.0, 2.0, 3.0, 4.0], dtype=torch.float64)
    t = torch.randn(5, 6, generator=g, dtype=torch.float64)
    y = torch.tensor([0, 1, 2, 3, 4])
    assert torch.autograd.gradcheck(lambda z: pld_per_sample(z, t, y, 1.0), (s.requires_grad_(True),))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float64])
def test_magnitude_1e4_finite_in_every_path(dtype):
    g = torch.Generator().manual_seed(7)
    s = (torch.randn(16, 10, generator=g) * 1e4)
    s[:4] = torch.randn(4, 10, generator=g)  # ordinary rows next to extreme ones
    s = s.to(dtype).requires_grad_(True)
    t = (torch.randn(16, 10, generator=g) * 1e4).to(dtype)
    y = torch.randint(0, 10, (16,), generator=g)
    loss = build_loss("pld")(s, y, teacher_logits=t)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(s.grad.float()).all() and s.grad.dtype == dtype
    if dtype == torch.float64:
        ref = pld_autograd_loop(s.detach().requires_grad_(True), t, y, 1.0)
        torch.testing.assert_close(loss.detach(), ref.mean().detach(), rtol=1e-12, atol=0)
