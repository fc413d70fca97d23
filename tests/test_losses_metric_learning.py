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


# -- the one-node computation (losscli.losses.fused.gram) against differentiable loops --------------

def val(s):
    return float(s.detach())


def ms_autograd_loop(x, y, valid, alpha=2.0, beta=40.0, lam=0.5, eps=0.1):
    """The official per-anchor loop on torch scalars (differentiable): reference values and gradients."""
    e = F.normalize(x, dim=1)
    labels, ok, n = y.tolist(), valid.tolist(), len(y)
    out = []
    for i in range(n):
        sims = [torch.dot(e[i], e[j]) for j in range(n)]
        pos = [s for j, s in enumerate(sims) if ok[i] and ok[j] and labels[j] == labels[i] and val(s) < 1 - 1e-5]
        neg = [s for j, s in enumerate(sims) if ok[i] and ok[j] and labels[j] != labels[i]]
        lo, hi = min((val(s) for s in pos), default=math.inf), max((val(s) for s in neg), default=-math.inf)
        pos_m = [s for s in pos if val(s) - eps < hi]
        neg_m = [s for s in neg if val(s) + eps > lo]
        if not pos_m or not neg_m:
            out.append(x.sum() * 0.0)
            continue
        out.append(torch.log1p(sum(torch.exp(-alpha * (s - lam)) for s in pos_m)) / alpha
                   + torch.log1p(sum(torch.exp(beta * (s - lam)) for s in neg_m)) / beta)
    return torch.stack(out)


def tcm_autograd_loop(x, y, lp=1.0, ln=1.0, mp=0.9, mn=0.5):
    e = F.normalize(x, dim=1)
    labels = y.tolist()
    pos, neg = [], []
    for i in range(len(labels)):
        for j in range(len(labels)):
            if i != j:
                (pos if labels[i] == labels[j] else neg).append(torch.dot(e[i], e[j]))
    pv = [mp - s for s in pos if val(s) <= mp]
    nv = [s - mn for s in neg if val(s) >= mn]
    zero = x.sum() * 0.0
    return lp * (sum(pv) / len(pv) if pv else zero) + ln * (sum(nv) / len(nv) if nv else zero)


def grads(fn, x):
    x = x.clone().requires_grad_(True)
    out = fn(x)
    upstream = torch.linspace(0.5, 1.5, out.numel(), dtype=out.dtype).reshape(out.shape)  # not a plain mean
    (out * upstream).sum().backward()
    return out.detach(), x.grad


def batches():
    """Label layouts that reach every branch: mined pairs, anchors without positives or negatives,
    dense positives (2 classes), duplicate rows (removed by value), a zero row (clamped norm)."""
    x, y = clustered(8, n=12, c=3)
    yield "clustered", x, y
    yield "one class", x, torch.zeros(12, dtype=torch.long)
    yield "all distinct", x, torch.arange(12)
    x2, y2 = clustered(9, n=14, c=2, spread=1.5)
    yield "two classes", x2, y2
    x3 = x.clone()
    x3[5], x3[7] = x3[1], 0.0
    yield "duplicate and zero rows", x3, y


@pytest.fixture(params=["one block", "small blocks"])
def blocks(request, monkeypatch):
    """At test sizes every pass is one block and one tile: also run with blocks of 5 rows and tiles of
    5 x 5 (uneven last ones), the layout that large batches get."""
    if request.param == "small blocks":
        import losscli.losses.fused.gram as gram
        import losscli.losses.multi_similarity as ms
        import losscli.losses.tcm as tcm

        for module in (ms, tcm):
            monkeypatch.setattr(module, "block_rows", lambda n: 5)
        monkeypatch.setattr(gram, "_TILE", 5)
    return request.param


@pytest.mark.parametrize("case", list(batches()), ids=lambda c: c[0])
def test_multi_similarity_values_and_gradients_match_autograd_loop(case, blocks):
    _, x, y = case
    valid = torch.ones(len(y), dtype=torch.bool)
    valid[[2, 9]] = False  # ignored rows: neither anchors nor partners
    for keep in (torch.ones_like(valid), valid):
        got = grads(lambda z: build_loss("multi_similarity", reduction="none")(z, torch.where(keep, y, -100)), x)
        ref = grads(lambda z: ms_autograd_loop(z, y, keep), x)
        torch.testing.assert_close(got[0], ref[0], rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(got[1], ref[1], rtol=1e-9, atol=1e-12 * float(ref[1].abs().max()))


@pytest.mark.parametrize("case", list(batches()), ids=lambda c: c[0])
@pytest.mark.parametrize("base", ["none", "multi_similarity"])
def test_tcm_values_and_gradients_match_autograd_loop(case, base, blocks):
    _, x, y = case
    for params in ({}, {"lam_pos": 0.5, "lam_neg": 2.0, "margin_pos": 0.7, "margin_neg": 0.0}):
        p = (params.get("lam_pos", 1.0), params.get("lam_neg", 1.0), params.get("margin_pos", 0.9),
             params.get("margin_neg", 0.5))
        got = grads(lambda z: build_loss("tcm", base=base, **params)(z, y), x)
        keep = torch.ones(len(y), dtype=torch.bool)

        def reference(z):
            return tcm_autograd_loop(z, y, *p) + (ms_autograd_loop(z, y, keep).mean() if base != "none" else 0.0)

        ref = grads(reference, x)
        torch.testing.assert_close(got[0], ref[0], rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(got[1], ref[1], rtol=1e-9, atol=1e-12 * max(1.0, float(ref[1].abs().max())))


SPARSE_ONLY = "tcm(base=none, margin_pos=1, margin_neg=0.99)"  # no violating negative in the batch below


@pytest.mark.parametrize("spec", ["multi_similarity", "tcm", "tcm(base=none)", SPARSE_ONLY])
def test_gram_node_gradcheck(spec, monkeypatch, blocks):
    """float64 gradcheck of the custom node: per-anchor output (non-uniform upstream), scalar output,
    and a sparse-only gradient (no violating negative: no [N, N] product in backward)."""
    import losscli.losses.fused.gram as gram

    if spec == SPARSE_ONLY:
        monkeypatch.setattr(gram, "symmetrised", None)  # the dense path would fail
    x, y = clustered(10, n=10, c=3, spread=1.0)
    y = y.clone()
    kwargs = {"reduction": "none"} if spec == "multi_similarity" else {}
    if spec == "multi_similarity":
        y[4] = -100
    fn = build_loss(spec, **kwargs)
    assert torch.autograd.gradcheck(lambda z: fn(z, y), (x.requires_grad_(True),))


def test_gram_node_backward_twice_and_float32_close_to_float64():
    x, y = clustered(11, n=64, d=16, c=8, spread=1.0)
    for spec in ("multi_similarity", "tcm"):
        fn = build_loss(spec)
        z = x.clone().requires_grad_(True)
        out = fn(z, y)
        first = torch.autograd.grad(out, z, retain_graph=True)[0]
        torch.testing.assert_close(torch.autograd.grad(out, z)[0], first, rtol=0, atol=0)  # saved gradient intact
        z32 = x.float().requires_grad_(True)
        out32 = fn(z32, y)
        out32.backward()
        torch.testing.assert_close(out32.double(), out.detach(), rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(z32.grad.double(), first, rtol=1e-4, atol=1e-5 * float(first.abs().max()))


def test_same_label_pairs_are_every_pair_of_valid_rows():
    from losscli.losses.fused.gram import same_label_pairs

    g = torch.Generator().manual_seed(12)
    y = torch.randint(0, 5, (30,), generator=g)
    valid = torch.rand(30, generator=g) > 0.2
    rows, cols = same_label_pairs(y, valid)
    got = sorted(zip(rows.tolist(), cols.tolist()))
    assert got == [(i, j) for i in range(30) for j in range(30) if valid[i] and valid[j] and y[i] == y[j]]
