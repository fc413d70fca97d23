"""aslp: expected perturbed-label CE, the alpha update and its clipping, and the checkpointed state."""

from __future__ import annotations

import io
import math

import pytest
import torch
import torch.nn.functional as F

from losscli.losses import LossInputError, build_loss


def expected_loop(z, y, alpha, beta):
    """(1 - alpha) CE(clean) + alpha CE(perturbed label (1 - C beta) e_y + beta 1), one row at a time."""
    out = []
    for row, yt, a in zip(z.tolist(), y.tolist(), alpha):
        c = len(row)
        m = max(row)
        lse = m + math.log(sum(math.exp(v - m) for v in row))
        logp = [v - lse for v in row]
        pert = [(1 - c * beta) * (1 if k == yt else 0) + beta for k in range(c)]
        out.append((1 - a) * -logp[yt] + a * -sum(t * lp for t, lp in zip(pert, logp)))
    return torch.tensor(out, dtype=torch.float64)


def update_loop(z, y, alpha, beta, eta, lbd, acc):
    """The official alpha step with the multi-class substitutions, and its clipping."""
    out = []
    for row, yt, a in zip(z.tolist(), y.tolist(), alpha):
        c = len(row)
        m = max(row)
        e = [math.exp(v - m) for v in row]
        p = [min(max(v / sum(e), 1e-7), 1 - 1e-7) for v in e]
        ce = -math.log(p[yt])
        h = -sum(math.log(v) for v in p)
        new = a + eta * ((h - c * ce) / beta + lbd * min((1 - acc) - (c - 1) * beta * a, 0.0))
        if new < 0:
            new = 0.0
        elif new >= 1 / (c * beta):
            new = (1 - 0.02 * beta) / (c * beta)
        out.append(new)
    return out


def data(seed=0, n=8, c=5):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, c, generator=g, dtype=torch.float64) * 2, torch.randint(0, c, (n,), generator=g)


def test_expected_loss_matches_the_coin_average():
    z, y = data()
    fn = build_loss("aslp", beta=0.1, reduction="none")
    alpha = [0.0, 0.3, 1.0, 0.5, 0.05, 0.9, 0.2, 0.7]
    fn.alpha_state = torch.tensor(alpha, dtype=torch.float64)
    torch.testing.assert_close(fn(z, y, index=torch.arange(8)), expected_loop(z, y, alpha, 0.1))
    # alpha = 0 everywhere (the initial state): plain CE
    torch.testing.assert_close(build_loss("aslp")(z, y, index=torch.arange(8)), F.cross_entropy(z, y))


def test_sampled_mode_has_the_expected_value():
    z, y = data(1, n=4)
    fn = build_loss("aslp", beta=0.1, sampled=True, reduction="none")
    fn.alpha_state = torch.tensor([0.0, 1.0, 0.5, 0.25], dtype=torch.float64)
    torch.manual_seed(0)
    draws = torch.stack([fn(z, y, index=torch.arange(4)) for _ in range(4000)])
    clean = expected_loop(z, y, [0.0] * 4, 0.1)
    pert = expected_loop(z, y, [1.0] * 4, 0.1)
    torch.testing.assert_close(draws[:, 0], clean[0].expand(4000))  # alpha 0: never perturbed
    torch.testing.assert_close(draws[:, 1], pert[1].expand(4000))  # alpha 1: always perturbed
    frac = ((draws[:, 2] - clean[2]).abs() > 1e-12).double().mean()
    assert abs(frac - 0.5) < 0.05  # perturbed with probability alpha_i


def test_alpha_update_rule_and_schedule():
    z, y = data(2)
    fn = build_loss("aslp", beta=0.05, eta=0.01, lbd=5.0)
    idx = torch.arange(10, 18)  # sample ids, not positions
    start = [0.0, 0.1, 0.2, 0.3, 0.01, 0.15, 0.05, 0.12]
    fn.alpha_state = torch.zeros(18, dtype=torch.float64)
    fn.alpha_state[idx] = torch.tensor(start, dtype=torch.float64)
    before = fn.alpha_state.clone()
    fn(z, y, index=idx, epoch=7)  # no validation accuracy yet: no update
    assert torch.equal(fn.alpha_state, before)
    fn.on_epoch_end(6, 0.8)
    fn(z, y, index=idx, epoch=4)  # 0-based epoch 4 = 5th epoch: the official `epoch > 5` (1-based) not yet
    assert torch.equal(fn.alpha_state, before)
    fn.eval()
    fn(z, y, index=idx, epoch=5)  # evaluation never writes the state
    assert torch.equal(fn.alpha_state, before)
    fn.train()
    loss = fn(z, y, index=idx, epoch=5)
    torch.testing.assert_close(loss, expected_loop(z, y, start, 0.05).mean())  # the loss uses alpha before the step
    torch.testing.assert_close(fn.alpha_state[idx], torch.tensor(update_loop(z, y, start, 0.05, 0.01, 5.0, 0.8),
                                                                 dtype=torch.float64))
    assert torch.equal(fn.alpha_state[:10], before[:10])


def test_alpha_clipping_both_ends():
    c, beta = 4, 2.0
    fn = build_loss("aslp", beta=beta, eta=1.0, lbd=0.0)
    fn.on_epoch_end(5, 0.5)
    confident = torch.tensor([[12.0, 0, 0, 0]], dtype=torch.float64)  # H - C CE >> 0: alpha shoots up
    wrong = torch.tensor([[0.0, 12.0, 0, 0]], dtype=torch.float64)  # H - C CE << 0: alpha would go negative
    fn(confident, torch.tensor([0]), index=torch.tensor([0]), epoch=5)
    fn(wrong, torch.tensor([0]), index=torch.tensor([1]), epoch=5)
    assert fn.alpha_state[0].item() == pytest.approx((1 - 0.02 * beta) / (c * beta))  # the cap, = 1/(2 beta) - 0.01 at C=2
    assert fn.alpha_state[1].item() == 0.0
    two = build_loss("aslp", beta=beta, eta=1.0, lbd=0.0)
    assert two.alpha_cap(2) == pytest.approx(1 / (2 * beta) - 0.01)  # the official value at C = 2
    assert build_loss("aslp").alpha_cap(100) > 0  # stays active with many classes


def test_state_is_checkpointed_and_grows():
    z, y = data(3)
    fn = build_loss("aslp", eta=0.01)
    fn.on_epoch_end(5, 0.9)
    fn(z, y, index=torch.arange(100, 108), epoch=6)
    sd = fn.state_dict()
    assert set(sd) == {"alpha_state", "val_accuracy"} and sd["alpha_state"].numel() >= 108
    buf = io.BytesIO()
    torch.save(sd, buf)
    buf.seek(0)
    fresh = build_loss("aslp", eta=0.01)
    fresh.load_state_dict(torch.load(buf, weights_only=True))
    assert torch.equal(fresh.alpha_state, fn.alpha_state) and fresh.val_accuracy.item() == pytest.approx(0.9)
    with pytest.raises(LossInputError, match="index"):
        fn(z, y)
    with pytest.raises(LossInputError, match="val_accuracy"):
        fn.on_epoch_end(1, 1.5)
