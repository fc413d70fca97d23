"""Multi-label sigmoid losses (BCE, sigmoid focal, ASL) and single-label ASL.

Multi-label losses take ``[N, C]`` 0/1 targets (1-D class indices are one-hot encoded by
the base class) and their per-sample value is the **sum over the C labels**, so
``reduction="sum"`` equals torchvision's / ASL's sum over all entries (LOSSES.md Part A).
Probabilities come from ``logsigmoid`` / ``log_softmax``; ``1 - sigmoid(z)`` is
``sigmoid(-z)``, never a subtraction.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from losscli.losses.base import Loss, Param, Reference, register_loss
from losscli.losses.fused.powers import pow_scalar
from losscli.losses.fused.softmax_terms import ASLSingleTerm, fused_softmax_loss

_POW_FLOOR = 1e-30  # floor for the base of a fractional power (finite derivative at 0)


def _pow(base: torch.Tensor, gamma: float) -> torch.Tensor:
    """``base ** gamma`` for ``base >= 0`` with finite gradients where ``base`` is 0."""
    if gamma == 0:
        return torch.ones_like(base)
    if gamma >= 1:
        return base.pow(gamma)
    return base.clamp_min(_POW_FLOOR).pow(gamma)


def _sigmoid_neg_above(x: torch.Tensor, th: float) -> torch.Tensor:
    """``sigmoid(-x) * 1[x > th]`` without a mask pass: ``x`` below the threshold becomes +inf."""
    return torch.threshold(x, th, math.inf).neg_().sigmoid_()


class _ASL(torch.autograd.Function):
    """ASL per row for ``gamma_neg >= 1`` and ``clip >= eps`` (``clip > 0``), one autograd node.

    With ``p = sigmoid(z)``, ``q = sigmoid(-z)``, ``p_m = max(p - clip, 0)``:
    ``l = -sum_k [neg_k + Y_k (pos_k - neg_k)]``, ``neg = p_m^gn log(1 - p_m)``, ``pos = q^gp log max(p, eps)``. Since ``1 - p_m >= clip >= eps``
    the negatives' log needs no clamp, and where ``p < clip`` both ``p_m^gn`` and ``d p_m^gn / dz`` are 0
    (``gn >= 1``), so no mask is needed there. Gradients (``pq = p q``):
    ``d neg/dz = pq p_m^(gn-1) (gn log(1 - p_m) - p_m / (1 - p_m))``,
    ``d pos/dz = q^gp (q 1[p >= eps] - gp p log max(p, eps))`` (the ``q^gp`` floor's mask when gp < 1).
    ``q 1[p >= eps]`` is ``sigmoid(-z)`` with ``z`` below ``logit(eps)`` sent to +inf; it also serves for
    ``pq`` (it differs from ``q`` only where ``p < eps <= clip``, where the negatives' gradient is 0).
    """

    @staticmethod
    def forward(ctx, z, t, gamma_neg, gamma_pos, clip, eps):
        t = t.to(z.dtype)
        p = torch.sigmoid(z)
        pm = (p - clip).clamp_min_(0.0)
        log_neg = torch.neg(pm).log1p_()  # >= log(clip) >= log(eps): the clamp is inactive
        wm1 = pow_scalar(pm, gamma_neg - 1.0) if gamma_neg != 1 else None  # p_m^(gn - 1)
        # -sum_k [t pos + (1 - t) neg] = -(sum_k t pos + sum_k neg - sum_k t neg), one [N, C] buffer
        buf = torch.log(p).clamp_min_(math.log(eps))  # log max(p, eps), as ASL's code
        wpos = q = log_pos = None
        if gamma_pos != 0:
            q = torch.sigmoid(-z)
            wpos = pow_scalar(q, gamma_pos) if gamma_pos >= 1 else q.clamp_min(_POW_FLOOR).pow_(gamma_pos)
            log_pos = buf.clone()
            buf.mul_(wpos)
        out = buf.mul_(t).sum(dim=1)
        neg = torch.mul(pm, wm1, out=buf) if wm1 is not None else buf.copy_(pm)
        neg.mul_(log_neg)
        out.add_(neg.sum(dim=1)).sub_(neg.mul_(t).sum(dim=1)).neg_()
        ctx.save_for_backward(z, t, p, pm, log_neg, wm1, wpos, log_pos, q if gamma_pos < 1 else None)
        ctx.params = (gamma_neg, gamma_pos, eps)
        return out

    @staticmethod
    def backward(ctx, grad_out):
        z, t, p, pm, log_neg, wm1, wpos, log_pos, q = ctx.saved_tensors
        gamma_neg, gamma_pos, eps = ctx.params
        qm = _sigmoid_neg_above(z, math.log(eps) - math.log1p(-eps) if eps < 1 else math.inf)
        # negatives: pq p_m^(gn-1) (gn log(1 - p_m) - p_m / (1 - p_m)), -p_m / (1 - p_m) = p_m / (p_m - 1)
        dneg = torch.sub(pm, 1.0)
        torch.div(pm, dneg, out=dneg).add_(log_neg, alpha=gamma_neg)
        if wm1 is not None:
            dneg.mul_(wm1)
        dneg.mul_(p).mul_(qm)
        if gamma_pos == 0:
            dpos = qm
        else:
            corr = wpos * p * log_pos
            if gamma_pos < 1:
                corr.mul_(q >= _POW_FLOOR)
            dpos = torch.mul(wpos, qm).sub_(corr, alpha=gamma_pos)
        grad = dpos.sub_(dneg).mul_(t).add_(dneg)  # dneg + t (dpos - dneg)
        return grad.mul_(grad_out.neg().unsqueeze(1)), None, None, None, None, None


class _SigmoidFocal(torch.autograd.Function):
    """Sigmoid focal loss per row for ``gamma >= 1``, one autograd node (torchvision's maths).

    ``l = sum_k a_t m^gamma b``, ``b = BCEWithLogits(z, Y) = softplus(z) - Y z``, ``m = p + Y - 2 p Y`` (``1 - p_t``),
    ``a_t = (1 - alpha) + (2 alpha - 1) Y`` (1 when alpha < 0). With ``db/dz = p - Y`` and
    ``dm/dz = (1 - 2Y) p (1 - p)`` (torch's sigmoid derivative, as torchvision's autograd):
    ``dl/dz = a_t m^(gamma-1) (m (p - Y) + gamma (1 - 2Y) p (1 - p) b)``.
    """

    @staticmethod
    def forward(ctx, z, t, alpha, gamma):
        t = t.to(z.dtype)
        # BCEWithLogits = -t log p - (1 - t) log(1 - p) = softplus(z) - t z  (log p - log(1 - p) = z)
        b = F.softplus(z, threshold=40.0).addcmul_(z, t, value=-1.0)  # exp(-40): below float64 rounding
        p = torch.sigmoid(z)
        m = torch.addcmul(p, p, t, value=-2.0).add_(t)
        w1 = None if gamma == 1 else (m if gamma == 2 else pow_scalar(m, gamma - 1.0))  # m^(gamma-1)
        buf = torch.mul(m, w1) if w1 is not None else m.clone()
        out = _weighted_row_sum(buf.mul_(b), t, alpha)
        ctx.save_for_backward(t, b, p, m, w1)
        ctx.params = (alpha, gamma)
        return out

    @staticmethod
    def backward(ctx, grad_out):
        t, b, p, m, w1 = ctx.saved_tensors
        alpha, gamma = ctx.params
        buf = torch.mul(p, p).sub_(p).mul_(b)  # -p (1 - p) b
        buf.addcmul_(buf, t, value=-2.0)  # -(1 - 2Y) p (1 - p) b
        grad = torch.sub(p, t).mul_(m).sub_(buf, alpha=gamma)
        if w1 is not None:
            grad.mul_(w1)
        g = grad_out.unsqueeze(1)
        if alpha >= 0:  # a_t g = g (1 - alpha) + g (2 alpha - 1) Y
            torch.mul(grad, t, out=buf)
            grad.mul_(g * (1.0 - alpha)).addcmul_(buf, g * (2.0 * alpha - 1.0))
        else:
            grad.mul_(g)
        return grad, None, None, None


def _weighted_row_sum(x: torch.Tensor, t: torch.Tensor, alpha: float) -> torch.Tensor:
    """``sum_k a_t x_k`` per row, ``a_t = (1 - alpha) + (2 alpha - 1) Y`` (1 when alpha < 0); overwrites ``x``."""
    if alpha < 0:
        return x.sum(dim=1)
    out = x.sum(dim=1).mul_(1.0 - alpha)
    return out.add_(x.mul_(t).sum(dim=1), alpha=2.0 * alpha - 1.0)


_FOCAL_REF = Reference("Focal Loss for Dense Object Detection", "Lin, Goyal, Girshick, He & Dollar", 2017, "ICCV")
_ASL_REF = Reference(
    "Asymmetric Loss For Multi-Label Classification",
    "Ridnik, Ben-Baruch, Zamir, Noy, Friedman, Protter & Zelnik-Manor", 2021, "ICCV",
    "https://github.com/Alibaba-MIIL/ASL",
)


@register_loss(
    "bce",
    aliases=("binary_cross_entropy", "multilabel_bce"),
    family="multi-label",
    reference=Reference("A Review on Multi-Label Learning Algorithms (binary relevance)", "Zhang & Zhou", 2014, "IEEE TKDE"),
    formula="l = sum_k [ -Y_k log sigmoid(z_k) - (1 - Y_k) log sigmoid(-z_k) ]  (BCEWithLogits summed over labels)",
    convex=True,
    multilabel=True,
    notes="Per-sample value is the sum over labels: reduction='sum' equals "
    "F.binary_cross_entropy_with_logits(reduction='sum'); 'mean' is that sum / N (not / N*C). "
    "Targets in [0, 1] (soft multi-label targets) are accepted.",
)
class MultiLabelBCE(Loss):
    def per_sample(self, logits, target, **context):
        return F.binary_cross_entropy_with_logits(logits, target, reduction="none").sum(dim=1)


@register_loss(
    "sigmoid_focal",
    family="multi-label",
    reference=_FOCAL_REF,
    formula="l = sum_k alpha_t (1 - p_t)^gamma BCEWithLogits(z_k, Y_k), p = sigmoid(z), "
    "p_t = p Y + (1-p)(1-Y), alpha_t = alpha Y + (1-alpha)(1-Y)",
    params=(
        Param("alpha", 0.25, "weight of positives (negatives get 1 - alpha); alpha < 0 disables weighting", high=1.0),
        Param("gamma", 2.0, "focusing parameter", low=0.0),
    ),
    convex=False,
    multilabel=True,
    notes="Same maths as torchvision.ops.sigmoid_focal_loss: reduction='sum' equals it with reduction='sum'; "
    "losscli's 'mean' is the sum over labels averaged over N (torchvision's 'mean' averages over N*C). "
    "The focal factor is not detached (true gradient).",
)
class SigmoidFocal(Loss):
    def per_sample(self, logits, target, **context):
        # the default: one fused node in eager mode. Under torch.compile the plain expression is
        # used instead: the compiler fuses it itself, and it mis-compiled this node (GPU test).
        if self.gamma >= 1 and not torch.compiler.is_compiling():
            return _SigmoidFocal.apply(logits, target, self.alpha, self.gamma)
        bce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
        p = torch.sigmoid(logits)
        one_minus_pt = p + target - 2.0 * p * target  # = p (1 - Y) + (1 - p) Y, torchvision's expression
        loss = _pow(one_minus_pt, self.gamma) * bce
        if self.alpha >= 0:
            loss = ((1.0 - self.alpha) + (2.0 * self.alpha - 1.0) * target) * loss
        return loss.sum(dim=1)


@register_loss(
    "asl",
    aliases=("asymmetric",),
    family="multi-label",
    reference=_ASL_REF,
    formula="l = -sum_k [ Y (1-p)^gamma_pos log max(p, eps) + (1-Y) p_m^gamma_neg log max(1-p_m, eps) ], "
    "p = sigmoid(z), p_m = max(p - clip, 0)",
    params=(
        Param("gamma_neg", 4.0, "focusing parameter of negatives", low=0.0),
        Param("gamma_pos", 0.0, "focusing parameter of positives (train.py: 0; the class default is 1)", low=0.0),
        Param("clip", 0.05, "probability margin shifted off negatives", low=0.0, high=1.0),
        Param("eps", 1e-8, "clamp inside the logs", low=0.0, low_open=True, high=1.0),
    ),
    convex=False,
    multilabel=True,
    # the eps clamp inside both logs bounds every label's term by -log(eps) (as APL's clamps bound RCE)
    bounded=True,
    upper_bound=lambda p, c: c * -math.log(p["eps"]),
    notes="AsymmetricLossOptimized semantics: the focusing weights are NOT detached "
    "(disable_torch_grad_focal_loss=False; the AsymmetricLoss class detaches them by default). "
    "Defaults from ASL's train.py (gamma_pos=0). reduction='sum' equals ASL's loss (a sum over batch and labels).",
)
class ASL(Loss):
    def per_sample(self, logits, target, **context):
        fusable = self.gamma_neg >= 1 and self.clip > 0 and self.clip >= self.eps  # the defaults
        if fusable and not torch.compiler.is_compiling():  # as in SigmoidFocal: eager only
            return _ASL.apply(logits, target, self.gamma_neg, self.gamma_pos, self.clip, self.eps)
        log_eps = math.log(self.eps)
        p = torch.sigmoid(logits)
        log_pos = F.logsigmoid(logits).clamp_min(log_eps)  # log max(p, eps), exact in the tail
        if self.clip > 0:  # p_m = max(p - clip, 0); log max(1 - p_m, eps) = log max(min(1 - p + clip, 1), eps)
            p_m = (p - self.clip).clamp_min(0.0)
            log_neg = torch.log((1.0 + self.clip - p).clamp_max(1.0)).clamp_min(log_eps)  # argument >= clip
        else:
            p_m = p
            log_neg = F.logsigmoid(-logits).clamp_min(log_eps)
        pos = log_pos if self.gamma_pos == 0 else _pow(torch.sigmoid(-logits), self.gamma_pos) * log_pos
        neg = _pow(p_m, self.gamma_neg) * log_neg
        return -(target * pos + (1 - target) * neg).sum(dim=1)


@register_loss(
    "asl_single",
    family="imbalance",
    reference=_ASL_REF,
    formula="l = -sum_k t_k w_k log p_k, t = (1-eps) e_y + eps/C, w_y = (1-p_y)^gamma_pos, w_k = p_k^gamma_neg (k != y)",
    params=(
        Param("gamma_pos", 0.0, "focusing exponent of the target class", low=0.0),
        Param("gamma_neg", 4.0, "exponent of the non-target probabilities", low=0.0),
        Param("epsilon", 0.1, "label smoothing mass (the code's eps)", low=0.0, high=1.0),
    ),
    convex=False,
    supports_weight=True,
    notes="ASLSingleLabel of the official code (weights not detached). Negatives only contribute through "
    "the smoothing mass eps/C: with epsilon=0 and gamma_pos=0 it is exactly CE. The parameter is named "
    "epsilon (the code's eps) to match losscli's label_smoothing.",
)
class ASLSingleLabel(Loss):
    def per_sample(self, logits, target, **context):
        # one fused node (same value, hand-derived gradient)
        term = ASLSingleTerm(self.gamma_pos, self.gamma_neg, self.epsilon, _POW_FLOOR)
        return fused_softmax_loss(logits, target, [(1.0, term)])
