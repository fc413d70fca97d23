"""EnsLoss: a random calibrated convex loss per batch, defined through its derivatives (Dai 2024).

LOSSES.md §26. Per batch the derivatives ``g_i = phi'(s_i)`` are drawn at random and
then constrained so that the implied loss is convex (non-decreasing derivative in the
margin), calibrated (``phi'(0) < 0``) and has a super-linear tail. The value returned is
the surrogate ``sg(g_i) * s_i`` whose gradient is ``g_i`` with respect to the margin.
"""

from __future__ import annotations

import torch

from losscli.losses.base import Loss, Param, Reference, register_loss
from losscli.losses.fused.softmax_core import first_argmax
from losscli.losses.fused.transforms import keep_for_backward, rowwise_vmap

_CALIBRATION_SHIFT = 1e-6


@rowwise_vmap(0, 1)
class _Margin(torch.autograd.Function):
    """``z_y - max_{k != y} z_k``, the max's gradient on its first column (as ``torch.max``), one node:
    ``first_argmax`` instead of ``torch.max``'s scalar loop; backward writes two entries per row. The
    second output, the max's column, is kept for backward only."""

    @staticmethod
    def forward(logits, target):
        idx = target.unsqueeze(1)
        others = logits.scatter(1, idx, float("-inf"))
        top = others.amax(dim=1, keepdim=True)
        col = first_argmax(others, top)
        return (logits.gather(1, idx) - top).squeeze(1), col

    @staticmethod
    def setup_context(ctx, inputs, output):
        keep_for_backward(ctx, output[1])
        ctx.save_for_backward(inputs[1].unsqueeze(1), output[1])
        ctx.shape = inputs[0].shape

    @staticmethod
    def backward(ctx, g, _):
        if g is None:  # grads are not materialised (keep_for_backward)
            return None, None
        idx, col = ctx.saved_tensors
        g = g.unsqueeze(-1)
        # out of place first: under torch.func the zeros are not batched while g may be
        return torch.zeros(ctx.shape, dtype=g.dtype, device=g.device).scatter(1, idx, g).scatter_(1, col, -g), None


def margin(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``z_y - max_{k != y} z_k``; for C = 2 this is the paper's ``y~ f(x)`` with ``f = z_1 - z_0``."""
    return _Margin.apply(logits, target)[0]


def inverse_box_cox(xi: torch.Tensor, lam: float) -> torch.Tensor:
    """``BC^{-1}_lam(xi)``: ``exp(xi)`` at lam = 0, else ``max(1 + lam xi, 0)^(1/lam)``."""
    if lam == 0:
        return torch.exp(xi)
    return (1.0 + lam * xi).clamp_min(0.0).pow(1.0 / lam)


def ensloss_derivatives(margins: torch.Tensor, xi: torch.Tensor, lam: float) -> torch.Tensor:
    """The derivatives ``g_i`` assigned to samples with margins ``s_i`` given normal draws ``xi``.

    Sorted ascending and clipped to [-1, 0], the most negative goes to the smallest margin;
    ``g_i / s_i`` where ``s_i > 1``; then ``- 1e-6``.
    """
    g = (-inverse_box_cox(xi, lam)).clamp_min(-1.0)
    g_sorted = torch.sort(g).values
    order = torch.argsort(margins)
    g_assigned = torch.empty_like(g_sorted).scatter_(0, order, g_sorted)
    g_assigned = torch.where(margins > 1, g_assigned / margins.clamp_min(1.0), g_assigned)
    return g_assigned - _CALIBRATION_SHIFT


@register_loss(
    "ensloss",
    family="standard",
    reference=Reference(
        "EnsLoss: Stochastic Calibrated Loss Ensembles for Preventing Overfitting in Classification",
        "Dai", 2024, "arXiv:2409.00908", "https://github.com/statmlben/ensLoss",
    ),
    formula="l_i = sg(g_i) * s_i, s_i = z_y - max_{k!=y} z_k, g_i = -BC^{-1}_lam(xi_i), xi ~ N(0,1), sorted, "
    "clipped to [-1, 0], assigned in ascending margin order, divided by s_i for s_i > 1, minus 1e-6",
    params=(Param("lam", 0.0, "Box-Cox lambda of the derivative distribution (0: log-normal)", low=-1.0, high=1.0),),
    convex=None,
    can_be_negative=True,
    exact_gradient=False,
    deterministic=False,
    supports_weight=True,
    notes="The value is a surrogate: only its gradient (dl_i/ds_i = g_i, random each call) is meaningful, "
    "and values are not comparable across steps. Binary in the paper; losscli applies it to the multiclass "
    "margin z_y - max_{k!=y} z_k (a losscli extension), which for C = 2 equals the paper's y~ (z_1 - z_0). "
    "Randomness comes from a torch.Generator owned by the loss (drawn on CPU, then moved), never the global "
    "RNG: call loss.manual_seed(seed) for reproducibility (default seed fixed). The paper's per-epoch "
    "re-draw of lam ~ U(-1, 1) is not done here (set lam yourself). With ignore_index, the derivatives are "
    "ranked over the rows passed, ignored rows included.",
)
class EnsLoss(Loss):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.generator = torch.Generator()
        self.generator.manual_seed(0)

    def manual_seed(self, seed: int) -> "EnsLoss":
        self.generator.manual_seed(int(seed))
        return self

    def per_sample(self, logits, target, **context):
        s = margin(logits, target)
        xi = torch.randn(s.shape[0], generator=self.generator, dtype=torch.float64).to(s.device)
        with torch.no_grad():
            g = ensloss_derivatives(s.detach().double(), xi, self.lam)
        return g.to(device=s.device, dtype=s.dtype) * s
