"""multi_similarity and tcm: embedding losses, against loops over anchors and pairs."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from losscli.errors import UsageError
from losscli.losses import LOSSES, LossInputError, build_loss


def normalise(x):
    out = []
    for row in x.tolist():
        norm = math.sqrt(sum(v * v for v in row))
        out.append([v / norm for v in row])
    return out


def ms_loop(x, y, alpha=2.0, beta=40.0, lam=0.5, eps=0.1):
    """The official MultiSimilarityLoss.forward, one anchor at a time (0 where it would `continue` or raise)."""
    e = normalise(x)
    labels = y.tolist()
    b = len(labels)
    total = []
    for i in range(b):
        sims = [sum(a * c for a, c in zip(e[i], e[j])) for j in range(b)]
        pos = [s for j, s in enumerate(sims) if labels[j] == labels[i] and s < 1 - 1e-5]
        neg = [s for j, s in enumerate(sims) if labels[j] != labels[i]]
        if not pos or not neg:
            total.append(0.0)
            continue
        neg_m = [s for s in neg if s + eps > min(pos)]
        pos_m = [s for s in pos if s - eps < max(neg)]
        if not neg_m or not pos_m:
            total.append(0.0)
            continue
        pl = math.log(1 + sum(math.exp(-alpha * (s - lam)) for s in pos_m)) / alpha
        nl = math.log(1 + sum(math.exp(beta * (s - lam)) for s in neg_m)) / beta
        total.append(pl + nl)
    return torch.tensor(total, dtype=torch.float64)


def tcm_loop(x, y, lp=1.0, ln=1.0, mp=0.9, mn=0.5):
    e = normalise(x)
    labels = y.tolist()
    pos, neg = [], []
    for i in range(len(labels)):
        for j in range(len(labels)):
            if i == j:
                continue
            s = sum(a * c for a, c in zip(e[i], e[j]))
            (pos if labels[i] == labels[j] else neg).append(s)
    pv = [mp - s for s in pos if s <= mp]
    nv = [s - mn for s in neg if s >= mn]
    return lp * (sum(pv) / len(pv) if pv else 0.0) + ln * (sum(nv) / len(nv) if nv else 0.0)


def clustered(seed, n=16, d=4, c=4, spread=0.6):
    """Embeddings near one random direction per class: mined pairs exist for most anchors."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % c
    centres = torch.randn(c, d, generator=g, dtype=torch.float64)
    return centres[y] + spread * torch.randn(n, d, generator=g, dtype=torch.float64), y


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("params", [{}, {"alpha": 3.0, "beta": 50.0, "lam": 1.0, "epsilon": 0.05}])
def test_multi_similarity_matches_official_loop(seed, params):
    x, y = clustered(seed)
    fn = build_loss("multi_similarity", reduction="none", **params)
    ref = ms_loop(x, y, params.get("alpha", 2.0), params.get("beta", 40.0), params.get("lam", 0.5), params.get("epsilon", 0.1))
    assert (ref > 0).sum() >= 4  # the case exercises mining, not just zeros
    torch.testing.assert_close(fn(x, y), ref, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(build_loss("multi_similarity", **params)(x, y), ref.sum() / len(y), rtol=1e-10, atol=1e-12)


def test_multi_similarity_anchors_without_positives_contribute_zero():
    g = torch.Generator().manual_seed(3)
    x = torch.randn(3, 4, generator=g, dtype=torch.float64, requires_grad=True)
    fn = build_loss("multi_similarity", reduction="none")
    out = fn(x, torch.tensor([0, 1, 3]))  # the catalogue's fixed labels: no positive pair, no raise
    assert torch.equal(out.detach(), torch.zeros(3, dtype=torch.float64))
    out.sum().backward()
    assert torch.equal(x.grad, torch.zeros_like(x))
    x2, y2 = clustered(4, n=6, c=3)
    y2 = torch.tensor([0, 0, 1, 2, 2, 5])  # labels 1 and 5 (rows 2 and 5) have no positive
    per = fn(x2, y2)
    ref = ms_loop(x2, y2)
    torch.testing.assert_close(per, ref)
    assert per[2] == 0 and per[5] == 0


def test_multi_similarity_scale_invariant_stable_and_ignores_rows():
    x, y = clustered(5)
    fn = build_loss("multi_similarity")
    torch.testing.assert_close(fn(x * 1e4, y), fn(x, y))
    big = build_loss("multi_similarity", beta=200.0)(x.float(), y)  # e^{200 (S - lam)} would overflow naively
    assert torch.isfinite(big)
    y_ign = y.clone()
    y_ign[[0, 5]] = -100
    keep = torch.ones(len(y), dtype=torch.bool)
    keep[[0, 5]] = False
    # ignored rows are neither anchors nor partners: the loss of the other rows, mean over them
    torch.testing.assert_close(fn(x, y_ign), fn(x[keep], y[keep]))


def test_multi_similarity_input_checks():
    fn = build_loss("multi_similarity")
    with pytest.raises(LossInputError, match="embeddings"):
        fn(torch.randn(4), torch.tensor([0, 1, 0, 1]))
    with pytest.raises(LossInputError, match="integer labels"):
        fn(torch.randn(4, 3), torch.tensor([0.0, 1.0, 0.0, 1.0]))
    with pytest.raises(LossInputError, match=">= 0"):
        fn(torch.randn(4, 3), torch.tensor([0, -2, 0, 1]))
    assert LOSSES.get("multi_similarity").info.input == "embeddings"


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("params", [{}, {"lam_pos": 0.5, "lam_neg": 2.0, "margin_pos": 0.7, "margin_neg": 0.2}])
def test_tcm_term_matches_pair_loop(seed, params):
    x, y = clustered(seed, spread=1.0)
    got = build_loss("tcm", base="none", **params)(x, y)
    ref = tcm_loop(x, y, params.get("lam_pos", 1.0), params.get("lam_neg", 1.0), params.get("margin_pos", 0.9),
                   params.get("margin_neg", 0.5))
    assert got.item() == pytest.approx(ref, rel=1e-10)
    with_base = build_loss("tcm", **params)(x, y)
    assert with_base.item() == pytest.approx(ref + float(ms_loop(x, y).mean()), rel=1e-10)


def test_tcm_empty_terms_are_zero():
    g = torch.Generator().manual_seed(7)
    x = torch.randn(3, 5, generator=g, dtype=torch.float64, requires_grad=True)
    fn = build_loss("tcm", base="none")
    y = torch.tensor([0, 1, 3])  # no positive pair: only the negative term
    assert fn(x, y).item() == pytest.approx(tcm_loop(x, y), rel=1e-12)
    # identical embeddings of one class: no negatives and every positive at s = 1 > m+: 0, gradient 0
    same = torch.ones(4, 3, dtype=torch.float64, requires_grad=True)
    out = build_loss("tcm")(same, torch.zeros(4, dtype=torch.long))
    out.backward()
    assert out.item() == 0.0 and torch.isfinite(same.grad).all()


def test_tcm_validation_and_batch_level():
    with pytest.raises(UsageError, match="margin_neg must be < margin_pos"):
        build_loss("tcm", margin_pos=0.4, margin_neg=0.5)
    with pytest.raises(LossInputError, match="batch-level"):
        build_loss("tcm", reduction="none")(torch.randn(4, 3), torch.tensor([0, 0, 1, 1]))
    x, y = clustered(2)
    y_ign = y.clone()
    y_ign[3] = -100
    keep = torch.arange(len(y)) != 3
    torch.testing.assert_close(build_loss("tcm")(x, y_ign), build_loss("tcm")(x[keep], y[keep]))
