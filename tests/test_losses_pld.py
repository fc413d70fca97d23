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
