"""Metrics against explicit Python loops and hand-computed cases."""

import math

import pytest
import torch

from losscli.errors import UsageError
from losscli.metrics import (
    HEADLINE,
    METRICS,
    accuracy,
    adaptive_ece,
    aurc,
    balanced_accuracy,
    brier,
    classwise_ece,
    compute_metrics,
    ece,
    looks_like_probabilities,
    macro_f1,
    mce,
    nll,
    per_class_accuracy,
    reliability_bins,
    shot_accuracy,
    top_k_accuracy,
)

# --------------------------------------------------------------------------- reference loops


def ref_bin(c, n_bins):
    """Bin b holds (b/B, (b+1)/B]; 0 goes to the first bin, 1.0 to the last."""
    for b in range(n_bins):
        hi = (b + 1) / n_bins
        if c <= hi or b == n_bins - 1:
            return b


def ref_top(p_row):
    best = 0
    for j, v in enumerate(p_row):
        if v > p_row[best]:
            best = j
    return best, p_row[best]


def ref_ece_mce(P, Y, n_bins):
    bins = [[] for _ in range(n_bins)]
    for row, y in zip(P, Y):
        pred, conf = ref_top(row)
        bins[ref_bin(conf, n_bins)].append((conf, pred == y))
    n = len(P)
    e, m = 0.0, 0.0
    for items in bins:
        if not items:
            continue
        acc = sum(h for _, h in items) / len(items)
        cf = sum(c for c, _ in items) / len(items)
        e += len(items) / n * abs(acc - cf)
        m = max(m, abs(acc - cf))
    return e, m


def ref_adaptive(P, Y, n_bins):
    items = sorted([(ref_top(r)[1], ref_top(r)[0] == y) for r, y in zip(P, Y)], key=lambda t: t[0])
    n = len(items)
    bins = [[] for _ in range(n_bins)]
    for i, it in enumerate(items):
        bins[i * n_bins // n].append(it)
    return sum(len(b) / n * abs(sum(h for _, h in b) / len(b) - sum(c for c, _ in b) / len(b)) for b in bins if b)


def ref_classwise(P, Y, n_bins):
    C = len(P[0])
    total = 0.0
    for k in range(C):
        bins = [[] for _ in range(n_bins)]
        for row, y in zip(P, Y):
            bins[ref_bin(row[k], n_bins)].append((row[k], y == k))
        total += sum(len(b) / len(P) * abs(sum(h for _, h in b) / len(b) - sum(c for c, _ in b) / len(b)) for b in bins if b)
    return total / C


def ref_aurc_no_ties(P, Y):
    items = sorted([(ref_top(r)[1], ref_top(r)[0] != y) for r, y in zip(P, Y)], key=lambda t: -t[0])
    errs, risks = 0, []
    for i, (_, err) in enumerate(items, 1):
        errs += err
        risks.append(errs / i)
    return sum(risks) / len(risks)


def ref_f1_balanced(P, Y, C):
    preds = [ref_top(r)[0] for r in P]
    f1s, recalls = [], []
    for k in range(C):
        tp = sum(1 for p, y in zip(preds, Y) if p == k and y == k)
        fp = sum(1 for p, y in zip(preds, Y) if p == k and y != k)
        fn = sum(1 for p, y in zip(preds, Y) if p != k and y == k)
        if tp + fp + fn:
            f1s.append(2 * tp / (2 * tp + fp + fn))
        if tp + fn:
            recalls.append(tp / (tp + fn))
    return sum(f1s) / len(f1s), sum(recalls) / len(recalls)


@pytest.fixture(scope="module")
def random_case():
    g = torch.Generator().manual_seed(0)
    n, c = 300, 6
    logits = torch.randn(n, c, generator=g, dtype=torch.float64) * 2.5
    labels = torch.randint(0, c, (n,), generator=g)
    # make a few confidences exactly 1.0 (one-hot rows) to exercise the last bin
    logits[:5] = -1e4
    logits[:5, 0] = 1e4
    probs = torch.softmax(logits, 1)
    return logits, probs, labels


@pytest.mark.parametrize("n_bins", [1, 7, 15])
def test_binned_metrics_match_loops(random_case, n_bins):
    _, probs, labels = random_case
    P, Y = probs.tolist(), labels.tolist()
    assert (probs.max(1).values == 1.0).sum() >= 5
    e_ref, m_ref = ref_ece_mce(P, Y, n_bins)
    assert ece(probs, labels, n_bins) == pytest.approx(e_ref, abs=1e-12)
    assert mce(probs, labels, n_bins) == pytest.approx(m_ref, abs=1e-12)
    assert adaptive_ece(probs, labels, n_bins) == pytest.approx(ref_adaptive(P, Y, n_bins), abs=1e-12)
    assert classwise_ece(probs, labels, n_bins) == pytest.approx(ref_classwise(P, Y, n_bins), abs=1e-12)


def test_pointwise_metrics_match_loops(random_case):
    logits, probs, labels = random_case
    P, Y = probs.tolist(), labels.tolist()
    n, C = probs.shape
    acc = sum(ref_top(r)[0] == y for r, y in zip(P, Y)) / n
    assert accuracy(probs, labels) == pytest.approx(acc)
    assert accuracy(logits, labels) == pytest.approx(acc)
    # (rows 5: only - the one-hot rows have tied runners-up, where top-k order is arbitrary)
    top3 = sum(y in sorted(range(C), key=lambda j: -r[j])[:3] for r, y in zip(P[5:], Y[5:])) / (n - 5)
    assert top_k_accuracy(logits[5:], labels[5:], 3) == pytest.approx(top3)
    assert top_k_accuracy(logits, labels, 50) == 1.0  # k clipped to C
    nll_ref = sum(-(r[y] - math.log(sum(math.exp(v) for v in r))) for r, y in zip(logits[5:].tolist(), Y[5:])) / (n - 5)
    assert nll(logits[5:], labels[5:]) == pytest.approx(nll_ref, rel=1e-10)
    brier_ref = sum(sum((r[j] - (j == y)) ** 2 for j in range(C)) for r, y in zip(P, Y)) / n
    assert brier(probs, labels) == pytest.approx(brier_ref, rel=1e-12)
    f1_ref, bal_ref = ref_f1_balanced(P, Y, C)
    assert macro_f1(probs, labels) == pytest.approx(f1_ref)
    assert balanced_accuracy(probs, labels) == pytest.approx(bal_ref)
    # random continuous confidences (apart from the five exact 1.0 rows, all correct/incorrect
    # alike only if tied) -> compare AURC on the tie-free part
    keep = slice(5, None)
    assert aurc(probs[keep], labels[keep]) == pytest.approx(ref_aurc_no_ties(P[5:], Y[5:]), abs=1e-12)


def test_ece_hand_computed_with_confidence_one_and_empty_bins():
    probs = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.6, 0.4], [0.6, 0.4]], dtype=torch.float64)
    labels = torch.tensor([0, 1, 0, 0])
    # conf 1.0 (last bin): acc 0.5, gap 0.5, weight 1/2; conf 0.6: acc 1, gap 0.4, weight 1/2
    assert ece(probs, labels) == pytest.approx(0.45)
    assert mce(probs, labels) == pytest.approx(0.5)
    rb = reliability_bins(probs, labels, 15)
    assert rb["count"][-1] == 2 and sum(rb["count"]) == 4  # 1.0 lands in the last bin, nothing lost
    assert rb["confidence"][-1] == pytest.approx(1.0) and rb["accuracy"][-1] == pytest.approx(0.5)
    assert sum(c > 0 for c in rb["count"]) == 2
    assert rb["confidence"][0] is None and rb["accuracy"][0] is None  # empty bins report None
    assert len(rb["edges"]) == 16 and rb["edges"][-1] == 1.0


def test_bin_edges_are_left_open_right_closed():
    # two bins (0, .5], (.5, 1]: confidence exactly 0.5 goes to the FIRST bin
    probs = torch.tensor([[0.5, 0.5], [0.9, 0.1]], dtype=torch.float64)
    labels = torch.tensor([0, 1])
    rb = reliability_bins(probs, labels, 2)
    assert rb["count"] == [1, 1]
    assert rb["confidence"] == [pytest.approx(0.5), pytest.approx(0.9)]
    # ece = 1/2 |1 - .5| + 1/2 |0 - .9| = .7
    assert ece(probs, labels, 2) == pytest.approx(0.7)


def test_adaptive_classwise_aurc_hand_computed():
    p = torch.tensor([0.6, 0.7, 0.8, 0.9], dtype=torch.float64)
    probs = torch.stack([p, 1 - p], 1)
    labels = torch.tensor([0, 1, 0, 0])  # correct, wrong, correct, correct
    # equal-mass, 2 bins: {.6,.7}: acc .5 conf .65; {.8,.9}: acc 1 conf .85
    assert adaptive_ece(probs, labels, 2) == pytest.approx(0.5 * 0.15 + 0.5 * 0.15)
    # classwise with 1 bin: class 0: |3/4 - mean(.6,.7,.8,.9)| = |.75-.75| = 0; class 1: |1/4 - .25| = 0
    assert classwise_ece(probs, labels, 1) == pytest.approx(0.0, abs=1e-12)
    # classwise, 2 bins (0,.5],(.5,1]: class 0 all in bin 1: 0; class 1 all in bin 0: 0
    assert classwise_ece(probs, labels, 2) == pytest.approx(0.0, abs=1e-12)
    # AURC: by confidence .9 ok, .8 ok, .7 wrong, .6 ok -> risks 0, 0, 1/3, 1/4
    assert aurc(probs, labels) == pytest.approx((0 + 0 + 1 / 3 + 1 / 4) / 4)


def test_classwise_hand_nonzero():
    probs = torch.tensor([[0.9, 0.1], [0.2, 0.8]], dtype=torch.float64)
    labels = torch.tensor([1, 1])
    # 1 bin: class 0: |0 - .55| = .55; class 1: |1 - .45| = .55 -> mean .55
    assert classwise_ece(probs, labels, 1) == pytest.approx(0.55)


def test_aurc_ties_do_not_depend_on_order():
    a = torch.tensor([[0.9, 0.1], [0.9, 0.1]], dtype=torch.float64)
    assert aurc(a, torch.tensor([0, 1])) == pytest.approx(0.5)  # expected risks 1/2, 1/2
    assert aurc(a, torch.tensor([1, 0])) == pytest.approx(0.5)


def test_simple_hand_values():
    assert brier(torch.tensor([[0.7, 0.2, 0.1]], dtype=torch.float64), torch.tensor([0])) == pytest.approx(0.14)
    assert nll(torch.tensor([[0.0, math.log(3.0)]]), torch.tensor([1])) == pytest.approx(-math.log(0.75), rel=1e-6)
    # preds: 0 0 1 1 ; labels: 0 1 1 1 -> class0: tp1 fp1 fn0 -> f1 2/3; class1: tp2 fp0 fn1 -> 4/5
    scores = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0]])
    labels = torch.tensor([0, 1, 1, 1])
    assert macro_f1(scores, labels) == pytest.approx((2 / 3 + 4 / 5) / 2)
    assert balanced_accuracy(scores, labels) == pytest.approx((1 + 2 / 3) / 2)
    pca = per_class_accuracy(torch.cat([scores, torch.zeros(4, 1)], 1), labels)
    assert pca[:2] == [pytest.approx(1.0), pytest.approx(2 / 3)] and math.isnan(pca[2])


def test_shot_accuracy():
    scores = torch.eye(3)[[0, 0, 1, 2, 1]]  # predictions 0 0 1 2 1
    labels = torch.tensor([0, 1, 1, 2, 2])  # class0 1/1, class1 1/2, class2 1/2
    out = shot_accuracy(scores, labels, torch.tensor([500, 50, 3]))
    assert out == {"many": pytest.approx(1.0), "medium": pytest.approx(0.5), "few": pytest.approx(0.5)}
    out = shot_accuracy(scores, labels, [500, 400, 300])
    assert out["medium"] is None and out["few"] is None and out["many"] == pytest.approx((1 + 0.5 + 0.5) / 3)
    with pytest.raises(UsageError):
        shot_accuracy(scores, labels, [1, 2])


def test_compute_metrics_keys_and_info(random_case):
    logits, probs, labels = random_case
    m = compute_metrics(logits, labels)
    expected = {"accuracy", "top5", "macro_f1", "balanced_accuracy", "nll", "brier", "ece", "adaptive_ece",
                "classwise_ece", "mce", "aurc"}
    assert set(m) == expected and set(HEADLINE) == expected and expected <= set(METRICS)
    assert all(isinstance(v, float) and math.isfinite(v) for v in m.values())
    assert m["ece"] == pytest.approx(ece(probs, labels))
    assert all(isinstance(v.higher_is_better, bool) and v.doc and v.definition and v.title for v in METRICS.values())
    # float32 logits give the same numbers (computed in float64 internally)
    assert compute_metrics(logits.float()[5:], labels[5:])["accuracy"] == m_acc(logits[5:], labels[5:])


def m_acc(z, y):
    return float((z.argmax(1) == y).double().mean())


def test_validation_errors():
    z = torch.randn(4, 3)
    with pytest.raises(UsageError, match="shape mismatch"):
        accuracy(z, torch.tensor([0, 1, 2]))
    with pytest.raises(UsageError, match="out of range"):
        accuracy(z, torch.tensor([0, 1, 2, 3]))
    with pytest.raises(UsageError, match="out of range"):
        accuracy(z, torch.tensor([0, -1, 2, 1]))
    with pytest.raises(UsageError, match="integer"):
        accuracy(z, torch.tensor([0.0, 1.0, 2.0, 1.0]))
    with pytest.raises(UsageError, match=r"\[N, C\]"):
        accuracy(torch.randn(4), torch.tensor([0, 1, 2, 1]))
    with pytest.raises(UsageError, match="probabilities"):
        ece(z, torch.tensor([0, 1, 2, 1]))  # logits where probabilities are required
    with pytest.raises(UsageError, match="look like probabilities"):
        compute_metrics(torch.softmax(z, 1), torch.tensor([0, 1, 2, 1]))
    with pytest.raises(UsageError, match="NaN"):
        nll(torch.tensor([[float("nan"), 0.0]]), torch.tensor([0]))
    with pytest.raises(UsageError, match="n_bins"):
        ece(torch.softmax(z, 1), torch.tensor([0, 1, 2, 1]), 0)
    assert looks_like_probabilities(torch.softmax(z, 1)) and not looks_like_probabilities(z)
    assert not looks_like_probabilities(torch.log_softmax(z, 1))
