"""sovr: the smallest-margin fraction of the batch takes OvR, the rest CE."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from losscli.losses import LossInputError, build_loss


def softplus(x):
    return max(x, 0.0) + math.log1p(math.exp(-abs(x)))


def sovr_loop(z, y, rho):
    rows = list(zip(z.tolist(), y.tolist()))
    margins = [row[yt] - max(v for k, v in enumerate(row) if k != yt) for row, yt in rows]
    k = int(math.floor(rho * len(rows) + 1e-9))
    chosen = set(sorted(range(len(rows)), key=lambda i: (margins[i], i))[:k])
    total = 0.0
    for i, (row, yt) in enumerate(rows):
        if i in chosen:
            total += softplus(-row[yt]) + sum(softplus(v) for j, v in enumerate(row) if j != yt)
        else:
            m = max(row)
            total += m + math.log(sum(math.exp(v - m) for v in row)) - row[yt]
    return total / len(rows)


@pytest.mark.parametrize("rho", [0.0, 0.25, 0.4, 0.75, 1.0])
def test_matches_loop(rho):
    g = torch.Generator().manual_seed(int(rho * 100))
    z = torch.randn(10, 5, generator=g, dtype=torch.float64) * 3
    y = torch.randint(0, 5, (10,), generator=g)
    assert build_loss("sovr", fraction=rho)(z, y).item() == pytest.approx(sovr_loop(z, y, rho), rel=1e-12)


def test_endpoints_are_ce_and_ovr():
    g = torch.Generator().manual_seed(0)
    z = torch.randn(8, 4, generator=g, dtype=torch.float64)
    y = torch.randint(0, 4, (8,), generator=g)
    torch.testing.assert_close(build_loss("sovr", fraction=0.0)(z, y), F.cross_entropy(z, y))
    torch.testing.assert_close(build_loss("sovr", fraction=1.0)(z, y), build_loss("ovr")(z, y))


def test_selection_gets_no_gradient_and_ignored_rows_are_dropped():
    g = torch.Generator().manual_seed(1)
    z = (torch.randn(10, 4, generator=g, dtype=torch.float64) * 2).requires_grad_(True)
    y = torch.randint(0, 4, (10,), generator=g)
    build_loss("sovr")(z, y).backward()
    # reference gradient: the same per-sample choice with the mask as a constant
    margins = (z.gather(1, y[:, None]).squeeze(1) - z.scatter(1, y[:, None], -math.inf).amax(1)).detach()
    mask = torch.zeros(10, dtype=torch.bool)
    mask[torch.sort(margins, stable=True).indices[:4]] = True
    z2 = z.detach().clone().requires_grad_(True)
    ovr = F.binary_cross_entropy_with_logits(z2, F.one_hot(y, 4).double(), reduction="none").sum(1)
    torch.where(mask, ovr, F.cross_entropy(z2, y, reduction="none")).mean().backward()
    torch.testing.assert_close(z.grad, z2.grad)
    y_ign = y.clone()
    y_ign[[2, 7]] = -100
    keep = torch.ones(10, dtype=torch.bool)
    keep[[2, 7]] = False
    torch.testing.assert_close(build_loss("sovr")(z.detach(), y_ign), build_loss("sovr")(z.detach()[keep], y[keep]))


def test_batch_level_only():
    with pytest.raises(LossInputError, match="batch-level"):
        build_loss("sovr", reduction="none")(torch.randn(4, 3), torch.tensor([0, 1, 2, 0]))


def test_margins_when_the_target_holds_or_ties_the_maximum():
    from losscli.losses.sovr import logit_margins

    z = torch.tensor([[3.0, 1.0, 2.0], [3.0, 3.0, 0.0], [0.0, 5.0, 1.0], [1.0, 1.0, 1.0]])
    y = torch.tensor([0, 1, 0, 2])
    torch.testing.assert_close(logit_margins(z, y), torch.tensor([1.0, 0.0, -5.0, 0.0]))


def test_rows_split_over_blocks_and_gradcheck(monkeypatch):
    from losscli.losses.fused import softmax_core

    g = torch.Generator().manual_seed(2)
    z = (torch.randn(13, 5, generator=g, dtype=torch.float64) * 3).requires_grad_(True)
    y = torch.randint(0, 5, (13,), generator=g)
    fn = build_loss("sovr", fraction=0.5)
    whole = fn(z, y)
    monkeypatch.setattr(softmax_core, "_BLOCK_ELEMENTS", 3 * 5)  # blocks of 3 rows mix OvR and CE rows
    assert fn(z, y).item() == pytest.approx(whole.item(), rel=1e-13)
    assert fn(z, y).item() == pytest.approx(sovr_loop(z.detach(), y, 0.5), rel=1e-12)
    assert torch.autograd.gradcheck(lambda t: fn(t, y), (z,))
