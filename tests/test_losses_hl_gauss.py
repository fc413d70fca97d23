"""hl_gauss: truncated-Gaussian histogram targets, CE, and decoding by bin centres."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from losscli.errors import UsageError
from losscli.losses import LOSSES, LossInputError, build_loss


def target_loop(y, vmin, vmax, m, ratio):
    """Appendix A by hand: Phi differences over the edges, divided by the mass inside the support."""
    sigma = ratio * (vmax - vmin) / m
    y = min(max(y, vmin), vmax)
    edges = [vmin + j * (vmax - vmin) / m for j in range(m + 1)]
    phi = [0.5 * (1 + math.erf((b - y) / (math.sqrt(2) * sigma))) for b in edges]
    return [(phi[j + 1] - phi[j]) / (phi[-1] - phi[0]) for j in range(m)]


def test_catalogue_case_and_distribution_sums_to_one():
    fn = build_loss("hl_gauss", vmin=-3.0, vmax=3.0, num_bins=12)  # bin width 0.5, sigma 0.375
    assert fn.sigma == pytest.approx(0.375)
    y = torch.tensor([0.3, -1.2, 2.5], dtype=torch.float64)
    p = fn.target_distribution(y)
    torch.testing.assert_close(p.sum(1), torch.ones(3, dtype=torch.float64))
    for i, yi in enumerate(y.tolist()):
        torch.testing.assert_close(p[i], torch.tensor(target_loop(yi, -3, 3, 12, 0.75), dtype=torch.float64))
    g = torch.Generator().manual_seed(0)
    logits = torch.cat([torch.randn(3, 4, generator=g, dtype=torch.float64)] * 3, dim=1)
    expected = -(p * F.log_softmax(logits, 1)).sum(1)
    torch.testing.assert_close(build_loss("hl_gauss", vmin=-3.0, vmax=3.0, num_bins=12, reduction="none")(logits, y), expected)
    torch.testing.assert_close(fn(logits, y), expected.mean())


def test_out_of_range_targets_are_clamped():
    fn = build_loss("hl_gauss", vmin=0.0, vmax=1.0, num_bins=8)
    far = fn.target_distribution(torch.tensor([-50.0, 50.0]))
    edge = fn.target_distribution(torch.tensor([0.0, 1.0]))
    torch.testing.assert_close(far, edge)
    assert torch.isfinite(far).all()


def test_decode_inverts_sharp_distributions_and_recovers_targets():
    fn = build_loss("hl_gauss", vmin=-2.0, vmax=2.0, num_bins=16)
    centres = torch.linspace(-2, 2, 17, dtype=torch.float64)
    centres = 0.5 * (centres[1:] + centres[:-1])
    sharp = torch.full((16, 16), -1e4, dtype=torch.float64).fill_diagonal_(0.0)  # one-hot at bin j
    torch.testing.assert_close(fn.decode(sharp), centres)
    # decoding the target distribution itself gives y back up to the binning error (sigma = 0.1875, bins 0.25)
    y = torch.tensor([-1.1, -0.3, 0.0, 0.45, 1.2], dtype=torch.float64)
    decoded = fn.decode(torch.log(fn.target_distribution(y)))
    torch.testing.assert_close(decoded, y, atol=1e-4, rtol=0)
    torch.testing.assert_close(fn.decode(torch.log(fn.target_distribution(torch.tensor([0.0])))), torch.tensor([0.0]),
                               atol=1e-6, rtol=0)  # symmetric around a bin edge: exact


def test_minimiser_is_the_target_distribution():
    fn = build_loss("hl_gauss", vmin=0.0, vmax=4.0, num_bins=10)
    y = torch.tensor([1.7], dtype=torch.float64)
    z = torch.zeros(1, 10, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([z], max_iter=500, tolerance_grad=1e-14, tolerance_change=1e-16,
                            line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = fn(z, y)
        loss.backward()
        return loss

    opt.step(closure)
    torch.testing.assert_close(torch.softmax(z.detach(), 1), fn.target_distribution(y), atol=1e-6, rtol=0)


def test_validation():
    with pytest.raises(UsageError, match="vmin must be < vmax"):
        build_loss("hl_gauss", vmin=1.0, vmax=1.0)
    fn = build_loss("hl_gauss", num_bins=4)
    with pytest.raises(LossInputError, match="num_bins"):
        fn(torch.randn(3, 5), torch.randn(3))
    with pytest.raises(LossInputError, match="floating-point regression"):
        fn(torch.randn(3, 4), torch.tensor([0, 1, 2]))
    with pytest.raises(LossInputError, match="finite"):
        fn(torch.randn(3, 4), torch.tensor([0.0, float("nan"), 1.0]))
    info = LOSSES.get("hl_gauss").info
    assert info.target == "regression" and info.defaults() == {"vmin": -10.0, "vmax": 10.0, "num_bins": 51,
                                                              "sigma_ratio": 0.75}


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("num_bins,sigma_ratio", [(51, 0.75), (1000, 0.75), (400, 0.1), (51, 3.0), (7, 0.75)])
def test_windowed_target_is_the_dense_target_bit_for_bit(dtype, num_bins, sigma_ratio):
    # the loss builds the histogram only near each target; beyond erf's saturation every bin is exactly 0
    fn = build_loss("hl_gauss", num_bins=num_bins, sigma_ratio=sigma_ratio)
    g = torch.Generator().manual_seed(num_bins)
    y = torch.cat([torch.randn(300, generator=g, dtype=dtype) * 6,
                   torch.tensor([-10.0, 10.0, -50.0, 50.0, 0.0, 9.999, -9.999, 3.2], dtype=dtype)])
    assert torch.equal(fn.windowed_target_distribution(y), fn.target_distribution(y))
