"""spectral_decoupling: CE plus (lam/2) sum_c (z_c - gamma)^2 (or DomainBed's lam * mean_c)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from losscli.errors import UsageError
from losscli.losses import build_loss


def sd_loop(z, y, lam, gamma, norm):
    total = 0.0
    for row, yt in zip(z.tolist(), y.tolist()):
        m = max(row)
        ce = m + math.log(sum(math.exp(v - m) for v in row)) - row[yt]
        sq = sum((v - gamma) ** 2 for v in row)
        total += ce + (0.5 * lam * sq if norm == "paper" else lam * sq / len(row))
    return total / len(y)


@pytest.mark.parametrize("lam, gamma, norm", [(0.1, 0.0, "paper"), (0.5, 1.5, "paper"), (0.1, 0.0, "mean"), (2.0, -0.7, "mean")])
def test_matches_loop(lam, gamma, norm):
    g = torch.Generator().manual_seed(3)
    z = torch.randn(9, 6, generator=g, dtype=torch.float64) * 2
    y = torch.randint(0, 6, (9,), generator=g)
    got = build_loss("spectral_decoupling", lam=lam, gamma=gamma, norm=norm)(z, y).item()
    assert got == pytest.approx(sd_loop(z, y, lam, gamma, norm), rel=1e-12)


def test_mean_norm_is_domainbed_and_paper_rescaled():
    g = torch.Generator().manual_seed(4)
    z = torch.randn(8, 5, generator=g, dtype=torch.float64)
    y = torch.randint(0, 5, (8,), generator=g)
    sd_reg = 0.1
    domainbed = F.cross_entropy(z, y) + sd_reg * (z**2).mean()  # DomainBed's SD ("Equation 25")
    ours = build_loss("spectral_decoupling", lam=sd_reg, norm="mean")(z, y)
    torch.testing.assert_close(ours, domainbed)
    paper = build_loss("spectral_decoupling", lam=2 * sd_reg / 5, norm="paper")(z, y)  # lam_paper = 2 sd_reg / C
    torch.testing.assert_close(paper, domainbed)


def test_gradient_is_ce_plus_lam_times_shifted_logits():
    z = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    y = torch.tensor([0, 1, 2, 0])
    build_loss("spectral_decoupling", lam=0.3, gamma=0.5, reduction="sum")(z, y).backward()
    expected = torch.softmax(z.detach(), 1) - F.one_hot(y, 3) + 0.3 * (z.detach() - 0.5)
    torch.testing.assert_close(z.grad, expected)


def test_lam_zero_is_ce_soft_targets_and_weights():
    g = torch.Generator().manual_seed(5)
    z = torch.randn(6, 4, generator=g, dtype=torch.float64)
    y = torch.randint(0, 4, (6,), generator=g)
    torch.testing.assert_close(build_loss("spectral_decoupling", lam=0.0)(z, y), F.cross_entropy(z, y))
    q = torch.softmax(torch.randn(6, 4, generator=g, dtype=torch.float64), 1)
    pen = 0.05 * (z**2).sum(1)
    torch.testing.assert_close(build_loss("spectral_decoupling")(z, q), (-(q * F.log_softmax(z, 1)).sum(1) + pen).mean())
    w = torch.tensor([1.0, 2.0, 0.5, 1.5], dtype=torch.float64)
    per = F.cross_entropy(z, y, reduction="none") + pen
    torch.testing.assert_close(build_loss("spectral_decoupling", weight=w)(z, y), (w[y] * per).sum() / w[y].sum())


def test_bad_norm_rejected():
    with pytest.raises(UsageError, match="norm"):
        build_loss("spectral_decoupling", norm="sum")
