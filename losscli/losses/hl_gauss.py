"""HL-Gauss: regression as classification with a Gaussian-smoothed histogram target
(Farebrother et al., "Stop Regressing", ICML 2024, Appendix A; Imani & White, ICML 2018; LOSSES-2.md §11).

A real target ``y`` becomes the probability mass that ``N(y, sigma^2)``, truncated to
``[vmin, vmax]``, puts in each of ``m`` equal bins; the loss is the cross-entropy of the logits
against it, and a prediction is decoded as the expectation of the bin centres.
"""

from __future__ import annotations

import math

import torch

from losscli.errors import UsageError
from losscli.losses.base import Loss, LossInputError, Param, Reference, register_loss
from losscli.losses.fused.row_linear import soft_ce, sparse_soft_ce


#: |x| beyond which erf(x) rounds to exactly +-1 in float64 (1 - erf(6) = 2e-17, under half an ulp
#: of 1) and so in float32 and the half-precision types too
_ERF_SATURATES = 6.0


@register_loss(
    "hl_gauss",
    aliases=("histogram_loss", "hlgauss"),
    family="regression",
    reference=Reference(
        "Stop Regressing: Training Value Functions via Classification for Scalable Deep RL",
        "Farebrother, Orbay, Vuong, Taiga, Chebotar, Xiao, Irpan, Levine, Castro, Faust, Kumar & Agarwal",
        2024, "ICML", "https://arxiv.org/abs/2403.03950",
    ),
    formula="b_j = vmin + j (vmax - vmin)/m (j = 0..m), sigma = sigma_ratio (vmax - vmin)/m;  "
    "p_j(y) = [Phi((b_{j+1} - y)/sigma) - Phi((b_j - y)/sigma)] / [Phi((b_m - y)/sigma) - Phi((b_0 - y)/sigma)];  "
    "l = -sum_j p_j(y) log softmax(z)_j;  y_hat = sum_j softmax(z)_j (b_j + b_{j+1})/2",
    params=(
        Param("vmin", -10.0, "lower OUTER edge of the support (not a bin centre)", search=False),
        Param("vmax", 10.0, "upper outer edge of the support (must be > vmin)", search=False),
        Param("num_bins", 51, "m, the number of bins = the number of logits", kind="int", low=2, search=False),
        Param("sigma_ratio", 0.75, "sigma / bin width (the paper recommends 0.75)", low=0.0, low_open=True),
    ),
    convex=True,
    target="regression",
    stackable=False,
    supports_ignore_index=False,
    notes="Follows the paper's Appendix A listing (HLGaussLoss): vmin/vmax are the outer bin EDGES (some ports "
    "treat them as centres), the normal is truncated to the support (the ratio), computed with erf. Targets "
    "are clamped to [vmin, vmax] first (far outside, the normaliser would be 0 and the loss NaN). The loss is CE "
    "against p(y), not KL (they differ by the target's entropy); reduction='mean' is the listing's mean. "
    "decode(logits) -> [N] is the expectation over bin centres. Takes float targets [N] (target kind "
    "'regression'); the logits' C columns must equal num_bins. Defaults vmin=-10, vmax=10, num_bins=51 (the "
    "catalogue gives none): C51's categorical support for Atari returns, the setting the paper's Atari "
    "value-function experiments build on (recalled, not re-checked against the paper's appendix here); a "
    "symmetric support also fits standardised targets. Set vmin/vmax to your targets' range: the support must "
    "cover them, and sigma = 0.75 bin widths follows from it. Convex in the logits.",
)
class HLGauss(Loss):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        if not self.vmin < self.vmax:
            raise UsageError(f"hl_gauss: vmin must be < vmax, got vmin={self.vmin!r}, vmax={self.vmax!r}")
        self.sigma = self.sigma_ratio * (self.vmax - self.vmin) / self.num_bins
        # float64 edges: cast to the logits' dtype at use (the listing builds them in float32)
        self.register_buffer("edges", torch.linspace(self.vmin, self.vmax, self.num_bins + 1, dtype=torch.float64),
                             persistent=False)

    @property
    def centers(self) -> torch.Tensor:
        return 0.5 * (self.edges[:-1] + self.edges[1:])

    def target_distribution(self, target: torch.Tensor) -> torch.Tensor:
        """``[N, m]`` truncated-Gaussian bin probabilities of the (clamped) targets; rows sum to 1."""
        dtype = target.dtype if target.dtype == torch.float64 else torch.float32
        # (edge - y) / (sqrt(2) sigma), with the division done on the two vectors, not the [N, m + 1] grid
        inv_width = 1.0 / (math.sqrt(2.0) * self.sigma)
        y = target.to(dtype).clamp(self.vmin, self.vmax).unsqueeze(1).mul_(inv_width)
        cdf = torch.sub(self.edges.to(device=y.device, dtype=dtype) * inv_width, y).erf_()
        # the 1/2 (1 + erf) of Phi cancels in the ratio; the denominator is > 0 for y in the support
        return torch.sub(cdf[:, 1:], cdf[:, :-1]).div_(cdf[:, -1:] - cdf[:, :1])

    def _window_half_width(self) -> int | None:
        """Bins each side of a target beyond which its histogram is exactly 0 (``_ERF_SATURATES``), or
        None when such a window would cover the whole support anyway."""
        width = (self.vmax - self.vmin) / self.num_bins
        half = math.ceil(_ERF_SATURATES * math.sqrt(2.0) * self.sigma / width) + 1
        return None if 2 * half + 2 >= self.num_bins + 1 else half

    def target_window(self, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
        """``(bins, mass)`` ``[N, K]``: the only bins where ``target_distribution`` can be non-zero, and
        its values there, bit for bit; None when the window would cover the whole support.

        ``erf`` rounds to exactly +-1 beyond ``_ERF_SATURATES`` (in float32 and float64), so every bin
        whose two edges lie farther than that from ``y`` has mass exactly 0 in the dense form too;
        only ``2 w + 1`` edges around ``y`` are evaluated (about 15 bins at the default sigma ratio,
        whatever ``num_bins`` is). Where the window is clamped at the support's ends, repeated bins
        carry mass 0.
        """
        half = self._window_half_width()
        if half is None:
            return None
        m, width = self.num_bins, (self.vmax - self.vmin) / self.num_bins
        dtype = target.dtype if target.dtype == torch.float64 else torch.float32
        inv_width = 1.0 / (math.sqrt(2.0) * self.sigma)
        y = target.to(dtype).clamp(self.vmin, self.vmax).unsqueeze(1)
        edges = self.edges.to(device=y.device, dtype=dtype)
        centre = ((y - self.vmin) / width).floor_().long()
        idx = (centre + torch.arange(-half, half + 2, device=y.device)).clamp_(0, m)
        y = y * inv_width  # the same operations, in the same order, as target_distribution
        cdf = torch.sub(edges[idx] * inv_width, y).erf_()
        ends = torch.sub(edges[[0, m]] * inv_width, y).erf_()
        mass = torch.sub(cdf[:, 1:], cdf[:, :-1]).div_(ends[:, 1:] - ends[:, :1])
        return idx[:, :-1].clamp_(max=m - 1), mass

    def windowed_target_distribution(self, target: torch.Tensor) -> torch.Tensor:
        """``target_distribution`` from ``target_window`` (equal bit for bit)."""
        window = self.target_window(target)
        if window is None:
            return self.target_distribution(target)
        bins, mass = window
        return torch.zeros((bins.shape[0], self.num_bins), dtype=mass.dtype, device=mass.device).scatter_add_(1, bins, mass)

    def per_sample(self, logits, target, **context):
        if logits.shape[1] != self.num_bins:
            raise LossInputError(f"hl_gauss: logits have {logits.shape[1]} columns but num_bins={self.num_bins}")
        # the histogram target is built block by block inside the fused CE (never held whole), and only
        # where it is non-zero when that is a small window
        if self._window_half_width() is None:
            return soft_ce(logits, target, build=lambda tb: self.target_distribution(tb).to(logits.dtype))

        def window(tb):
            bins, mass = self.target_window(tb)
            return bins, mass.to(logits.dtype)

        return sparse_soft_ce(logits, window, target)

    def decode(self, logits: torch.Tensor) -> torch.Tensor:
        """``[N]`` predictions: the expectation of the bin centres under ``softmax(logits)``."""
        if logits.dim() != 2 or logits.shape[1] != self.num_bins:
            raise LossInputError(f"hl_gauss: decode takes [N, {self.num_bins}] logits, got {list(logits.shape)}")
        probs = torch.softmax(logits.float() if logits.dtype in (torch.float16, torch.bfloat16) else logits, dim=1)
        return probs @ self.centers.to(device=probs.device, dtype=probs.dtype)
