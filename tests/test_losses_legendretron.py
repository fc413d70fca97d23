"""legendretron: the learned monotone link head (properness sanity, no_grad evaluation, training)."""

from __future__ import annotations

import io

import pytest
import torch
import torch.nn.functional as F

from losscli.errors import UsageError
from losscli.losses import build_loss
from losscli.losses.legendretron import ICNN3, LegendreHead


def head(c=4, d=6, seed=0, **kw):
    torch.manual_seed(seed)
    h = build_loss("legendretron", **kw).make_head(d, c)
    h(torch.randn(64, d))  # the ActNorm layers initialise from this first batch
    return h


def test_probabilities_sum_to_one_and_last_class_has_logit_zero():
    h = head()
    x = torch.randn(20, 6)
    logp = h(x)
    assert logp.shape == (20, 4)
    torch.testing.assert_close(logp.exp().sum(1), torch.ones(20))
    v = h.link(h.linear(x))
    torch.testing.assert_close(logp[:, :3] - logp[:, 3:], v)  # softmax+: class C's logit is 0


@pytest.mark.parametrize("blocks", [1, 2])
def test_link_is_monotone_and_each_potential_convex(blocks):
    h = head(c=5, blocks=blocks, seed=blocks)
    g = torch.Generator().manual_seed(1)
    u1 = torch.randn(500, 4, generator=g) * 3
    u2 = torch.randn(500, 4, generator=g) * 3
    with torch.no_grad():
        d = ((h.link(u1) - h.link(u2)) * (u1 - u2)).sum(1)
    assert (d > 0).all()  # <g(u1) - g(u2), u1 - u2> > 0: a strictly monotone map (gradient of a convex potential)
    icnn = h.blocks[0].icnn
    with torch.no_grad():
        mid = icnn(0.5 * (u1 + u2))
        assert (mid <= 0.5 * (icnn(u1) + icnn(u2)) + 1e-5).all()  # ICNN convex along every segment


def test_evaluation_under_no_grad_matches_and_is_detached():
    h = head()
    x = torch.randn(10, 6)
    train_out = h(x)
    assert train_out.requires_grad
    h.eval()
    with torch.no_grad():
        eval_out = h(x)
    assert not eval_out.requires_grad
    torch.testing.assert_close(eval_out, train_out.detach())
    loss = build_loss("legendretron")
    torch.testing.assert_close(loss.prediction_logits(eval_out), eval_out)
    torch.testing.assert_close(loss(train_out, torch.tensor([0, 1, 2, 3, 0, 1, 2, 3, 0, 1])),
                               F.nll_loss(train_out, torch.tensor([0, 1, 2, 3, 0, 1, 2, 3, 0, 1])))


def test_head_trains_on_a_separable_problem():
    g = torch.Generator().manual_seed(0)
    centres = torch.randn(3, 5, generator=g) * 3
    y = torch.arange(60) % 3
    x = centres[y] + 0.3 * torch.randn(60, 5, generator=g)
    torch.manual_seed(0)
    loss_fn = build_loss("legendretron")
    h = loss_fn.make_head(5, 3)
    opt = torch.optim.Adam(h.parameters(), lr=1e-2)
    first = None
    for _ in range(60):
        opt.zero_grad()
        loss = loss_fn(h(x), y)
        first = loss.item() if first is None else first
        loss.backward()
        opt.step()
    assert loss.item() < 0.5 * first
    assert all(p.grad is not None for n, p in h.named_parameters() if p.requires_grad), "every parameter trains"
    with torch.no_grad():
        assert (h(x).argmax(1) == y).float().mean() > 0.9


def test_checkpoint_keeps_actnorm_initialisation_and_default_dtype():
    before = torch.get_default_dtype()
    h = head(seed=3)
    assert torch.get_default_dtype() == before == torch.float32
    buf = io.BytesIO()
    torch.save(h.state_dict(), buf)
    buf.seek(0)
    fresh = LegendreHead(6, 4)
    fresh.load_state_dict(torch.load(buf, weights_only=True))
    x = torch.randn(5, 6) * 10  # a very different batch: a re-initialising ActNorm would change the output
    with torch.no_grad():
        torch.testing.assert_close(fresh(x), h(x))


def test_float64_and_bfloat16_inputs_and_validation():
    h = head().double()
    assert h(torch.randn(3, 6, dtype=torch.float64)).dtype == torch.float64
    h32 = head()
    out = h32(torch.randn(3, 6)).detach()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        amp = h32(torch.randn(3, 6))
    assert amp.dtype == torch.float32 and torch.isfinite(amp).all() and torch.isfinite(out).all()
    with pytest.raises(UsageError, match="even"):
        build_loss("legendretron", dimh=3)
    assert ICNN3(2, 4, 4)(torch.randn(3, 2)).shape == (3, 1)
