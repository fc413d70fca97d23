"""The NumPy-backed in-place log1p / expm1 (losscli.losses.fused.npmath): same values as torch's,
used only where NumPy may work on the tensor's memory, torch's op everywhere else."""

from __future__ import annotations

import pytest
import torch

from losscli.losses.fused import npmath


@pytest.mark.parametrize("op", ["log1p", "expm1"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_equals_torch_to_an_ulp_and_works_in_place(op, dtype):
    gen = torch.Generator().manual_seed(0)
    x = torch.cat([-0.5 * torch.rand(1000, generator=gen, dtype=dtype),
                   torch.tensor([0.0, -0.0, -1e-30, 1e-30, -0.49999, 1e-8, -1e-8, 3.0, -30.0], dtype=dtype)])
    if op == "log1p":
        x = x.clamp_min(-0.99)
    want = getattr(torch, op)(x)
    buf = x.clone()
    out = getattr(npmath, op + "_")(buf)
    assert out is buf  # in place, like Tensor.log1p_
    eps = torch.finfo(dtype).eps
    assert torch.allclose(buf, want, rtol=2 * eps, atol=0.0)
    assert torch.equal(torch.signbit(buf[want == 0]), torch.signbit(want[want == 0]))


def test_uses_numpy_only_where_it_may(monkeypatch):
    calls = []
    real = npmath.np.log1p
    monkeypatch.setattr(npmath.np, "log1p", lambda a, out: calls.append(a.shape) or real(a, out=out))
    plain = -0.25 * torch.ones(4, 3)
    npmath.log1p_(plain.clone())
    assert calls == [(4, 3)]
    calls.clear()
    npmath.log1p_(plain.clone().t())  # not contiguous
    npmath.log1p_(plain.clone().to(torch.bfloat16))  # a dtype NumPy lacks
    with torch.no_grad():
        leaf = plain.clone().requires_grad_(True)
    npmath.log1p_(leaf.detach().clone())  # detached: NumPy again
    assert calls == [(4, 3)]
    calls.clear()
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(npmath.NUMPY_MAX_THREADS + 1)
        npmath.log1p_(plain.clone())  # torch's parallel loop wins there
    finally:
        torch.set_num_threads(threads)
    torch.func.vmap(lambda r: npmath.log1p_(r.clone()))(plain)  # batched wrappers: torch's op
    assert calls == []


def test_dhkd_takes_the_numpy_path_and_keeps_its_gradients(monkeypatch):
    """dhkd's log cosh is the kernel that calls log1p_ (the sigmoid family now takes torch's one-pass
    softplus): NumPy's in-place log1p there must leave autograd's gradient intact."""
    from losscli.losses import build_loss

    calls = []
    real = npmath.np.log1p
    monkeypatch.setattr(npmath.np, "log1p", lambda a, out: calls.append(1) or real(a, out=out))
    monkeypatch.setattr(npmath, "NUMPY_MAX_THREADS", torch.get_num_threads())
    gen = torch.Generator().manual_seed(1)
    z = (4 * torch.randn(16, 10, generator=gen, dtype=torch.float64)).requires_grad_(True)  # [N, 2C]: two heads
    teacher = 4 * torch.randn(16, 5, generator=gen, dtype=torch.float64)
    y = torch.randint(0, 5, (16,), generator=gen)
    assert torch.autograd.gradcheck(lambda zz: build_loss("dhkd")(zz, y, teacher_logits=teacher), (z,))
    assert calls
