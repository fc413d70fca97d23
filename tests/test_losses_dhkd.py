"""dhkd: gamma CE on the main head + alpha BinaryKL-Norm on the auxiliary head, via its dual head."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from losscli.losses import LossInputError, build_loss
from losscli.losses.dhkd import binary_kl_norm


def binary_kl_norm_loop(s, t, temp):
    """Catalogue formula: T^2 sum_c [-1/2 log d - 1/2 log(1 - d) - log 2], d = sigmoid((s - t)/T)."""
    out = []
    for srow, trow in zip(s.tolist(), t.tolist()):
        total = 0.0
        for a, b in zip(srow, trow):
            d = 1 / (1 + math.exp(-(a - b) / temp))
            total += -0.5 * math.log(d) - 0.5 * math.log(1 - d) - math.log(2)
        out.append(temp**2 * total)
    return torch.tensor(out, dtype=torch.float64)


def official_binary_kl_norm(s, t, temp, eps=1e-8):
    """The official BinaryKLNorm module (clamped sigmoid, KLDivLoss against 0.5), per sample."""
    d = torch.sigmoid((s - t) / temp).clamp(eps, 1 - eps)
    target = torch.full_like(d, 0.5)
    kl = F.kl_div(torch.log(d), target, reduction="none") + F.kl_div(torch.log(1 - d), 1 - target, reduction="none")
    return temp**2 * kl.sum(1)


def test_binary_kl_norm_against_catalogue_and_official():
    g = torch.Generator().manual_seed(0)
    s = torch.randn(5, 6, generator=g, dtype=torch.float64) * 3
    t = torch.randn(5, 6, generator=g, dtype=torch.float64) * 3
    for temp in (1.0, 2.0, 4.0):
        torch.testing.assert_close(binary_kl_norm(s, t, temp), binary_kl_norm_loop(s, t, temp))
        torch.testing.assert_close(binary_kl_norm(s, t, temp), official_binary_kl_norm(s, t, temp))
    assert binary_kl_norm(s, s, 2.0).abs().max() < 1e-12  # 0 iff student = teacher
    far = binary_kl_norm(torch.tensor([[1e4]]), torch.tensor([[-1e4]]), 2.0)  # no clamp: exact, finite
    assert torch.isfinite(far) and float(far) == pytest.approx(4 * (0.5 * 1e4 - math.log(2)), rel=1e-6)


def test_loss_is_gamma_ce_main_plus_alpha_bkl_aux():
    g = torch.Generator().manual_seed(1)
    out = torch.randn(6, 8, generator=g, dtype=torch.float64)  # [N, 2C], C = 4
    t = torch.randn(6, 4, generator=g, dtype=torch.float64)
    y = torch.randint(0, 4, (6,), generator=g)
    fn = build_loss("dhkd", alpha=0.3, gamma=0.7, temperature=3.0, reduction="none")
    expected = 0.7 * F.cross_entropy(out[:, :4], y, reduction="none") + 0.3 * binary_kl_norm_loop(out[:, 4:], t, 3.0)
    torch.testing.assert_close(fn(out, y, teacher_logits=t), expected)


def test_head_and_prediction_logits_are_the_main_head():
    fn = build_loss("dhkd")
    head = fn.make_head(7, 5)
    x = torch.randn(4, 7)
    out = head(x)
    assert out.shape == (4, 10)
    torch.testing.assert_close(fn.prediction_logits(out), head.fc(x))
    torch.testing.assert_close(out[:, 5:], head.fc2(x))
    nonlinear = build_loss("dhkd", aux_head="nonlinear").make_head(7, 5)
    assert nonlinear(torch.randn(4, 7)).shape == (4, 10)


def test_gradients_split_by_head():
    # CE trains only the main head, BinaryKL-Norm only the auxiliary head
    out = torch.randn(3, 6, dtype=torch.float64, requires_grad=True)
    t = torch.randn(3, 3, dtype=torch.float64)
    y = torch.tensor([0, 2, 1])
    build_loss("dhkd", alpha=0.0)(out, y, teacher_logits=t).backward()
    assert out.grad[:, 3:].abs().max() == 0 and out.grad[:, :3].abs().max() > 0
    out.grad = None
    build_loss("dhkd", gamma=0.0)(out, y, teacher_logits=t).backward()
    assert out.grad[:, :3].abs().max() == 0 and out.grad[:, 3:].abs().max() > 0


def test_shape_checks():
    fn = build_loss("dhkd")
    with pytest.raises(LossInputError, match=r"\[N, 2C\]"):
        fn(torch.randn(3, 5), torch.tensor([0, 1, 2]), teacher_logits=torch.randn(3, 2))
    with pytest.raises(LossInputError, match="teacher_logits"):
        fn(torch.randn(3, 6), torch.tensor([0, 1, 2]), teacher_logits=torch.randn(3, 6))
    with pytest.raises(LossInputError, match="target values"):
        fn(torch.randn(3, 6), torch.tensor([0, 1, 4]), teacher_logits=torch.randn(3, 3))


def test_binary_kl_norm_is_exact_near_zero_and_far_out_in_float32():
    # log cosh(x/2) is ~x^2/8 near 0: the former logsigmoid sum minus log 2 cancelled to ~1e-7 absolute there
    x64 = torch.tensor([[0.0, 1e-6, 3e-4, 0.05, 1.9, 2.1, 7.0, 40.0, 300.0, -3e-4, -300.0]], dtype=torch.float64)
    u = x64.abs() / 2
    exact = torch.where(u < 1, torch.log1p(2 * torch.sinh(u / 2) ** 2), u - math.log(2) + torch.log1p(torch.exp(-2 * u)))
    got = torch.stack([binary_kl_norm(x64[:, i:i + 1].float(), torch.zeros(1, 1), 1.0) for i in range(x64.shape[1])], 1)
    torch.testing.assert_close(got.double(), exact, rtol=3e-6, atol=0)


def test_fused_dhkd_gradcheck_and_row_blocks(monkeypatch):
    from losscli.losses.fused import softmax_core

    g = torch.Generator().manual_seed(8)
    out = (torch.randn(7, 8, generator=g, dtype=torch.float64) * 3).requires_grad_(True)
    t = torch.randn(7, 4, generator=g, dtype=torch.float64) * 3
    t[0, 0] = out[0, 4].item()  # x = 0 exactly
    y = torch.randint(0, 4, (7,), generator=g)
    fn = build_loss("dhkd", temperature=1.5, alpha=0.6, gamma=0.8, reduction="none")
    assert torch.autograd.gradcheck(lambda z: fn(z, y, teacher_logits=t), (out,))
    whole = fn(out, y, teacher_logits=t)
    monkeypatch.setattr(softmax_core, "_BLOCK_ELEMENTS", 2 * 8)
    torch.testing.assert_close(fn(out, y, teacher_logits=t), whole, rtol=1e-14, atol=0)
