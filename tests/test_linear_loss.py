"""Chunked linear + loss: value and gradients equal the materialised computation."""

from __future__ import annotations

import pytest
import torch

from losscli.errors import UsageError
from losscli.losses import LOSSES, linear_loss
from losscli.losses.linear import default_chunk_size, materialised_linear_loss, rowwise_losses

LOSS_CASES = [("ce", {}), ("label_smoothing", {"epsilon": 0.2}), ("focal", {"gamma": 2.0}), ("gce", {"q": 0.7}),
              ("logz_penalty", {"coef": 1e-2})]


def _data(dtype, n=23, d=6, c=9, seed=0):
    g = torch.Generator().manual_seed(seed)
    h = torch.randn(n, d, generator=g, dtype=torch.float64).to(dtype).requires_grad_(True)
    w = torch.randn(c, d, generator=g, dtype=torch.float64).to(dtype).requires_grad_(True)
    b = torch.randn(c, generator=g, dtype=torch.float64).to(dtype).requires_grad_(True)
    t = torch.randint(0, c, (n,), generator=g)
    t[[2, 11]] = -100
    return h, w, b, t


def _supports_weight(name):
    return LOSSES.get(name).info.supports_weight


@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-10), (torch.float32, 2e-4)])
@pytest.mark.parametrize("name,params", LOSS_CASES)
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("stream", [False, None])  # row chunking, and the default (streamed for these)
def test_chunked_matches_materialised(name, params, dtype, tol, reduction, weighted, stream):
    if name not in LOSSES:
        pytest.skip(f"{name} not registered yet")
    if weighted and not _supports_weight(name):
        pytest.skip(f"{name} has no per-class weights")
    h, w, b, t = _data(dtype)
    extra = dict(params)
    if weighted:
        extra["class_weight"] = torch.linspace(0.5, 2.0, w.shape[0], dtype=torch.float64)
    got = linear_loss(h, w, t, name, bias=b, chunk_size=5, reduction=reduction, stream=stream, **extra)  # 5 does not divide 23
    ref = materialised_linear_loss(h, w, t, name, bias=b, reduction=reduction, **extra)
    up = torch.randn(ref.shape, dtype=ref.dtype, generator=torch.Generator().manual_seed(1)) if reduction == "none" else 1.0
    g_got = torch.autograd.grad((got * up).sum(), (h, w, b))
    g_ref = torch.autograd.grad((ref * up).sum(), (h, w, b))
    torch.testing.assert_close(got, ref, rtol=tol, atol=tol)
    for a, r in zip(g_got, g_ref):
        torch.testing.assert_close(a, r, rtol=tol, atol=tol)


@pytest.mark.parametrize("chunk", [1, 4, 7, 23, 100, None])
@pytest.mark.parametrize("stream", [False, None])
def test_chunk_sizes_without_bias(chunk, stream):
    h, w, _, t = _data(torch.float64)
    got = linear_loss(h, w, t, "ce", chunk_size=chunk, stream=stream)
    ref = materialised_linear_loss(h, w, t, "ce")
    ga, gr = torch.autograd.grad(got, (h, w)), torch.autograd.grad(ref, (h, w))
    torch.testing.assert_close(got, ref)
    for a, r in zip(ga, gr):
        torch.testing.assert_close(a, r)


def test_only_weight_requires_grad_and_spec_string():
    h, w, b, t = _data(torch.float64)
    h = h.detach()
    got = linear_loss(h, w, t, "label_smoothing(epsilon=0.3)", bias=b.detach(), chunk_size=6)
    ref = materialised_linear_loss(h, w, t, "label_smoothing", bias=b.detach(), epsilon=0.3)
    torch.testing.assert_close(torch.autograd.grad(got, w)[0], torch.autograd.grad(ref, w)[0])


def test_no_grad_forward():
    h, w, b, t = _data(torch.float32)
    with torch.no_grad():
        v = linear_loss(h, w, t, bias=b, chunk_size=4)
    assert torch.isfinite(v) and not v.requires_grad


@pytest.mark.parametrize("name", ["jaccard", "kd", "bce", "dhkd", "aldr_kl", "harmonic"])
def test_rejects_unsupported_losses(name):
    if name not in LOSSES:
        pytest.skip(f"{name} not registered yet")
    h, w, b, t = _data(torch.float32)
    with pytest.raises(UsageError, match="linear_loss does not support"):
        linear_loss(h, w, t, name)


def test_rejects_bad_shapes_and_lists_supported():
    h, w, b, t = _data(torch.float32)
    with pytest.raises(UsageError):
        linear_loss(h, w[:, :3], t)
    with pytest.raises(UsageError):
        linear_loss(h, w, t, chunk_size=0)
    assert "ce" in rowwise_losses()
    assert default_chunk_size(8192, 65536) * 65536 * 4 <= 32 * 2**20


def test_chunked_never_holds_full_logits():
    from losscli.profiling.memory import measure_peak
    # row chunking is the path under test here (ce would stream by default)

    n, d, c = 512, 16, 4096  # full logits: 8 MB
    h = torch.randn(n, d, requires_grad=True)
    w = torch.randn(c, d, requires_grad=True)
    t = torch.randint(0, c, (n,))
    chunked = measure_peak(lambda: linear_loss(h, w, t, chunk_size=32, stream=False).backward(), torch.device("cpu"))
    h.grad = w.grad = None
    full = measure_peak(lambda: materialised_linear_loss(h, w, t).backward(), torch.device("cpu"))
    assert chunked["peak_delta_mb"] < 0.5 * full["peak_delta_mb"]


@pytest.mark.parametrize("stream", [False, None])
def test_second_backward_with_retain_graph(stream):
    h, w, b, t = _data(torch.float64)
    got = linear_loss(h, w, t, bias=b, chunk_size=4, stream=stream)
    g1 = torch.autograd.grad(got, (h, w, b), retain_graph=True)
    g2 = torch.autograd.grad(got, (h, w, b))
    for a, r in zip(g1, g2):
        torch.testing.assert_close(a, r)
