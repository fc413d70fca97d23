"""mbls and acls: golden values on 5z, loop references, detach semantics of ACLS."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from losscli.losses import build_loss

Z = [[1.5, -0.3, 0.2, 2.1], [0.0, 3.0, -1.0, 0.5], [-2.0, 0.4, 1.1, 0.3]]
Y = [3, 0, 2]


def rand(n=8, c=5, seed=0, scale=6.0):
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, c, generator=g, dtype=torch.float64) * scale
    return z, torch.randint(0, c, (n,), generator=g)


def ce(row, t):
    m = max(row)
    return m + math.log(sum(math.exp(v - m) for v in row)) - row[t]


def mbls_batch_ref(z, y, margin, lam):
    """Official form: mean CE + lam * mean over all N*C entries of [max - z - m]_+."""
    rows = z.tolist()
    penalty = sum(max(max(r) - v - margin, 0.0) for r in rows for v in r) / (len(rows) * len(rows[0]))
    return sum(ce(r, t) for r, t in zip(rows, y.tolist())) / len(rows) + lam * penalty


def acls_batch_ref(z, y, lam_pos, lam_neg, alpha, margin):
    rows = z.tolist()
    n, c = len(rows), len(rows[0])
    pos = neg = 0.0
    for r in rows:
        m = max(r)
        for v in r:
            if v == m:
                pos += max(v - margin, 0.0) ** 2
            else:
                neg += max(m - v - margin, 0.0) ** 2
    reg = lam_pos * pos / n + lam_neg * neg / (n * (c - 1))
    return sum(ce(r, t) for r, t in zip(rows, y.tolist())) / n + alpha * reg


def test_goldens_on_5z():
    z, y = 5 * torch.tensor(Z, dtype=torch.float64), torch.tensor(Y)
    assert build_loss("mbls")(z, y).item() == pytest.approx(5.240347, abs=1e-6)
    assert build_loss("acls")(z, y).item() == pytest.approx(6.057569, abs=1e-6)


@pytest.mark.parametrize("margin, lam", [(10.0, 0.1), (2.0, 0.5), (0.0, 1.0)])
def test_mbls_matches_official_batch_form(margin, lam):
    z, y = rand(seed=1)
    got = build_loss("mbls", margin=margin, lam=lam)(z, y).item()
    assert got == pytest.approx(mbls_batch_ref(z, y, margin, lam), rel=1e-10)


@pytest.mark.parametrize("params", [{}, {"margin": 3.0, "alpha": 0.5}, {"lam_pos": 0.2, "lam_neg": 2.0, "margin": 1.0}])
def test_acls_matches_official_batch_form(params):
    z, y = rand(seed=2)
    full = {"lam_pos": 1.0, "lam_neg": 0.1, "alpha": 0.1, "margin": 10.0, **params}
    got = build_loss("acls", **params)(z, y).item()
    assert got == pytest.approx(acls_batch_ref(z, y, **full), rel=1e-10)


def test_acls_negative_side_uses_a_detached_max():
    # one sample; large logits so both penalties are active
    z = torch.tensor([[30.0, 5.0, -4.0, 12.0]], dtype=torch.float64, requires_grad=True)
    y = torch.tensor([1])
    lam_pos, lam_neg, alpha, m = 1.0, 0.1, 0.1, 10.0
    build_loss("acls")(z, y).backward()
    p = torch.softmax(z.detach(), -1)[0].tolist()
    zz = z.detach()[0].tolist()
    expected = []
    for k, v in enumerate(zz):
        g = p[k] - (k == 1)
        if k == 0:  # the max: only the positive term, 2 (z_max - m); no gradient from the negatives
            g += alpha * lam_pos * 2 * max(v - m, 0.0)
        else:
            g += alpha * lam_neg / 3 * (-2) * max(zz[0] - v - m, 0.0)
        expected.append(g)
    torch.testing.assert_close(z.grad[0], torch.tensor(expected, dtype=torch.float64))


def test_mbls_max_is_not_detached():
    z = torch.tensor([[30.0, 5.0, -4.0, 12.0]], dtype=torch.float64, requires_grad=True)
    y = torch.tensor([1])
    build_loss("mbls")(z, y).backward()
    p = torch.softmax(z.detach(), -1)[0]
    ce_grad = p - F.one_hot(y, 4)[0].double()
    # all three non-max entries are further than the margin from the max: the max gets +3 (not detached)
    penalty_grad = torch.tensor([3.0, -1.0, -1.0, -1.0], dtype=torch.float64) * 0.1 / 4
    torch.testing.assert_close(z.grad[0], ce_grad + penalty_grad)
