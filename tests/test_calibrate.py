"""Post-hoc calibrators on synthetic over- and under-confident logits."""

import io

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from losscli.calibrate import (
    CALIBRATORS,
    DEFAULT_METHODS,
    TemperatureScaling,
    build_calibrator,
    calibrate_logits,
    fit_calibrators,
    fit_inverse_temperature,
)
from losscli.calibrate.binning import HistogramBinning, isotonic_fit, pav
from losscli.errors import UnknownNameError, UsageError
from losscli.metrics import ece


def synthetic(n, c, t_true, seed, scale=3.0):
    """Model logits z; true labels drawn from softmax(z / t_true): the best temperature is t_true."""
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, c, generator=g) * scale
    y = torch.multinomial(torch.softmax(z.double() / t_true, 1), 1, generator=g).squeeze(1)
    return z.float(), y


@pytest.mark.parametrize("t_true", [0.5, 2.0])
def test_temperature_recovers_known_temperature(t_true):
    z, y = synthetic(20000, 10, t_true, seed=1)
    cal = TemperatureScaling().fit(z, y)
    assert cal.temperature == pytest.approx(t_true, rel=0.05)
    assert cal.params() == {"temperature": pytest.approx(cal.temperature)}
    # it is the NLL minimum: nudging T either way is worse
    def nll_at(t):
        return float(F.cross_entropy(z.double() / t, y))
    best = nll_at(cal.temperature)
    assert best <= nll_at(cal.temperature * 1.01) and best <= nll_at(cal.temperature / 1.01)


def test_temperature_solver_edge_cases():
    z = torch.tensor([[5.0, 0.0], [0.0, 5.0]], dtype=torch.float64)
    # perfectly separated: NLL keeps falling as T -> 0; the solver stops at its bound, not in a loop
    assert fit_inverse_temperature(z, torch.tensor([0, 1])) >= 1e5
    # always wrong: the best positive inverse temperature is the lower bound (T -> infinity)
    assert fit_inverse_temperature(z, torch.tensor([1, 0])) <= 1e-5


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_temperature_keeps_argmax_exactly(dtype):
    g = torch.Generator().manual_seed(2)
    z = (torch.randn(4000, 50, generator=g) * 4).to(dtype)
    # near-ties: runner-up one ulp below the max, and exact ties
    z[:100, 1] = torch.nextafter(z[:100, 0], torch.tensor(-float("inf"), dtype=dtype))
    z[100:200, 3] = z[100:200, 2]
    z32 = z.float()
    y = torch.randint(0, 50, (4000,), generator=g)
    for t in (0.3, 3.7):
        cal = TemperatureScaling()
        cal.n_classes, cal.inverse_temperature = 50, 1.0 / t
        out = cal.transform(z32)
        assert torch.equal(out.argmax(1), z32.argmax(1))
    cal = TemperatureScaling().fit(z32, y)
    assert torch.equal(cal.transform(z32).argmax(1), z32.argmax(1))


@pytest.fixture(scope="module", params=[2.0, 0.5], ids=["over-confident", "under-confident"])
def calibrated(request):
    # t_true = 2.0: labels flatter than the model's softmax (over-confident model); 0.5: sharper (under-confident)
    t_true = request.param
    zv, yv = synthetic(2000, 4, t_true, seed=10)
    zt, yt = synthetic(2000, 4, t_true, seed=11)
    return calibrate_logits(zv, yv, zt, yt, DEFAULT_METHODS, 15), (zt, yt)


@pytest.mark.parametrize("method", DEFAULT_METHODS)
def test_each_method_lowers_test_ece(calibrated, method):
    report, _ = calibrated
    before = report["uncalibrated"]["test"]
    after = report["methods"][method]["test"]
    assert before["ece"] > 0.05  # the synthetic miscalibration is real
    assert after["ece"] < before["ece"] * 0.5
    assert after["nll"] < before["nll"]
    assert after["classwise_ece"] < before["classwise_ece"]


def test_temperature_accuracy_unchanged_in_report(calibrated):
    report, _ = calibrated
    assert report["methods"]["temperature"]["test"]["accuracy"] == report["uncalibrated"]["test"]["accuracy"]
    assert report["methods"]["temperature"]["val"]["accuracy"] == report["uncalibrated"]["val"]["accuracy"]
    assert report["schema"] == "losscli/calibration/v1"
    assert "last bin is closed at 1.0" in report["definitions"]
    assert set(report["methods"]) == set(DEFAULT_METHODS)


@pytest.mark.parametrize("method", DEFAULT_METHODS)
def test_probability_inputs_are_rejected(method):
    z, y = synthetic(200, 3, 1.0, seed=3)
    p = torch.softmax(z, 1)
    with pytest.raises(UsageError, match="look like probabilities, pass logits"):
        build_calibrator(method).fit(p, y)
    cal = build_calibrator(method).fit(z, y)
    with pytest.raises(UsageError, match="look like probabilities"):
        cal.transform(p)
    # log-probabilities are fine
    assert cal.transform(torch.log_softmax(z, 1)).shape == z.shape


def test_probability_inputs_rejected_by_calibrate_logits():
    z, y = synthetic(200, 3, 1.0, seed=3)
    with pytest.raises(UsageError, match="look like probabilities"):
        calibrate_logits(torch.softmax(z, 1), y, z, y, ["temperature"])


@pytest.fixture(scope="module")
def small_fitted():
    z, y = synthetic(600, 3, 2.0, seed=4)
    return fit_calibrators(z, y, DEFAULT_METHODS), z, y


@pytest.mark.parametrize("method", DEFAULT_METHODS)
def test_state_dict_round_trip(small_fitted, method):
    fitted, z, y = small_fitted
    cal = fitted[method]
    buf = io.BytesIO()
    torch.save(cal.state_dict(), buf)
    buf.seek(0)
    state = torch.load(buf, weights_only=True)
    fresh = CALIBRATORS.get(method)(**state["hparams"]).load_state_dict(state)
    assert torch.allclose(fresh.transform(z), cal.transform(z), atol=0, rtol=0)
    assert fresh.params() == cal.params()
    # params are YAML-safe scalars
    assert all(isinstance(v, (int, float, str, bool)) for v in cal.params().values())
    out = cal.transform(z)
    assert out.shape == z.shape and out.dtype == torch.float64 and torch.isfinite(out).all()
    p = torch.softmax(out, 1)
    assert torch.allclose(p.sum(1), torch.ones(len(z), dtype=torch.float64))
    with pytest.raises(UsageError, match="not a calibrator state|is for calibrator"):
        other = "temperature" if method != "temperature" else "vector"
        CALIBRATORS.get(other)().load_state_dict(state)


def test_unfitted_and_wrong_class_count():
    with pytest.raises(UsageError, match="not fitted"):
        TemperatureScaling().transform(torch.randn(3, 4))
    z, y = synthetic(100, 3, 1.0, seed=5)
    cal = TemperatureScaling().fit(z, y)
    with pytest.raises(UsageError, match="3 classes"):
        cal.transform(torch.randn(5, 4))
    with pytest.raises(UsageError, match="classes"):
        calibrate_logits(z, y, torch.randn(5, 4), torch.zeros(5, dtype=torch.long), ["temperature"])


def test_unknown_method_did_you_mean():
    with pytest.raises(UnknownNameError, match="Did you mean 'temperature'"):
        calibrate_logits(torch.randn(10, 3), torch.zeros(10, dtype=torch.long), torch.randn(10, 3),
                         torch.zeros(10, dtype=torch.long), ["temprature"])


def test_pav_matches_scipy():
    opt = pytest.importorskip("scipy.optimize")
    if not hasattr(opt, "isotonic_regression"):
        pytest.skip("scipy too old")
    rng = np.random.default_rng(0)
    y = rng.normal(size=200).cumsum() * 0.1 + rng.normal(size=200)
    w = rng.uniform(0.5, 2.0, size=200)
    starts, vals = pav(y, w)
    fit = np.repeat(vals, np.diff(np.append(starts, len(y))))
    ref = opt.isotonic_regression(y, weights=w).x
    np.testing.assert_allclose(fit, ref, atol=1e-10)
    assert np.all(np.diff(fit) >= -1e-12)


def test_isotonic_knots_and_histogram_values_hand():
    xk, yk = isotonic_fit(np.array([0.1, 0.2, 0.3, 0.4]), np.array([0.0, 1.0, 0.0, 1.0]))
    # PAV pools (0.2, 0.3) -> 0.5: fit 0, .5, .5, 1
    assert np.interp([0.1, 0.25, 0.4, 0.9], xk, yk).tolist() == pytest.approx([0.0, 0.5, 1.0, 1.0])
    # histogram binning, 2 bins: class-0 probabilities .7 .8 (bin 1, labels 0,1 -> .5) and .3 (bin 0, label 1 -> 0)
    z = torch.log(torch.tensor([[0.7, 0.3], [0.8, 0.2], [0.3, 0.7]], dtype=torch.float64))
    h = HistogramBinning(n_bins=2).fit(z, torch.tensor([0, 1, 1]))
    assert h.values[0].tolist() == pytest.approx([0.0, 0.5])
    assert h.values[1].tolist() == pytest.approx([0.5, 1.0])  # class 1: bin0 {.3,.2} labels (0,1); bin1 {.7} label 1
