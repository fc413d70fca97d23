"""circle loss (class-level) on cosine logits."""

from __future__ import annotations

import math

import pytest
import torch

from losscli.losses import build_loss
from losscli.losses.heads import CosineHead


def cosines(n=6, c=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, c, generator=g, dtype=torch.float64) * 2 - 1, torch.randint(0, c, (n,), generator=g)


def circle_ref(row, t, gamma, m):
    a = []
    for k, s in enumerate(row):
        if k == t:
            a.append(gamma * max(1 + m - s, 0.0) * (s - (1 - m)))
        else:
            a.append(gamma * max(s + m, 0.0) * (s - m))
    # log(1 + sum_{k != y} exp(a_k) * exp(-a_y)) written directly
    others = [v - a[t] for k, v in enumerate(a) if k != t]
    mx = max(0.0, *others)
    return mx + math.log(math.exp(-mx) + sum(math.exp(v - mx) for v in others))


@pytest.mark.parametrize("gamma, m", [(256.0, 0.25), (80.0, 0.4), (1.0, 0.0)])
def test_matches_loop(gamma, m):
    s, y = cosines(seed=1)
    got = build_loss("circle", gamma=gamma, m=m, reduction="none")(s, y)
    ref = [circle_ref(r, t, gamma, m) for r, t in zip(s.tolist(), y.tolist())]
    torch.testing.assert_close(got, torch.tensor(ref, dtype=torch.float64))


def test_alphas_are_detached():
    s, y = cosines(n=1, c=4, seed=2)
    gamma, m = 4.0, 0.25
    s = s.clone().requires_grad_(True)
    build_loss("circle", gamma=gamma, m=m)(s, y).backward()
    # gradient with the alphas held constant: d a_k / d s_k = gamma * alpha_k
    row, t = s.detach()[0].tolist(), int(y[0])
    alpha = [max(1 + m - v, 0.0) if k == t else max(v + m, 0.0) for k, v in enumerate(row)]
    delta = [(1 - m) if k == t else m for k in range(4)]
    a = [gamma * al * (v - d) for al, v, d in zip(alpha, row, delta)]
    mx = max(a)
    p = [math.exp(v - mx) for v in a]
    p = [v / sum(p) for v in p]
    expected = [(p[k] - (k == t)) * gamma * alpha[k] for k in range(4)]
    torch.testing.assert_close(s.grad[0], torch.tensor(expected, dtype=torch.float64))


def test_head_and_prediction_logits():
    fn = build_loss("circle")
    head = fn.make_head(8, 5)
    assert isinstance(head, CosineHead) and fn.info.head == "cosine"
    x = torch.randn(4, 8)
    out = head(x)
    assert (out.abs() <= 1 + 1e-6).all()
    torch.testing.assert_close(fn.prediction_logits(out), 256.0 * out)
    loss = fn(out, torch.tensor([0, 1, 2, 3]))
    loss.backward()
    assert torch.isfinite(head.weight.grad).all()
