"""DHKD: dual-head knowledge distillation (Yang et al., 2024; LOSSES-2.md §6).

The student gets two linear heads on the same features (``make_head`` -> ``DualHead``, output
``[N, 2C]``): the main head ``z0`` (first C columns) takes ``gamma * CE`` and makes the
predictions; the auxiliary head ``z1`` takes ``alpha * BinaryKL-Norm`` against the teacher:

    BinaryKLNorm(z1, t) = T^2 sum_c KL(Bern(1/2) || Bern(d_c)),  d_c = sigmoid((z1_c - t_c) / T)
                        = T^2 sum_c [-log d_c / 2 - log(1 - d_c) / 2 - log 2]

which is ``T^2 sum_c log cosh(x_c / 2)`` (``x = z1 - t`` over T), computed exactly (no clamp) in one
row-blocked node with the main head's CE.
"""

from __future__ import annotations

import math

import torch
from losscli.losses.base import Loss, LossInputError, Param, Reference, register_loss
from losscli.losses.fused.npmath import log1p_
from losscli.losses.fused.row_linear import ce_block
from losscli.losses.fused.select import float_mask
from losscli.losses.fused.softmax_core import blocked
from losscli.losses.heads import DualHead
from losscli.losses.fused.transforms import can_inspect_values


def _log_cosh_and_tanh(a: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(log cosh a, tanh a)`` for ``a >= 0``, exact to float rounding, with three transcendental passes.

    Below 1, ``log cosh a = -log1p(-tanh^2 a) / 2`` (no cancellation near 0, where it is ~a^2/2);
    from 1 on, ``a - log 2 + log1p(e^{-2a})`` (every term positive after ``a - log 2 >= 0.3``). One
    ``log1p`` serves both, its argument chosen per entry with a branch-free select (each branch's
    input is clamped into its own range, so the unused one stays finite).

    Both selects are ``select.select``'s ``b - m b + m a`` written in place over ``b`` (a fresh
    tensor), with ``a``'s own product folded into the last ``addcmul_`` (``-(m t) t`` and
    ``-0.5 m ln``): where ``m = 1`` the base ``b - b`` is an exact 0, so each entry is the rounded
    ``-t^2`` or the exact ``-ln / 2`` as before, bit for bit, with four fewer fresh ``[B, C]`` tensors.
    """
    t = torch.tanh(a)
    small = float_mask(a, torch.lt, 1.0)
    big_a = a.clamp_min(1.0)
    arg = torch.mul(big_a, -2.0).exp_()
    arg.addcmul_(small, arg, value=-1.0).addcmul_(torch.mul(small, t), t, value=-1.0)  # -t^2 if small else e^{-2a}
    ln = log1p_(arg)
    out = big_a.sub_(math.log(2.0)).add_(ln)
    return out.addcmul_(small, out, value=-1.0).addcmul_(small, ln, value=-0.5), t


def binary_kl_norm(student: torch.Tensor, teacher: torch.Tensor, temperature: float) -> torch.Tensor:
    """``T^2 sum_c KL(Bern(1/2) || Bern(sigmoid(x_c)))`` with ``x = (s - t) / T``; the KL is ``log cosh(x/2)``
    (``-(log sigmoid(x) + log sigmoid(-x))/2 - log 2``), computed without the cancellation near ``x = 0``."""
    x = (student - teacher) / temperature
    return temperature**2 * _log_cosh_and_tanh(x.abs() * 0.5)[0].sum(dim=1)


def _dhkd_block(z, teacher, idx, h, c, temperature, alpha, gamma):
    """One row block of ``gamma CE(z0, y) + alpha BinaryKL-Norm(z1, t)`` on ``z = [z0, z1]``.

    Gradient: ``gamma (p - e_y)`` on the main head, ``alpha (T/2) tanh(x/2)`` on the auxiliary one.
    """
    ce = ce_block(z[:, :c], idx, None if h is None else h[:, :c])
    x = torch.sub(z[:, c:], teacher).div_(temperature)
    half = x.abs().mul_(0.5)
    kl, t = _log_cosh_and_tanh(half)
    if h is not None:
        if gamma != 1.0:
            h[:, :c].mul_(gamma)
        torch.mul(t.copysign_(x), alpha * temperature / 2.0, out=h[:, c:])
    return gamma * ce + (alpha * temperature**2) * kl.sum(dim=1)


def dhkd_per_sample(logits, teacher, target, temperature, alpha, gamma):
    c = teacher.shape[1]
    return blocked(logits, lambda zb, hb, tb, yb: _dhkd_block(zb, tb, yb.unsqueeze(1), hb, c, temperature, alpha, gamma),
                   teacher, target)


@register_loss(
    "dhkd",
    aliases=("dual_head_kd",),
    family="distillation",
    reference=Reference(
        "Dual-Head Knowledge Distillation: Enhancing Logits Utilization with an Auxiliary Head",
        "Yang, Zong, Huang, Feng & An", 2024, "arXiv", "https://github.com/penghui-yang/DHKD",
    ),
    formula="[z0, z1] = dual head output;  l = gamma CE(z0, y) + alpha T^2 sum_c KL(Bern(1/2) || Bern(d_c)), "
    "d_c = sigmoid((z1_c - t_c) / T)",
    params=(
        Param("temperature", 2.0, "T of BinaryKL-Norm (official BinaryKL_T = 2)", low=0.0, low_open=True),
        Param("alpha", 1.0, "weight of BinaryKL-Norm on the auxiliary head (README: 1 for CIFAR-100, 0.1 for ImageNet; "
              "the code has no default)", low=0.0),
        Param("gamma", 1.0, "weight of CE on the main head (official -r = 1)", low=0.0),
        Param("aux_head", "linear", "auxiliary head: 'linear' (code default) or 'nonlinear' (the CIFAR README's "
              "--nonlinear: Linear(d,200)-Dropout-BN-ReLU-Linear(200,C))", kind="str", choices=("linear", "nonlinear")),
    ),
    convex=True,
    head="dual",
    needs=("teacher_logits",),
    notes="Needs its dual head: the engine installs make_head(in_features, num_classes) (DualHead, output [N, 2C] = "
    "[main, auxiliary]) and feeds that output to the loss; prediction_logits returns the main head (the first C "
    "columns), so evaluation uses the main head only. teacher_logits are [N, C] (detached). Official distill="
    "'dhkd': no KD term on the main head, no CE on the auxiliary one, sum over classes, mean over the batch. "
    "BinaryKL-Norm uses the exact log-sigmoid form; the official code clamps d to [1e-8, 1-1e-8] (which differs "
    "only where |z1 - t| / T > ~18, where the clamp zeroes the gradient). The optional gradient alignment (--ga, "
    "PCGrad-like projection of the KD gradient) is an optimizer step, not part of the loss: not included. "
    "Convex in the head outputs.",
)
class DHKD(Loss):
    def per_sample(self, logits, target, teacher_logits=None, **context):
        n, width = logits.shape
        if width % 2:
            raise LossInputError(f"dhkd: the dual head's output is [N, 2C] (main, auxiliary), got {width} columns")
        c = width // 2
        if not isinstance(teacher_logits, torch.Tensor) or tuple(teacher_logits.shape) != (n, c):
            shape = list(teacher_logits.shape) if isinstance(teacher_logits, torch.Tensor) else type(teacher_logits).__name__
            raise LossInputError(f"dhkd: teacher_logits must be [N, C] = [{n}, {c}] (half the dual head's width), got {shape}")
        if n and can_inspect_values(target) and bool((target >= c).any()):
            raise LossInputError(f"dhkd: target values must be in [0, {c - 1}] (C = half the dual head's width)")
        teacher = teacher_logits.detach().to(device=logits.device, dtype=logits.dtype)
        return dhkd_per_sample(logits, teacher, target, self.temperature, self.alpha, self.gamma)

    def make_head(self, in_features, num_classes):
        return DualHead(in_features, num_classes, aux=self.aux_head)

    def prediction_logits(self, logits):
        return logits[..., : logits.shape[-1] // 2]
