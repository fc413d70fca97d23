"""h_calibration and correctness_aware: their objectives against loops, determinism, ECE on a miscalibrated problem."""

from __future__ import annotations

import io
import math

import pytest
import torch

from losscli.calibrate import CALIBRATORS, build_calibrator, ca_loss, h_calibration_loss
from losscli.calibrate.hcalib import kmeans_1d
from losscli.errors import UsageError
from losscli.metrics import ece


def synthetic(n, c, t_true, seed, scale=3.0):
    """Over-confident model (t_true > 1): labels drawn from softmax(z / t_true)."""
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, c, generator=g) * scale
    y = torch.multinomial(torch.softmax(z.double() / t_true, 1), 1, generator=g).squeeze(1)
    return z.float(), y


# -- correctness-aware ---------------------------------------------------------------------
def ca_loop(cal, orig, y):
    correct = [1.0 if max(range(len(r)), key=lambda k: r[k]) == t else 0.0 for r, t in zip(orig.tolist(), y.tolist())]
    conf = []
    for r in cal.tolist():
        m = max(r)
        conf.append(1.0 / sum(math.exp(v - m) for v in r))
    acc = sum(correct) / len(correct)
    w = [(1 - acc) if c else acc for c in correct]
    if sum(w) == 0:
        w = [1.0] * len(w)
    return sum(wi * (ci - ki) ** 2 for wi, ci, ki in zip(w, conf, correct)) / sum(w)


def test_ca_objective_matches_loop_including_degenerate_batches():
    z, y = synthetic(50, 4, 2.0, seed=0)
    z = z.double()
    for t in (0.5, 1.0, 3.0):
        assert ca_loss(z / t, z, y).item() == pytest.approx(ca_loop(z / t, z, y), rel=1e-12)
    right = z.argmax(1)  # all correct: every weight 1 - acc = 0 -> unweighted, no NaN
    wrong = (right + 1) % 4  # all wrong
    for labels in (right, wrong):
        value = ca_loss(z, z, labels)
        assert torch.isfinite(value) and value.item() == pytest.approx(ca_loop(z, z, labels), rel=1e-12)


def test_ca_all_correct_or_all_wrong_fits_to_the_range_ends():
    z, _ = synthetic(300, 3, 1.0, seed=1)
    all_right = build_calibrator("correctness_aware").fit(z, z.argmax(1))
    all_wrong = build_calibrator("correctness_aware").fit(z, (z.argmax(1) + 1) % 3)
    assert all_right.temperature == pytest.approx(0.1, rel=1e-3)  # confidence -> 1 is best
    assert all_wrong.temperature == pytest.approx(10.0, rel=1e-3)  # confidence -> as low as allowed


# -- h-calibration ---------------------------------------------------------------------------
def hcal_loop(probs, y, veclen):
    """Leave-one-class-out, events sorted by p, centred moving average (zero padding, / (veclen+1)), unweighted."""
    c = probs.shape[1]
    losses = []
    for left in range(c):
        events = [(p, 1.0 if k == t else 0.0) for row, t in zip(probs.tolist(), y.tolist()) if t != left
                  for k, p in enumerate(row)]
        events.sort(key=lambda e: e[0])
        n, h = len(events), veclen // 2
        errs = []
        for i in range(n):
            window = events[max(0, i - h): min(n, i + h + 1)]
            a = sum(p * (1 - o) for p, o in window) / (veclen + 1)
            b = sum((1 - p) * o for p, o in window) / (veclen + 1)
            errs.append(max(abs(a - b) - 1e-20, 0.0))
        losses.append(sum(errs) / n)
    return 1e5 * sum(losses) / c


@pytest.mark.parametrize("veclen", [0, 4, 200])
def test_h_calibration_objective_matches_loop(veclen):
    z, y = synthetic(40, 3, 2.0, seed=2)
    p = torch.softmax(z.double(), 1)
    assert h_calibration_loss(p, y, veclen=veclen).item() == pytest.approx(hcal_loop(p, y, veclen), rel=1e-10)


def test_h_calibration_objective_is_small_for_calibrated_probabilities():
    z, y = synthetic(4000, 3, 1.0, seed=3)  # labels drawn from softmax(z): calibrated by construction
    calibrated = h_calibration_loss(torch.softmax(z.double(), 1), y).item()
    over = h_calibration_loss(torch.softmax(z.double() * 3, 1), y).item()
    assert calibrated < 0.5 * over


def test_kmeans_is_deterministic_and_sensible():
    g = torch.Generator().manual_seed(4)
    v = torch.cat([torch.rand(300, generator=g) * 0.1, 0.9 + torch.rand(300, generator=g) * 0.1]).double()
    a, b = kmeans_1d(v, 2), kmeans_1d(v.clone(), 2)
    assert torch.equal(a, b)
    assert (a[:300] == a[0]).all() and (a[300:] == a[300]).all() and a[0] != a[300]


# -- both calibrators: ECE improves, deterministic, state round trip -----------------------------
@pytest.fixture(scope="module")
def miscalibrated():
    return synthetic(1500, 4, 2.0, seed=10), synthetic(1500, 4, 2.0, seed=11)


@pytest.mark.parametrize("method, hparams", [
    ("correctness_aware", {}),
    ("h_calibration", {}),
    ("h_calibration", {"weighting": "cluster"}),
    ("h_calibration", {"map": "ensemble", "temp_num": 8, "max_iter": 150, "lr": 0.05}),
])
def test_fit_improves_ece_deterministically_and_round_trips(miscalibrated, method, hparams):
    (zv, yv), (zt, yt) = miscalibrated
    before = ece(torch.softmax(zt.double(), 1), yt)
    first = build_calibrator(method, **hparams).fit(zv, yv)
    second = build_calibrator(method, **hparams).fit(zv, yv)
    out = first.transform(zt)
    assert torch.equal(out, second.transform(zt)) and first.params() == second.params()  # deterministic
    after = ece(torch.softmax(out, 1), yt)
    assert before > 0.1 and after < 0.6 * before, (before, after)
    assert torch.equal(out.argmax(1), zt.argmax(1))  # accuracy preserved
    buf = io.BytesIO()
    torch.save(first.state_dict(), buf)
    buf.seek(0)
    state = torch.load(buf, weights_only=True)
    fresh = CALIBRATORS.get(method)(**state["hparams"]).load_state_dict(state)
    assert torch.equal(fresh.transform(zt), out)
    assert all(isinstance(v, (int, float, str, bool)) for v in first.params().values())


def test_h_calibration_recovers_the_temperature_and_validates_hparams(miscalibrated):
    (zv, yv), _ = miscalibrated
    cal = build_calibrator("h_calibration").fit(zv, yv)
    assert cal.params()["temperature"] == pytest.approx(2.0, rel=0.15)
    with pytest.raises(UsageError, match="unknown hparam"):
        build_calibrator("h_calibration", bins=3)
    with pytest.raises(UsageError, match="veclen"):
        build_calibrator("h_calibration", veclen=5)
    with pytest.raises(UsageError, match="map must be"):
        build_calibrator("h_calibration", map="isotonic")
