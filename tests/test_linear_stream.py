"""Vocabulary-streamed linear + loss: value and gradients equal the materialised computation, and the
extra memory does not grow with the number of classes."""

from __future__ import annotations

import json

import pytest
import torch

from losscli.errors import UsageError
from losscli.losses import LOSSES, build_loss, linear_loss
from losscli.losses.linear import rowwise_losses
from losscli.losses.stream_terms import PLANS, streaming_support
from tests.cli_helpers import invoke

N, D, C = 23, 6, 11
COUNTS = [50, 3, 20, 7, 1, 90, 12, 0, 5, 40, 9]  # one absent class
ALPHA = [0.25 + 0.05 * k for k in range(C)]

# (loss, its parameters); class counts are added for the losses that need them
CASES = [
    ("ce", {}),
    ("label_smoothing", {"epsilon": 0.2}),
    ("logz_penalty", {"coef": 0.05}),
    ("logz_penalty", {"coef": 0.01, "base": "focal(gamma=1.5)"}),
    ("logz_penalty", {"coef": 0.02, "base": "nfl_rce"}),
    ("focal", {"gamma": 2.0}),
    ("focal", {"gamma": 0.5, "alpha": ALPHA}),
    ("focal", {"gamma": 0.0}),
    ("poly1", {"epsilon": 2.0}),
    ("poly1_focal", {"epsilon": 0.5, "gamma": 1.0}),
    ("gce", {"q": 0.7}),
    ("mae", {"scale": 2.0}),
    ("taylor_ce", {"order": 1}),
    ("taylor_ce", {"order": 2}),
    ("taylor_ce", {"order": 5}),
    ("comp_sum", {"tau": 1.0}),
    ("comp_sum", {"tau": 0.5}),
    ("comp_sum", {"tau": 1.6}),
    ("logit_adjusted", {"tau": 0.8}),
    ("balanced_softmax", {}),
    ("class_balanced", {"beta": 0.99}),
    ("class_balanced", {"beta": 0.9, "base": "label_smoothing(epsilon=0.3)"}),
    ("power_law_weighted", {"alpha": 0.5}),
    ("ldam", {"max_m": 0.5, "s": 4.0}),
    ("nce", {"scale": 2.0}),
    ("nce_mae", {"alpha": 10.0, "beta": 1.0}),
    ("rce", {"scale": 1.5}),
    ("sce", {"alpha": 0.1, "beta": 1.0}),
    ("nce_rce", {"alpha": 1.0, "beta": 1.0}),
    ("ngce", {"q": 0.7, "scale": 2.0}),
    ("nfl", {"gamma": 0.5}),
    ("nfl", {"gamma": 2.0}),
    ("nfl", {"gamma": 1.0}),
    ("nfl", {"gamma": 0.0}),
    ("nfl_rce", {"alpha": 1.0, "beta": 1.0, "gamma": 0.5}),
]
IDS = [f"{n}-{'-'.join(f'{k}={v}' for k, v in p.items() if k != 'alpha')}" for n, p in CASES]


def _data(dtype, n=N, d=D, c=C, seed=0, scale=1.0):
    g = torch.Generator().manual_seed(seed)
    h = (scale * torch.randn(n, d, generator=g, dtype=torch.float64)).to(dtype).requires_grad_(True)
    w = torch.randn(c, d, generator=g, dtype=torch.float64).to(dtype).requires_grad_(True)
    b = torch.randn(c, generator=g, dtype=torch.float64).to(dtype).requires_grad_(True)
    t = torch.randint(0, c, (n,), generator=g)
    t[[2, 11]] = -100
    return h, w, b, t


def _kwargs(name, params, weighted):
    kw = dict(params)
    if LOSSES.get(name).info.needs_class_counts:
        kw["class_counts"] = COUNTS
    if weighted:
        kw["weight"] = torch.linspace(0.5, 2.0, C, dtype=torch.float64)
    return kw


def _compare(name, params, dtype, tol, reduction, weighted, scale=1.0, chunk=5, block=4):
    h, w, b, t = _data(dtype, scale=scale)
    kw = _kwargs(name, params, weighted)
    ref_fn = build_loss(name, reduction=reduction, **kw)
    ref = ref_fn(torch.nn.functional.linear(h, w, b), t)
    got = linear_loss(h, w, t, build_loss(name, reduction=reduction, **kw), bias=b, chunk_size=chunk,
                      vocab_block=block, reduction=reduction, stream=True)
    up = torch.randn(ref.shape, dtype=ref.dtype, generator=torch.Generator().manual_seed(1)) if reduction == "none" else 1.0
    g_got = torch.autograd.grad((got * up).sum(), (h, w, b))
    g_ref = torch.autograd.grad((ref * up).sum(), (h, w, b))
    assert got.dtype == ref.dtype
    torch.testing.assert_close(got, ref, rtol=tol, atol=tol)
    for what, a, r in zip(("hidden", "weight", "bias"), g_got, g_ref):
        assert torch.isfinite(a).all(), what
        torch.testing.assert_close(a, r, rtol=tol, atol=tol, msg=lambda m: f"grad {what}: {m}")
    return got


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("name,params", CASES, ids=IDS)
def test_streamed_matches_materialised_float64(name, params, reduction):
    _compare(name, params, torch.float64, 1e-10, reduction, weighted=False)


@pytest.mark.parametrize("reduction", ["mean", "none"])
@pytest.mark.parametrize("name,params", [c for c in CASES if LOSSES.get(c[0]).info.supports_weight],
                         ids=[i for i, c in zip(IDS, CASES) if LOSSES.get(c[0]).info.supports_weight])
def test_streamed_matches_materialised_with_class_weights(name, params, reduction):
    _compare(name, params, torch.float64, 1e-10, reduction, weighted=True)


@pytest.mark.parametrize("name,params", CASES, ids=IDS)
def test_streamed_matches_materialised_float32(name, params):
    _compare(name, params, torch.float32, 2e-5, "mean", weighted=False)


@pytest.mark.parametrize("chunk,block", [(1, 1), (23, 11), (100, 100), (7, 3), (None, None)])
def test_block_shapes(chunk, block):
    _compare("label_smoothing", {"epsilon": 0.1}, torch.float64, 1e-10, "mean", weighted=True, chunk=chunk, block=block)


@pytest.mark.parametrize("name,params", [c for c in CASES if c[0] in ("ce", "label_smoothing", "focal", "gce",
                                                                       "logz_penalty", "taylor_ce", "nce", "rce",
                                                                       "ngce", "nfl", "nfl_rce")])
def test_extreme_logits_stay_finite_and_exact(name, params):
    # logits in the thousands: p_y is 1 or underflows for most rows; the online logsumexp and the
    # exact 1 - p_y keep values and gradients finite and equal to the materialised ones
    got = _compare(name, params, torch.float64, 1e-9, "none", weighted=False, scale=300.0)
    assert torch.isfinite(got).all()


def test_every_listed_loss_streams_and_the_rest_fall_back_with_a_reason():
    must = ["ce", "label_smoothing", "logz_penalty", "focal", "poly1", "gce", "mae", "taylor_ce", "comp_sum",
            "logit_adjusted", "balanced_softmax", "class_balanced", "ldam"]
    for name in must:
        ok, how = streaming_support(name)
        assert ok and "stream" in how, (name, how)
    for name in rowwise_losses():
        ok, how = streaming_support(name)
        assert ok == (name in PLANS), name
        if not ok:
            assert how.startswith("row chunking: ") and len(how) > 30
    ok, how = streaming_support("jaccard")
    assert not ok and "batch-coupled" in how


@pytest.mark.parametrize("name,params", [("nfl_rce", {"gamma": 0.5}), ("ngce", {"q": 0.7})])
def test_sum_terms_evaluated_in_column_slices_change_nothing(name, params, monkeypatch):
    # the second sweep's terms run on column slices of each vocabulary block (bounded temporaries)
    from losscli.losses import linear_stream

    monkeypatch.setattr(linear_stream, "_TERM_COLUMNS", 2)
    _compare(name, params, torch.float64, 1e-10, "none", weighted=False, block=5)


def test_fallback_and_forced_modes():
    h, w, b, t = _data(torch.float64)
    with pytest.raises(UsageError, match="cannot stream 'mbls'"):
        linear_loss(h, w, t, "mbls", stream=True)
    with pytest.raises(UsageError, match="cannot stream 'logz_penalty'"):
        linear_loss(h, w, t, "logz_penalty(base=mbls)", stream=True)
    ref = build_loss("mbls")(torch.nn.functional.linear(h, w, b), t)
    torch.testing.assert_close(linear_loss(h, w, t, "mbls", bias=b, vocab_block=3), ref)  # row chunking
    row = linear_loss(h, w, t, "focal", bias=b, stream=False)
    torch.testing.assert_close(row, linear_loss(h, w, t, "focal", bias=b, vocab_block=3))
    with pytest.raises(UsageError, match="vocab_block"):
        linear_loss(h, w, t, vocab_block=0)


def test_per_class_vectors_must_match_the_classifier():
    h, w, b, t = _data(torch.float64)
    with pytest.raises(UsageError, match="C=11"):
        linear_loss(h, w, t, "balanced_softmax", class_counts=COUNTS[:5])
    with pytest.raises(UsageError, match="C=11"):
        linear_loss(h, w, t, "focal", alpha=[1.0, 2.0])


@pytest.mark.parametrize("name", ["ce", "nfl_rce"])  # one sweep, two sweeps
def test_low_precision_inputs_accumulate_in_float32(name):
    h, w, b, t = _data(torch.bfloat16)
    got = linear_loss(h, w, t, name, bias=b, vocab_block=4)
    ref = build_loss(name)(torch.nn.functional.linear(h, w, b), t)
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, ref, rtol=2e-2, atol=2e-2)
    gh, gw = torch.autograd.grad(got, (h, w))
    assert gh.dtype == gw.dtype == torch.bfloat16


def _extra_peak_bytes(c, stream, loss="focal"):
    """Peak bytes allocated during forward+backward beyond the gradients every method must hold."""
    from losscli.profiling.memory import cpu_peak_delta_bytes

    n, d = 256, 8
    g = torch.Generator().manual_seed(0)
    h = torch.randn(n, d, generator=g, requires_grad=True)
    w = torch.randn(c, d, generator=g, requires_grad=True)
    t = torch.randint(0, c, (n,), generator=g)
    peak = cpu_peak_delta_bytes(lambda: linear_loss(h, w, t, loss, chunk_size=64, vocab_block=256,
                                                    stream=stream).backward())
    return peak - h.grad.nbytes - w.grad.nbytes


@pytest.mark.parametrize("loss", ["focal", "nfl_rce"])  # one sweep; two sweeps with two sum terms
def test_streamed_extra_memory_does_not_grow_with_the_vocabulary(loss):
    small, large = _extra_peak_bytes(1024, True, loss), _extra_peak_bytes(16384, True, loss)
    # a 64 x 256 float32 block is 64 KB; the streamed path holds a few such blocks whatever C is
    assert large < 1.25 * small + 64 * 1024, (small, large)
    assert large < 1024 * 1024
    # the same check fails for row chunking, whose chunks hold [64, C] logits
    row_small, row_large = _extra_peak_bytes(1024, False, loss), _extra_peak_bytes(16384, False, loss)
    assert row_large > 4 * row_small, (row_small, row_large)


def test_losses_command_says_whether_linear_loss_streams(capsys):
    code, out, _ = invoke(["losses", "gce", "--format", "json"], capsys)
    assert code == 0
    assert json.loads(out)["linear_loss"] == {"supported": True, "streams": True, "how": streaming_support("gce")[1]}
    code, out, _ = invoke(["losses", "dice"], capsys)
    assert code == 0 and "linear_loss: row chunking: " in out
    code, out, _ = invoke(["losses", "nfl"], capsys)
    assert code == 0 and "two sweeps" in out
