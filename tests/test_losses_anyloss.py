"""AnyLoss: the paper's binary formulas in plain Python, the macro one-vs-rest extension, guards."""

from __future__ import annotations

import math

import pytest
import torch

from losscli.losses import LOSSES, LossInputError, build_loss

METRICS = ("f1", "fbeta", "accuracy", "gmean", "balanced_accuracy")


def amplify(p, L):
    return 1 / (1 + math.exp(-L * (p - 0.5)))


def binary_ref(probs, ys, metric, L=73.0, beta=1.0):
    """1 - metric from the paper's confusion entries, with sigmoid outputs ``probs``."""
    a = [amplify(p, L) for p in probs]
    n = len(ys)
    tp = sum(y * v for y, v in zip(ys, a))
    y1 = sum(ys)
    y0 = n - y1
    fn = y1 - tp
    fp = sum(a) - tp
    tn = n - y1 - sum(a) + tp
    if metric == "accuracy":
        m = (tp + tn) / n
    elif metric in ("f1", "fbeta"):
        b2 = 1.0 if metric == "f1" else beta**2
        m = (1 + b2) * tp / (b2 * y1 + sum(a))
    elif metric == "gmean":
        m = math.sqrt(tp * tn / (y1 * y0))
    else:
        m = (y0 * tp + y1 * tn) / (2 * y1 * y0)
    assert abs(fn - (y1 - tp)) < 1e-12
    return 1 - m


def softmax(row):
    m = max(row)
    e = [math.exp(v - m) for v in row]
    return [v / sum(e) for v in e]


@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("L", [73.0, 5.0])
def test_binary_matches_the_paper(metric, L):
    g = torch.Generator().manual_seed(0)
    z = torch.randn(10, 2, generator=g, dtype=torch.float64) * 0.3
    y = torch.tensor([0, 1, 1, 0, 1, 0, 0, 1, 1, 0])
    ours = build_loss("anyloss", metric=metric, L=L, beta=2.0)(z, y)
    probs = [softmax(row)[1] for row in z.tolist()]  # p_1 = sigmoid(z_1 - z_0)
    assert ours.item() == pytest.approx(binary_ref(probs, y.tolist(), metric, L, beta=2.0), rel=1e-10)


@pytest.mark.parametrize("metric", METRICS)
def test_multiclass_is_macro_one_vs_rest_over_present_classes(metric):
    g = torch.Generator().manual_seed(1)
    z = torch.randn(12, 4, generator=g, dtype=torch.float64)
    y = torch.tensor([0, 1, 1, 0, 2, 2, 0, 1, 2, 0, 1, 2])  # class 3 absent
    ours = build_loss("anyloss", metric=metric, L=10.0)(z, y)
    probs = [softmax(row) for row in z.tolist()]
    per_class = [binary_ref([p[c] for p in probs], [int(v == c) for v in y.tolist()], metric, 10.0) for c in range(3)]
    assert ours.item() == pytest.approx(sum(per_class) / 3, rel=1e-10)


def test_batch_without_positives_is_guarded():
    z = torch.randn(6, 2, dtype=torch.float64, requires_grad=True)
    y = torch.zeros(6, dtype=torch.long)
    for metric in METRICS:
        v = build_loss("anyloss", metric=metric)(z, y)
        v.backward()
        assert torch.isfinite(v) and torch.isfinite(z.grad).all(), metric
        assert 0.0 <= v.item() <= 1.0
    assert build_loss("anyloss", metric="f1")(z, y).item() == pytest.approx(1.0)  # F1 = 0: no true positives


def test_gradient_pushes_towards_the_labels_and_only_mean():
    g = torch.Generator().manual_seed(2)
    z = (torch.randn(16, 3, generator=g, dtype=torch.float64) * 0.2).requires_grad_(True)
    y = torch.arange(16) % 3
    build_loss("anyloss", L=5.0)(z, y).backward()
    # raising the true-class logit lowers the loss
    assert (z.grad.gather(1, y[:, None]) < 0).all()
    with pytest.raises(LossInputError):
        build_loss("anyloss", reduction="none")(z, y)
    info = LOSSES.get("anyloss").info
    assert info.batch_coupled and info.defaults() == {"metric": "f1", "L": 73.0, "beta": 1.0}


def test_ignored_rows_are_dropped():
    g = torch.Generator().manual_seed(3)
    z = torch.randn(8, 3, generator=g, dtype=torch.float64)
    y = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1])
    y_ign = y.clone()
    y_ign[[1, 6]] = -100
    keep = [0, 2, 3, 4, 5, 7]
    for metric in METRICS:
        fn = build_loss("anyloss", metric=metric, L=8.0)
        torch.testing.assert_close(fn(z, y_ign), fn(z[keep], y[keep]))


@pytest.mark.parametrize("metric", ["f1", "fbeta", "accuracy", "gmean", "balanced_accuracy"])
@pytest.mark.parametrize("c", [2, 5])
def test_fused_gradient_gradcheck_with_ignored_rows(metric, c):
    g = torch.Generator().manual_seed(3)
    z = (torch.randn(9, c, generator=g, dtype=torch.float64) * 0.3).requires_grad_(True)
    y = torch.randint(0, c, (9,), generator=g)
    y[2] = -100
    fn = build_loss("anyloss", metric=metric, beta=2.0, L=5.0)
    assert torch.autograd.gradcheck(lambda t: fn(t, y), (z,), eps=1e-6, atol=1e-7, rtol=1e-5)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_saturated_logits_have_finite_gradients(dtype):
    z = torch.tensor([[1e4, -1e4, 0.0], [0.0, 1e4, -1e4], [-1e4, 0.0, 1e4]], dtype=dtype, requires_grad=True)
    loss = build_loss("anyloss")(z, torch.tensor([0, 2, 1]))
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(z.grad.float()).all()


def _plain_anyloss_f1(z, y, L=73.0):
    """Macro one-vs-rest soft F1 written with plain autograd ops (no fused node)."""
    c = z.shape[1]
    a = torch.sigmoid(L * (torch.softmax(z, dim=1) - 0.5))
    onehot = torch.nn.functional.one_hot(y, c).to(z.dtype)
    tp, a_sum, y1 = (onehot * a).sum(0), a.sum(0), onehot.sum(0)
    f1 = 2 * tp / (y1 + a_sum).clamp_min(1e-5)
    present = (y1 > 0).to(z.dtype)
    return 1 - (f1 * present).sum() / present.sum()


def test_confident_batch_gradient_is_exact_in_float32():
    # a confident batch puts most p a (1 - a) g products below float32's normal range; the fused
    # backward rescales to avoid subnormal arithmetic (slow on Intel), which must not change values
    g = torch.Generator().manual_seed(5)
    z64 = torch.randn(256, 50, generator=g, dtype=torch.float64) * 4
    y = torch.randint(0, 50, (256,), generator=g)
    z32 = z64.float().requires_grad_(True)
    build_loss("anyloss")(z32, y).backward()
    ref = z64.clone().requires_grad_(True)
    _plain_anyloss_f1(ref, y).backward()
    # float32 rounding of sums of C terms, relative to the gradient's scale
    torch.testing.assert_close(z32.grad.double(), ref.grad, rtol=1e-4, atol=1e-5 * float(ref.grad.abs().max()))
    a = torch.sigmoid(73.0 * (torch.softmax(z64, dim=1) - 0.5))
    assert (a < 1e-15).float().mean() > 0.5  # most entries are in the subnormal-product regime
