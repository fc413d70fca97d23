"""kd: Hinton distillation with teacher logits from the forward context."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from losscli.losses import LossInputError, build_loss

Z = [[1.5, -0.3, 0.2, 2.1], [0.0, 3.0, -1.0, 0.5], [-2.0, 0.4, 1.1, 0.3]]
Y = [3, 0, 2]
T = [[0.5, 0, 0.1, 1], [0.2, 2, 0, 0], [0, 0, 1, 1]]


def softmax(row):
    m = max(row)
    e = [math.exp(v - m) for v in row]
    return [v / sum(e) for v in e]


def kd_ref(z, y, t, temp, alpha):
    total = 0.0
    for zr, yt, tr in zip(z.tolist(), y.tolist(), t.tolist()):
        q = softmax([v / temp for v in tr])
        s = softmax([v / temp for v in zr])
        kl = sum(qk * (math.log(qk) - math.log(sk)) for qk, sk in zip(q, s))
        ce = -math.log(softmax(zr)[yt])
        total += alpha * temp**2 * kl + (1 - alpha) * ce
    return total / len(y)


def test_golden_distillation_term():
    z, y, t = (torch.tensor(Z, dtype=torch.float64), torch.tensor(Y), torch.tensor(T, dtype=torch.float64))
    assert build_loss("kd", alpha=1.0)(z, y, teacher_logits=t).item() == pytest.approx(0.274788, abs=1e-6)


@pytest.mark.parametrize("temp, alpha", [(4.0, 0.9), (1.0, 0.5), (2.5, 0.0), (10.0, 1.0)])
def test_matches_loop(temp, alpha):
    g = torch.Generator().manual_seed(int(temp * 10))
    z = torch.randn(7, 5, generator=g, dtype=torch.float64) * 3
    t = torch.randn(7, 5, generator=g, dtype=torch.float64) * 3
    y = torch.randint(0, 5, (7,), generator=g)
    got = build_loss("kd", temperature=temp, alpha=alpha)(z, y, teacher_logits=t).item()
    assert got == pytest.approx(kd_ref(z, y, t, temp, alpha), rel=1e-10)


def test_soft_targets_for_the_ce_part_and_teacher_is_a_fixed_target():
    g = torch.Generator().manual_seed(1)
    z = torch.randn(5, 4, generator=g, dtype=torch.float64).requires_grad_(True)
    t = torch.randn(5, 4, generator=g, dtype=torch.float64).requires_grad_(True)
    q = torch.softmax(torch.randn(5, 4, generator=g, dtype=torch.float64), -1)
    fn = build_loss("kd", alpha=0.5)
    got = fn(z, q, teacher_logits=t)
    kd_only = build_loss("kd", alpha=1.0)(z.detach(), torch.zeros(5, dtype=torch.long), teacher_logits=t.detach())
    torch.testing.assert_close(got, 0.5 * kd_only + 0.5 * F.cross_entropy(z.detach(), q))
    got.backward()
    assert z.grad is not None and t.grad is None


def test_kd_is_zero_when_student_equals_teacher():
    z = torch.randn(4, 6, dtype=torch.float64)
    y = torch.randint(0, 6, (4,))
    assert build_loss("kd", alpha=1.0)(z, y, teacher_logits=z.clone()).item() == pytest.approx(0.0, abs=1e-12)


def test_teacher_required_and_shape_checked():
    z = torch.randn(4, 6)
    y = torch.randint(0, 6, (4,))
    with pytest.raises(LossInputError, match="teacher_logits"):
        build_loss("kd")(z, y)
    with pytest.raises(LossInputError, match="teacher_logits"):
        build_loss("kd")(z, y, teacher_logits=torch.randn(4, 5))
