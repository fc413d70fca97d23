"""torch.func beyond the registry-wide contract checks (func_grad, func_vmap): the library entry
points people combine with it (linear_loss, a vmapped model ensemble, jacrev) and the one-line
refusal of the losses that cannot run under vmap."""

import pytest
import torch
from torch.func import functional_call, grad, jacrev, stack_module_state, vmap

from losscli.losses import build_loss, linear_loss
from losscli.losses.base import VmapUnsupported


@pytest.mark.parametrize("loss", ["ce", "focal", "nce_rce", "label_smoothing"])
def test_linear_loss_under_grad_and_per_sample_gradients(loss):
    g = torch.Generator().manual_seed(0)
    h = torch.randn(9, 5, generator=g, dtype=torch.float64)
    w = torch.randn(7, 5, generator=g, dtype=torch.float64)
    t = torch.randint(0, 7, (9,), generator=g)
    leaf = w.clone().requires_grad_(True)
    linear_loss(h, leaf, t, loss, reduction="sum").backward()
    torch.testing.assert_close(grad(lambda w_: linear_loss(h, w_, t, loss, reduction="sum"))(w), leaf.grad)
    per = vmap(grad(lambda w_, hi, ti: linear_loss(hi[None], w_, ti[None], loss, reduction="sum")),
               in_dims=(None, 0, 0))(w, h, t)
    torch.testing.assert_close(per.sum(0), leaf.grad)  # the per-sample gradients add up to the batch's


def test_a_vmapped_model_ensemble_trains_on_a_fused_loss_like_a_loop():
    torch.manual_seed(0)
    models = [torch.nn.Linear(4, 3).double() for _ in range(3)]
    params, buffers = stack_module_state(models)
    x = torch.randn(8, 4, dtype=torch.float64)
    y = torch.randint(0, 3, (8,))
    fn = build_loss("focal", gamma=2.0)

    def ensemble_loss(p, b):
        return fn(functional_call(models[0], (p, b), (x,)), y)

    grads = vmap(grad(ensemble_loss), in_dims=(0, 0))(params, buffers)
    for i, m in enumerate(models):
        m.zero_grad()
        fn(m(x), y).backward()
        torch.testing.assert_close(grads["weight"][i], m.weight.grad)
        torch.testing.assert_close(grads["bias"][i], m.bias.grad)


def test_jacrev_of_per_sample_losses_is_block_diagonal():
    z = torch.randn(5, 4, dtype=torch.float64)
    t = torch.randint(0, 4, (5,))
    jac = jacrev(lambda z_: build_loss("gce", reduction="none")(z_, t))(z)  # [5, 5, 4]
    leaf = z.clone().requires_grad_(True)
    build_loss("gce", reduction="sum")(leaf, t).backward()
    torch.testing.assert_close(jac.diagonal(dim1=0, dim2=1).T, leaf.grad)
    off = jac.clone()
    off[torch.arange(5), torch.arange(5)] = 0
    assert bool((off == 0).all())  # row i's loss does not depend on row j


def test_a_loss_with_per_sample_state_refuses_vmap_with_one_line():
    fn = build_loss("aldr_kl")
    z = torch.randn(2, 6, 4)
    t = torch.randint(0, 4, (2, 6))
    with pytest.raises(VmapUnsupported, match="aldr_kl cannot run under torch.func.vmap: it keeps per-sample state"):
        vmap(lambda z_, t_: fn(z_, t_, index=torch.arange(6)))(z, t)
    assert torch.isfinite(grad(lambda z_: build_loss("aldr_kl")(z_, t[0], index=torch.arange(6)))(z[0])).all()
