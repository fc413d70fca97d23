"""The shortcuts that cut the fixed per-call cost of the fused losses at small shapes (128 x 10) change no bits."""

from __future__ import annotations

import inspect

import pytest
import torch

from losscli.losses import build_loss
from losscli.losses.fused import softmax_core
from losscli.losses.fused.softmax_core import _Blocked, _LogSoftmaxAt, saturated_target, target_log_prob


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("n_sat", [0, 1, 5, 40, 128])
def test_small_saturated_target_sums_every_row_with_the_same_bits(dtype, n_sat):
    g = torch.Generator().manual_seed(n_sat)
    z = torch.randn(128, 10, generator=g, dtype=dtype) * 0.3  # no row saturates on its own
    t = torch.randint(0, 10, (128,), generator=g)
    z[torch.arange(n_sat), t[:n_sat]] += torch.linspace(5.0, 60.0, n_sat, dtype=dtype)
    p, idx = torch.softmax(z, dim=1), t.unsqueeze(1)
    general = saturated_target(p.clone(), idx)  # nonzero: the saturated rows only, when they are few
    if n_sat == 0:
        assert general is None
        return
    known = saturated_target(p, idx, p.gather(1, idx))  # every row summed (small block, some row saturates)
    assert torch.equal(general[0], known[0]) and torch.equal(general[1], known[1])
    assert torch.equal(p, torch.softmax(z, dim=1))  # p restored exactly


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_target_log_prob_from_the_extremes_equals_the_separate_checks(dtype):
    g = torch.Generator().manual_seed(3)
    z = torch.randn(128, 10, generator=g, dtype=dtype) * 3
    t = torch.randint(0, 10, (128,), generator=g)
    idx = t.unsqueeze(1)
    low = -200.0 if dtype == torch.float32 else -1500.0
    for rows, shift in (([], 0.0), ([0, 7], 50.0), ([1, 2], low), ([3], low * 0.45)):
        zz = z.clone()
        zz[rows, t[rows]] += shift
        p = torch.softmax(zz, dim=1)
        lp, om = target_log_prob(zz, p, idx)
        ref = softmax_core.log_p_at(zz, p, idx)
        sat = saturated_target(p, idx)
        if sat is None:
            assert om is None and torch.equal(lp, ref)
        else:
            assert torch.equal(lp, torch.where(sat[0], torch.log1p(-sat[1]), ref)) and torch.equal(om, sat[1])


def test_positional_signature_binds_like_inspect():
    for node in (_LogSoftmaxAt, _Blocked):
        sig = inspect.signature(node.forward)
        plain = inspect.Signature(list(sig.parameters.values()))
        for args, kwargs in (((1, 2, 3, 4, 5), {}), ((1, 2, 3, 4), {}), ((1, 2, 3), {"offset": 4, "shift": 5})):
            try:
                expected = plain.bind(*args, **kwargs)
            except TypeError:
                with pytest.raises(TypeError):
                    sig.bind(*args, **kwargs)
                continue
            expected.apply_defaults()
            bound = sig.bind(*args, **kwargs)
            bound.apply_defaults()
            assert bound.args == expected.args and bound.kwargs == expected.kwargs


@pytest.mark.parametrize("name", ["nce_rce", "sce", "dice", "nfl"])
def test_one_block_outputs_may_be_modified_in_place(name):
    g = torch.Generator().manual_seed(0)
    z = torch.randn(16, 5, generator=g, dtype=torch.float64)
    t = torch.randint(0, 5, (16,), generator=g)
    loss = build_loss(name, reduction="none")
    z1 = z.clone().requires_grad_(True)
    (loss(z1, t) * 3.0).sum().backward()
    z2 = z.clone().requires_grad_(True)
    v = loss(z2, t)
    v.mul_(3.0)  # a view returned by the node would refuse this
    v.sum().backward()
    assert torch.equal(z1.grad, z2.grad)


def test_range_check_still_refuses_bad_targets_and_takes_ignore_index():
    z = torch.randn(4, 3)
    with pytest.raises(Exception, match="target values must be in"):
        build_loss("gce")(z, torch.tensor([0, 1, 3, 2]))
    v = build_loss("gce", reduction="none")(z, torch.tensor([0, -100, 2, 1]))
    assert v[1] == 0
