"""The fused machinery itself: row blocking changes nothing, repeated backward, the malloc settings."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from losscli.losses import LOSSES, build_loss
from losscli.losses.fused import softmax_core
from losscli.losses.fused.softmax_core import first_argmax
from tests.loss_cases import make_context, make_loss

BLOCKED = ["rce", "sce", "nce_rce", "nce_mae", "nfl", "ngce", "nfl_rce", "dice", "asl_single", "bce", "sigmoid_focal",
           "asl", "ovr", "ldr_kl", "aldr_kl", "kd", "mbls", "acls", "circle", "logitnorm", "logitclip", "squentropy",
           "square", "logz_penalty", "spherical_z", "spectral_decoupling"]


def _inputs(name, n=23, c=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, c, generator=g, dtype=torch.float64) * 3
    z[0, 1] += 40.0  # a saturated row
    info = LOSSES.get(name).info
    if info.multilabel:
        t = (torch.rand(n, c, generator=g) < 0.3).double()
    else:
        t = torch.randint(0, c, (n,), generator=g)
    if info.head == "cosine":
        z = torch.tanh(z)
    return z, t


@pytest.mark.parametrize("name", BLOCKED)
def test_row_blocks_change_nothing(name, monkeypatch):
    z, t = _inputs(name)
    results = []
    for elements in (1 << 19, 4 * z.shape[1], z.shape[1]):  # one block, blocks of 4 rows (and a rest), rows
        monkeypatch.setattr(softmax_core, "_BLOCK_ELEMENTS", elements)
        zz = z.clone().requires_grad_(True)
        v = make_loss(name, z.shape[1], reduction="none")(zz, t, **make_context(name, zz.detach()))
        (g,) = torch.autograd.grad(v, zz, torch.linspace(0.5, 1.5, z.shape[0], dtype=z.dtype))
        results.append((v.detach(), g))
    for v, g in results[1:]:
        torch.testing.assert_close(v, results[0][0], rtol=1e-13, atol=1e-15)
        torch.testing.assert_close(g, results[0][1], rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("name", ["nfl", "dice", "sigmoid_focal", "kd", "focal", "gce", "bce"])
def test_repeated_backward_gives_the_same_gradient(name):
    z, t = _inputs(name)
    z.requires_grad_(True)
    v = make_loss(name, z.shape[1])(z, t, **make_context(name, z.detach()))
    (g1,) = torch.autograd.grad(v, z, retain_graph=True)  # the saved template must survive this pass
    (g2,) = torch.autograd.grad(v, z)  # the graph is freed after this one: the template is scaled in place
    torch.testing.assert_close(g1, g2, rtol=0, atol=0)


def test_eval_mode_without_grad_builds_no_gradient_template():
    z, t = _inputs("nfl")
    with torch.no_grad():
        v = build_loss("nfl", reduction="none")(z, t)
    torch.testing.assert_close(v, build_loss("nfl", reduction="none")(z.requires_grad_(True), t).detach())


def test_first_argmax_is_torch_max_including_ties():
    g = torch.Generator().manual_seed(1)
    z = torch.randint(-3, 4, (200, 9), generator=g).float()  # many tied maxima
    zmax = z.amax(dim=1, keepdim=True)
    torch.testing.assert_close(first_argmax(z, zmax), z.max(dim=1, keepdim=True).indices)
    z = torch.randn(50, 1000, generator=g)
    torch.testing.assert_close(first_argmax(z, z.amax(dim=1, keepdim=True)), z.max(dim=1, keepdim=True).indices)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc settings are Linux-only")
def test_malloc_settings_are_applied_at_import_and_can_be_turned_off():
    code = "import losscli.losses as L; print(L.fused.heap.keep_freed_buffers())"
    env = dict(os.environ)
    env.pop("LOSSCLI_MALLOC_TUNING", None)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # this checkout's losscli
    env["PYTHONPATH"] = os.pathsep.join([root, env.get("PYTHONPATH", "")])
    on = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    env["LOSSCLI_MALLOC_TUNING"] = "0"
    off = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    import ctypes

    try:
        ctypes.CDLL(None).gnu_get_libc_version  # noqa: B018
    except AttributeError:
        pytest.skip("not glibc")
    assert on.strip() == "True" and off.strip() == "False"


@pytest.mark.compile
@pytest.mark.parametrize("node", ["sigmoid_focal", "asl", "bce", "nfl_rce", "dice", "kd", "log_softmax_y", "soft_ce"])
def test_fused_nodes_compile_like_eager_on_cpu(node):
    """torch.compile (inductor, CPU) of the fused nodes themselves (the loss modules use the plain
    expressions of sigmoid_focal/asl/bce under compile): same value and gradient as eager."""
    from losscli.losses.fused import sigmoid_terms as S
    from losscli.losses.fused.row_linear import kd, soft_ce
    from losscli.losses.fused.softmax_core import log_softmax_y
    from losscli.losses.fused.dice_asl_terms import SquareDiceTerm
    from losscli.losses.fused.softmax_block import fused_softmax_loss
    from losscli.losses.fused.softmax_terms import NFLTerm, RCETerm

    g = torch.Generator().manual_seed(1)
    base = torch.randn(64, 12, generator=g) * 3
    t = (torch.rand(64, 12, generator=g) < 0.3).float()
    y = torch.randint(0, 12, (64,), generator=g)
    teacher = torch.randn(64, 12, generator=g) * 3
    fns = {
        "sigmoid_focal": lambda z: S.sigmoid_focal(z, t, 0.25, 2.0).mean(),
        "asl": lambda z: S.asl(z, t, 4.0, 0.0, 0.05, 1e-8).mean(),
        "bce": lambda z: S.bce(z, t).mean(),
        "nfl_rce": lambda z: fused_softmax_loss(z, y, [(1.0, NFLTerm(0.5, 1e-30)), (1.0, RCETerm(9.21, 1e-7))]).mean(),
        "dice": lambda z: fused_softmax_loss(z, y, [(1.0, SquareDiceTerm(0.01, 1.0, 1e-30))]).mean(),
        "kd": lambda z: kd(z, teacher, y, 4.0, 0.9).mean(),
        "log_softmax_y": lambda z: -log_softmax_y(z, y).mean(),  # its backward scales p in place
        "soft_ce": lambda z: soft_ce(z, torch.softmax(teacher, dim=1)).mean(),
    }
    torch._dynamo.reset()
    out = []
    for fn in (fns[node], torch.compile(fns[node])):
        z = base.clone().requires_grad_(True)
        v = fn(z)
        v.backward()
        out.append((v.detach(), z.grad))
    torch.testing.assert_close(out[1][0], out[0][0], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(out[1][1], out[0][1], rtol=1e-4, atol=1e-7)


@pytest.mark.compile
@pytest.mark.parametrize("name", ["dice", "nfl", "ldr_kl"])
def test_row_blocked_losses_compile_on_cpu_without_recompiling_per_block(name):
    """Dynamo traced into the block loop (the last block has another size; kernels branch on values) and
    recompiled per block up to its limit: a minute of compiling, then 1.5-2.5x eager's time. The node
    now runs eagerly inside compiled code: no recompilation, eager's value and gradient."""
    from losscli.losses import build_loss

    g = torch.Generator().manual_seed(2)
    base = torch.randn(600, 1000, generator=g) * 3  # three row blocks on CPU, the last a short one
    y = torch.randint(0, 1000, (600,), generator=g)
    loss = build_loss(name)
    torch._dynamo.reset()
    out = []
    with torch._dynamo.config.patch(error_on_recompile=True):
        for fn in (loss, torch.compile(loss)):
            z = base.clone().requires_grad_(True)
            v = fn(z, y)
            v.backward()
            out.append((v.detach(), z.grad))
    torch.testing.assert_close(out[1][0], out[0][0], rtol=1e-6, atol=0)
    torch.testing.assert_close(out[1][1], out[0][1], rtol=0, atol=0)


@pytest.mark.parametrize("name", ["nfl", "nfl_rce", "ngce", "nce", "nce_rce", "nce_mae", "sce", "rce", "asl_single",
                                  "dice", "focal", "poly1", "mae", "gce", "label_smoothing", "kd", "mbls", "squentropy"])
@pytest.mark.parametrize("margin", [17.0, 30.0, 60.0])
def test_saturated_rows_in_float32_match_float64(name, margin):
    """Where p_max rounds to 1 in float32 (1 - p_max and log p_max are then taken from the other
    probabilities), float32 values and gradients agree with float64 to float32 rounding."""
    g = torch.Generator().manual_seed(4)
    z = torch.randn(8, 6, generator=g, dtype=torch.float64)
    z[:4, 2] += margin  # rows 0-1: the target saturates; rows 2-3: a wrong class does
    y = torch.tensor([2, 2, 0, 5, 1, 3, 4, 0])
    ctx64 = make_context(name, z)
    out = {}
    for dtype in (torch.float64, torch.float32):
        zz = z.to(dtype).requires_grad_(True)
        ctx = {k: (v.to(dtype) if isinstance(v, torch.Tensor) and v.is_floating_point() else v) for k, v in ctx64.items()}
        v = make_loss(name, 6, reduction="none")(zz, y, **ctx)
        (grad,) = torch.autograd.grad(v.sum(), zz)
        out[dtype] = (v.double(), grad.double())
    (v64, g64), (v32, g32) = out[torch.float64], out[torch.float32]
    torch.testing.assert_close(v32, v64, rtol=2e-5, atol=1e-30)
    # gradients: to a few float32 ulps of the row's largest terms (the combination G - p sum G rounds there)
    torch.testing.assert_close(g32, g64, rtol=1e-3, atol=1e-5 * float(g64.abs().max()))


#: losses whose float32 input transform (z / T, s z, z + offset, z - mean z) rounds at the logits' offset
#: unless their rows are shifted first (kd at temperature 3 as well: 4 scales exactly)
SHIFTED_TRANSFORM = ["kd", "kd(temperature=3)", "ldam", "logit_adjusted", "balanced_softmax", "spherical_z"]


def _far_logits(offset, c=10):
    z = torch.full((8, c), offset, dtype=torch.float64)
    z[:, 1] += torch.linspace(0.0, 0.5, 8, dtype=torch.float64)
    z[4:] += torch.arange(c, dtype=torch.float64) / 4
    return z.float().double()  # the float32 inputs themselves, exactly


@pytest.mark.parametrize("name", ["nfl", "nfl_rce", "ngce", "nce", "nce_rce", "nce_mae", "sce", "rce", "asl_single",
                                  "dice", "focal", "poly1", "mae", "gce", "label_smoothing", "mbls", "squentropy",
                                  *SHIFTED_TRANSFORM])
@pytest.mark.parametrize("offset", [-1e4, 3e3, 1e4])
def test_logits_far_from_zero_in_float32_match_float64(name, offset):
    """Softmax losses are shift-invariant: logits with a large common offset (here a float32-exact
    one) must lose no more than float32 rounding. ``log p = z - (max z + log S)`` rounded the sum to
    an ulp of the offset (ngce 2.6e-5 relative off at -1e4) before ``SoftmaxBlock`` corrected it; the
    ``SHIFTED_TRANSFORM`` losses were up to 7e-2 off before their rows were shifted. kd's teacher is
    near 0 (a student far from it cancelled ``(t - z) / T`` against the maxima's difference); its KL,
    a difference of larger terms (log S near log C) times T^2, is 6e-6 off at offset 0 already: rtol 1e-5 there."""
    c = 10
    z = _far_logits(offset, c)
    y = torch.tensor([0, 1, 2, 3, 4, 5, 6, 9])
    ctx = {k: v.float().double() for k, v in make_context(name, z).items()}
    v64 = make_loss(name, c, reduction="none")(z, y, **ctx)
    v32 = make_loss(name, c, reduction="none")(z.float(), y, **{k: v.float() for k, v in ctx.items()}).double()
    torch.testing.assert_close(v32, v64, rtol=1e-5 if name.startswith("kd") else 2e-6, atol=1e-30)


@pytest.mark.parametrize("name", SHIFTED_TRANSFORM)
@pytest.mark.parametrize("offset", [-1e4, 1e4])
@pytest.mark.parametrize("spread", [0.01, 3.0])
def test_gradients_far_from_zero_in_float32_match_float64(name, offset, spread):
    """The shifted forms' gradients in float32 against float64, on random rows (spherical_z's carries the
    centring correction, which is 0 in rows whose mean rounds exactly). kd's teacher is far from zero
    here, at another offset (its rows are shifted too)."""
    c = 10
    g = torch.Generator().manual_seed(5)
    z = (offset + spread * torch.randn(16, c, generator=g, dtype=torch.float64)).float().double()
    y = torch.arange(16) % c
    ctx = {k: (v - offset / 2).float().double() for k, v in make_context(name, z).items()}
    out = {}
    for dtype in (torch.float64, torch.float32):
        zz = z.to(dtype).requires_grad_(True)
        v = make_loss(name, c, reduction="none")(zz, y, **{k: v.to(dtype) for k, v in ctx.items()})
        out[dtype] = torch.autograd.grad(v.sum(), zz)[0].double()
    g64 = out[torch.float64]
    torch.testing.assert_close(out[torch.float32], g64, rtol=0, atol=1e-6 * float(g64.abs().max()))


@pytest.mark.parametrize("name", ["logit_adjusted", "balanced_softmax"])
def test_soft_targets_far_from_zero_in_float32_match_float64(name):
    c = 10
    z = _far_logits(1e4, c)
    q = _soft_targets(8, c, 3)
    v64 = make_loss(name, c, reduction="none")(z, q)
    v32 = make_loss(name, c, reduction="none")(z.float(), q.float()).double()
    torch.testing.assert_close(v32, v64, rtol=2e-6, atol=1e-30)


@pytest.mark.parametrize("name", SHIFTED_TRANSFORM)
def test_shifted_rows_gradcheck(name):
    """The shifted forms (taken on a CPU only for rows far from zero) have the same gradients."""
    g = torch.Generator().manual_seed(2)
    z = (100.0 + torch.randn(6, 5, generator=g, dtype=torch.float64)).requires_grad_(True)
    y = torch.tensor([0, 1, 2, 3, 4, 0])
    ctx = make_context(name, z.detach())
    if "teacher_logits" in ctx:
        ctx["teacher_logits"] = ctx["teacher_logits"] - 50.0  # far from zero too
    fn = make_loss(name, 5, reduction="none")
    assert torch.autograd.gradcheck(lambda t: fn(t, y, **ctx), (z,))


def _soft_targets(n, c, seed, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    q = torch.rand(n, c, generator=g, dtype=dtype) ** 4  # some near-zero entries
    q[1] = 0.0
    q[1, 2] = 1.0  # a one-hot row
    return q / q.sum(dim=1, keepdim=True)


@pytest.mark.parametrize("scale", [1.0, 30.0])
def test_soft_ce_node_matches_log_softmax_and_gradchecks(scale):
    from losscli.losses.fused.row_linear import soft_ce

    g = torch.Generator().manual_seed(1)
    z = (torch.randn(9, 7, generator=g, dtype=torch.float64) * scale).requires_grad_(True)
    q = _soft_targets(9, 7, 2) * 1.5  # a weighted target: rows need not sum to 1
    expected = -(q * torch.log_softmax(z, dim=1)).sum(dim=1)
    torch.testing.assert_close(soft_ce(z, q), expected, rtol=1e-12, atol=1e-12)
    assert torch.autograd.gradcheck(lambda t: soft_ce(t, q), (z,))


def test_soft_ce_node_is_finite_at_extreme_logits_in_float32():
    from losscli.losses.fused.row_linear import soft_ce

    z = torch.tensor([[1e4, -1e4, 0.0], [0.0, 1e4, -1e4]], requires_grad=True)
    q = torch.tensor([[0.5, 0.25, 0.25], [0.0, 1.0, 0.0]])
    v = soft_ce(z, q)
    v.sum().backward()
    # row 0: 0.25 * 2e4 + 0.25 * 1e4 exactly; row 1: the target is the maximum, loss 0
    torch.testing.assert_close(v.detach(), torch.tensor([7500.0, 0.0]))
    assert torch.isfinite(z.grad).all()


@pytest.mark.parametrize("norm", ["paper", "mean"])
@pytest.mark.parametrize("gamma", [0.0, 1.5])
def test_spectral_decoupling_node_matches_the_formula(norm, gamma):
    g = torch.Generator().manual_seed(4)
    z = (torch.randn(11, 5, generator=g, dtype=torch.float64) * 3).requires_grad_(True)
    y = torch.randint(0, 5, (11,), generator=g)
    fn = build_loss("spectral_decoupling", lam=0.3, gamma=gamma, norm=norm, reduction="none")
    coef = 0.15 if norm == "paper" else 0.3 / 5
    expected = torch.stack([-torch.log_softmax(z[i], 0)[y[i]] + coef * sum((z[i, k] - gamma) ** 2 for k in range(5))
                            for i in range(11)])
    torch.testing.assert_close(fn(z, y), expected, rtol=1e-12, atol=1e-12)
    assert torch.autograd.gradcheck(lambda t: fn(t, y), (z,))


def test_sparse_soft_ce_equals_the_dense_node_with_repeated_columns():
    from losscli.losses.fused.row_linear import soft_ce, sparse_soft_ce

    g = torch.Generator().manual_seed(6)
    z = (torch.randn(10, 8, generator=g, dtype=torch.float64) * 5).requires_grad_(True)
    cols = torch.randint(0, 8, (10, 4), generator=g)
    cols[:, 3] = cols[:, 2]  # a repeated column: its values add
    vals = torch.rand(10, 4, generator=g, dtype=torch.float64)
    dense = torch.zeros(10, 8, dtype=torch.float64).scatter_add_(1, cols, vals)
    torch.testing.assert_close(sparse_soft_ce(z, lambda cb, vb: (cb, vb), cols, vals), soft_ce(z, dense),
                               rtol=1e-12, atol=1e-12)
    assert torch.autograd.gradcheck(lambda t: sparse_soft_ce(t, lambda cb, vb: (cb, vb), cols, vals), (z,))


def test_branch_free_select_is_exact():
    from losscli.losses.fused.select import float_mask, select

    g = torch.Generator().manual_seed(9)
    a = torch.randn(50, 7, generator=g) * torch.logspace(-30, 30, 7)
    b = torch.randn(50, 7, generator=g) * 1e-38  # subnormal and tiny values survive unchanged
    m = float_mask(a, torch.lt, 0.0)
    assert m.dtype == a.dtype and set(m.unique().tolist()) <= {0.0, 1.0}
    assert torch.equal(select(m, a, b), torch.where(a < 0, a, b))
