"""Spectral Decoupling (Pezeshki et al., NeurIPS 2021; LOSSES-2.md §5): CE plus an L2 penalty on the logits."""

from __future__ import annotations

from losscli.losses.base import Loss, Param, Reference, register_loss
from losscli.losses.ce import soft_cross_entropy
from losscli.losses.fused.row_linear import logit_l2_ce


@register_loss(
    "spectral_decoupling",
    aliases=("sd",),
    family="standard",
    reference=Reference(
        "Gradient Starvation: A Learning Proclivity in Neural Networks",
        "Pezeshki, Kaba, Bengio, Courville, Precup & Lajoie", 2021, "NeurIPS",
        "https://github.com/mpezeshki/Gradient_Starvation",
    ),
    formula="norm='paper': l = CE(z, y) + (lam/2) sum_c (z_c - gamma)^2;  "
    "norm='mean': l = CE(z, y) + lam mean_c (z_c - gamma)^2  (DomainBed's SD)",
    params=(
        Param("lam", 0.1, "penalty strength lambda (DomainBed's sd_reg default 0.1; its search range 1e-5..1e-1)",
              low=0.0),
        Param("gamma", 0.0, "shift: the penalty pulls every logit towards gamma"),
        Param("norm", "paper", "'paper': (lam/2) * sum over classes; 'mean': lam * mean over classes (DomainBed)",
              kind="str", choices=("paper", "mean")),
    ),
    convex=True,
    soft_targets=True,
    supports_weight=True,
    notes="The penalty is on the logits, not the weights (not weight decay). The paper writes it for one "
    "binary logit, (lam/2)||y_hat - gamma||^2; losscli's multi-class form sums it over the C logits "
    "(norm='paper'). norm='mean' is DomainBed's SD (mean over the N x C logits of z^2 with sd_reg = lam), "
    "which equals norm='paper' with lam_paper = 2 lam / C. The official code's variants are other scalings: "
    "two-moons lam * mean(y_hat^2) with no 1/2 (lam 0.003), CMNIST lam 2e-5 with Adam, CelebA a label-dependent "
    "shift (gamma 2.5 / 0.44 per class, each class averaged separately; not reproduced). The default lam=0.1 "
    "is DomainBed's value (a scale, not a paper default: the paper has none). Convex in the logits.",
)
class SpectralDecoupling(Loss):
    def per_sample(self, logits, target, **context):
        # the penalty as coef * sum_c (z_c - gamma)^2: 'paper' lam/2, 'mean' lam/C
        coef = 0.5 * self.lam if self.norm == "paper" else self.lam / logits.shape[1]
        if target.dim() == 1:  # one fused node: CE and the penalty share a pass over the logits
            return logit_l2_ce(logits, target, coef, float(self.gamma))
        return soft_cross_entropy(logits, target) + coef * (logits - self.gamma).square().sum(dim=1)
